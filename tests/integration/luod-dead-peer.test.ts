// A client whose process has gone never stays connected (issue 14, hole 1): luod takes no socket
// as payload, closes fds that wait ahead of an unfinished line, and notices a peer's exit through
// its pidfd even when the peer's socket is stuck, unread, in luod's own receive queue.
import { describe, expect, test, beforeAll, afterAll } from "bun:test";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { startDaemon, openFdCount, REPO, type Daemon } from "../support/binary";
import { RawPeer, settledFdCount } from "./raw-peer";
import { socketPair } from "../../src/kernel/unix";
import { memfdCreate } from "../../src/kernel/memfd";
import { closeFd } from "../../src/kernel/fd";

const DEAD_PEER = join(import.meta.dir, "dead-peer.ts");
/** The promise: a dead client is gone from `luoctl list` within 20 s. */
const GONE_WITHIN_MS = 20_000;

let luod: Daemon;
let baseline: number;

async function adminRequest(req: object): Promise<Record<string, unknown>> {
  const p = RawPeer.connect(luod.socket);
  try {
    const r = await p.request(req);
    if (!r || r.ok !== true) throw new Error(`${JSON.stringify(req)} failed: ${JSON.stringify(r)}`);
    return r;
  } finally {
    p.close();
  }
}

/** Whether LIST shows `id` as a connected client. */
async function listed(id: string): Promise<boolean> {
  const r = await adminRequest({ cmd: "LIST" });
  return (r.clients as { id: string; connected?: boolean }[]).some((c) => c.id === id && c.connected !== false);
}

/** Polls until `cond` holds or `ms` pass; returns whether it held. */
async function eventually(cond: () => Promise<boolean> | boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await cond()) return true;
    if (Date.now() > deadline) return false;
    await Bun.sleep(100);
  }
}

const stats = async () => ((await adminRequest({ cmd: "STATUS" })).luod as { stats: Record<string, number> }).stats;
const code = (r: Record<string, unknown> | null) => (r?.error as { code?: string } | undefined)?.code;

function runDeadPeer(id: string, mode: "partial" | "stalled" | "handoff"): Record<string, unknown> {
  const r = spawnSync(process.execPath, [DEAD_PEER, luod.socket, id, mode], { encoding: "utf8", timeout: 60_000, cwd: REPO });
  if (r.status !== 0) throw new Error(`dead-peer.ts exited ${r.status}: ${r.stdout} ${r.stderr}`);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

beforeAll(async () => {
  luod = await startDaemon(["--device", "/nonexistent/liveupdate", "--config", "/dev/null", "--max-connections", "64"]);
  await adminRequest({ cmd: "STATUS" });
  baseline = await settledFdCount(luod.proc.pid);
});
afterAll(async () => {
  await luod?.stop();
  if (luod) rmSync(luod.dir, { recursive: true, force: true });
});

describe("a client that dies holding its own socket out", () => {
  test("subscribed, sends half a line carrying its own socket, exits: gone from LIST within 20 s, fds back to baseline", async () => {
    expect(runDeadPeer("vm-dead-partial", "partial")).toMatchObject({ subscribed: true });
    expect(await eventually(async () => !(await listed("vm-dead-partial")), GONE_WITHIN_MS)).toBe(true);
    expect(await eventually(() => openFdCount(luod.proc.pid) === baseline, 5000)).toBe(true);
  }, 40_000);

  test("subscribed, stops reading its replies, its socket waits unread in luod's queue, exits: gone within 20 s (pidfd)", async () => {
    const out = runDeadPeer("vm-dead-stalled", "stalled");
    expect(out).toMatchObject({ subscribed: true });
    expect(await eventually(async () => !(await listed("vm-dead-stalled")), GONE_WITHIN_MS)).toBe(true);
    expect(await eventually(() => openFdCount(luod.proc.pid) === baseline, 5000)).toBe(true);
  }, 90_000);
});

describe("a client that hands its socket to a child", () => {
  test("stays connected after its own process exits, and is gone once the child (the last holder) exits", async () => {
    const out = runDeadPeer("vm-handoff", "handoff");
    expect(out).toMatchObject({ subscribed: true });
    const child = out.child as number;
    // the parent has exited (pidfd readable); the child still holds the socket: still a client
    await Bun.sleep(1000);
    expect(await listed("vm-handoff")).toBe(true);
    expect(await eventually(async () => !(await listed("vm-handoff")), GONE_WITHIN_MS)).toBe(true);
    expect(await eventually(() => { try { process.kill(child, 0); return false; } catch { return true; } }, 5000)).toBe(true);
    expect(await eventually(() => openFdCount(luod.proc.pid) === baseline, 5000)).toBe(true);
  }, 40_000);
});

describe("sockets and waiting fds", () => {
  test("a socket as payload on a complete line is refused (EBADMSG) and closed at once", async () => {
    const before = await stats();
    const [a, b] = socketPair();
    const p = RawPeer.connect(luod.socket);
    try {
      const r = await p.request({ cmd: "LOAD", cmdline: "console=ttyS0", initrd: false, fds: 1 }, [a]);
      expect(code(r)).toBe("EBADMSG");
      expect((r!.error as { message: string }).message).toContain("socket");
      expect(await p.request({ cmd: "STATUS" })).toMatchObject({ ok: true });
    } finally {
      p.close();
      closeFd(a);
      closeFd(b);
    }
    expect(await eventually(() => openFdCount(luod.proc.pid) === baseline, 3000)).toBe(true);
    const after = await stats();
    expect(after.sockets_refused! - before.sockets_refused!).toBe(1);
  });

  test("fds ahead of a line that does not end are closed within a few seconds; the line then gets EBADMSG", async () => {
    const fd = memfdCreate("waiting");
    const p = RawPeer.connect(luod.socket);
    try {
      expect(await p.request({ cmd: "STATUS" })).toMatchObject({ ok: true });
      const open = await settledFdCount(luod.proc.pid); // with this connection
      expect(p.sendOnce('{"cmd":"STATUS","fds":1', [fd])).toBeGreaterThan(0);
      closeFd(fd); // luod's copy is now the only one
      expect(await eventually(() => openFdCount(luod.proc.pid) === open + 1, 2000)).toBe(true);
      // luod holds it while the line is unfinished, then lets it go (the connection stays open)
      expect(await eventually(() => openFdCount(luod.proc.pid) === open, 10_000)).toBe(true);
      expect(p.eof).toBe(false);
      const r = await p.request("}");
      expect(code(r)).toBe("EBADMSG");
      expect((r!.error as { message: string }).message).toContain("did not end within");
      expect(await p.request({ cmd: "STATUS" })).toMatchObject({ ok: true });
    } finally {
      p.close();
    }
    expect(await eventually(() => openFdCount(luod.proc.pid) === baseline, 3000)).toBe(true);
  }, 20_000);
});

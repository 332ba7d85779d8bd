// LuoClient against a fake luod over a real unix socket (src/client/fake-luod.ts).
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { closeSync, existsSync, mkdtempSync, readlinkSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FakeLuod, FakeLuodError } from "../../src/client/fake-luod";
import {
  LuoClient, LuoConnectError, LuoConnectionClosed, LuoError, LuoTimeoutError,
  createMemfd, readFull, writeFull, fileSize, closeFd,
} from "../../src/client";
import { unixListen } from "../../src/kernel/unix";

let fake: FakeLuod;
let client: LuoClient | null = null;

beforeEach(async () => {
  fake = await FakeLuod.start();
});
afterEach(() => {
  client?.close();
  client = null;
  fake.close();
});

async function connect(): Promise<LuoClient> {
  client = await LuoClient.connect(fake.path);
  return client;
}

function memfdWith(text: string): number {
  const fd = createMemfd("test");
  writeFull(fd, new TextEncoder().encode(text), 0);
  return fd;
}

function readAll(fd: number): string {
  const buf = new Uint8Array(fileSize(fd));
  readFull(fd, buf, 0);
  return new TextDecoder().decode(buf);
}

describe("request/reply", () => {
  test("a reply resolves its request", async () => {
    fake.handle("STATUS", () => ({ phase: "idle", clients: { subscribed: 0, ready: 0 } }));
    const c = await connect();
    const r = await c.status();
    expect(r).toMatchObject({ reply: "STATUS", ok: true, phase: "idle" });
    expect(fake.requests[0]!.msg).toEqual({ cmd: "STATUS" });
  });

  test("replies are matched by cmd even when they come out of order", async () => {
    fake.handle("STATUS", async () => {
      await Bun.sleep(60);
      return { phase: "idle" };
    });
    fake.handle("LIST", () => ({ clients: [] }));
    const c = await connect();
    const order: string[] = [];
    const a = c.status().then((r) => (order.push("STATUS"), r));
    const b = c.list().then((r) => (order.push("LIST"), r));
    const [ra, rb] = await Promise.all([a, b]);
    expect(ra.reply).toBe("STATUS");
    expect(rb.reply).toBe("LIST");
    expect(order).toEqual(["LIST", "STATUS"]);
  });

  test("same cmd: FIFO; with tags: by tag", async () => {
    let n = 0;
    fake.handle("CHECK", async (req) => {
      const mine = ++n;
      await Bun.sleep(mine === 1 ? 60 : 0); // the first request is answered last
      return { n: mine, echoed: req.tag ?? null };
    });
    const c = await connect();
    const [first, second] = await Promise.all([
      c.request({ cmd: "CHECK", tag: "one" }),
      c.request({ cmd: "CHECK", tag: 2 }),
    ]);
    expect(first).toMatchObject({ n: 1, tag: "one" });
    expect(second).toMatchObject({ n: 2, tag: 2 });
  });

  test("an error reply rejects with LuoError carrying code, message and the reply", async () => {
    fake.handle("KEXEC", () => {
      throw new FakeLuodError("ECANCELED", "client vm-7 sent FAIL: disk full", { timings: { all_ready_ms: 5 } });
    });
    fake.handle("DISCARD", () => {
      throw new FakeLuodError("ENOENT", "no restored session vm-9");
    });
    const c = await connect();
    const e1 = await c.discard("vm-9").catch((e) => e);
    expect(e1).toBeInstanceOf(LuoError);
    expect(e1.code).toBe("ENOENT");
    expect(e1.message).toBe("no restored session vm-9");
    const e2 = await c.kexec({ timeoutMs: 1000 }).catch((e) => e);
    expect(e2).toBeInstanceOf(LuoError);
    expect(e2.code).toBe("ECANCELED");
    expect(e2.reply.timings).toEqual({ all_ready_ms: 5 });
    expect(fake.requests.at(-1)!.msg).toEqual({ cmd: "KEXEC", timeout_ms: 1000 });
  });

  test("request fields on the wire", async () => {
    for (const cmd of ["SUBSCRIBE", "READY", "FAIL", "UNSUBSCRIBE", "FINISHED", "UNLOAD", "ABORT", "DISCARD"]) fake.handle(cmd, () => ({}));
    const c = await connect();
    await c.subscribe("vm-42");
    await c.ready();
    await c.fail("no space");
    await c.fail();
    await c.unsubscribe();
    await c.finished("vm-42");
    await c.unload();
    await c.abort("maintenance");
    await c.abort();
    await c.discard("vm-1");
    expect(fake.requests.map((r) => r.msg)).toEqual([
      { cmd: "SUBSCRIBE", id: "vm-42" },
      { cmd: "READY" },
      { cmd: "FAIL", reason: "no space" },
      { cmd: "FAIL" },
      { cmd: "UNSUBSCRIBE" },
      { cmd: "FINISHED", id: "vm-42" },
      { cmd: "UNLOAD" },
      { cmd: "ABORT", reason: "maintenance" },
      { cmd: "ABORT" },
      { cmd: "DISCARD", id: "vm-1" },
    ]);
  });

  test("request timeout rejects with ETIMEDOUT and the late reply is dropped", async () => {
    // luod answers in order: the late reply to the first STATUS comes before the second's
    let lateSent!: () => void;
    const late = new Promise<void>((r) => (lateSent = r));
    let first = true;
    fake.handle("STATUS", async (_req, _fds, peer) => {
      if (first) {
        first = false;
        setTimeout(() => {
          peer.send({ reply: "STATUS", ok: true, which: "late" });
          lateSent();
        }, 80);
        return null;
      }
      await late;
      return { which: "second" };
    });
    const c = await connect();
    const e = await c.status({ timeoutMs: 20 }).catch((x) => x);
    expect(e).toBeInstanceOf(LuoTimeoutError);
    expect(e.code).toBe("ETIMEDOUT");
    const r = await c.status();
    // the late reply to the first STATUS must not be taken for the second one's
    expect(r.which).toBe("second");
  });
});

describe("fds", () => {
  test("LOAD carries the kernel and initrd fds, and says so", async () => {
    let seen: { msg: Record<string, unknown>; contents: string[] } | null = null;
    fake.handle("LOAD", (msg, fds) => {
      seen = { msg, contents: fds.map(readAll) };
      return { kernel: { version: "7.2.13", size: 6, sha256: "0".repeat(64) }, initrd: { size: 6 }, cmdline: msg.cmdline };
    });
    const c = await connect();
    const k = memfdWith("kernel");
    const i = memfdWith("initrd");
    const r = await c.load({ kernelFd: k, initrdFd: i, cmdline: "0123 liveupdate=on", force: true, sha256: "a".repeat(64) });
    expect(r.cmdline).toBe("0123 liveupdate=on");
    expect(seen!.msg).toEqual({ cmd: "LOAD", cmdline: "0123 liveupdate=on", initrd: true, force: true, sha256: "a".repeat(64), fds: 2 });
    expect(seen!.contents).toEqual(["kernel", "initrd"]);
    // the caller keeps its own fds
    expect(readAll(k)).toBe("kernel");
    closeFd(k);
    closeFd(i);
  });

  test("LOAD without initrd sends one fd and initrd:false", async () => {
    fake.handle("LOAD", (_m, fds) => ({ n: fds.length }));
    const c = await connect();
    const k = memfdWith("k");
    const r = await c.load({ kernelFd: k, cmdline: "liveupdate=on" });
    expect(r.n).toBe(1);
    expect(fake.requests[0]!.msg).toEqual({ cmd: "LOAD", cmdline: "liveupdate=on", initrd: false, fds: 1 });
    closeFd(k);
  });

  test("CLAIM: the session fd from CLAIMED is a real fd that reads back", async () => {
    const session = memfdWith("preserved bytes");
    fake.handle("CLAIM", (req, _fds, peer) => {
      peer.send({ event: "CLAIMED", reply: "CLAIM", ok: true, id: req.id, session: `luod:${req.id}/1`, fds: 1 }, [session]);
      return null;
    });
    const c = await connect();
    const { session: name, sessionFd } = await c.claim("vm-42");
    expect(name).toBe("luod:vm-42/1");
    expect(sessionFd).not.toBe(session); // a new fd in this process
    expect(readlinkSync(`/proc/self/fd/${sessionFd}`)).toContain("memfd:test");
    expect(readAll(sessionFd)).toBe("preserved bytes");
    closeFd(sessionFd);
    closeFd(session);
  });

  test("CLAIMED in the seed form (no reply field) answers the CLAIM too", async () => {
    const session = memfdWith("seed");
    fake.handle("CLAIM", (_r, _f, peer) => {
      peer.send({ event: "CLAIMED", session: "luod:a/1", fds: 1 }, [session]);
      return null;
    });
    const c = await connect();
    const r = await c.claim("a");
    expect(readAll(r.sessionFd)).toBe("seed");
    closeFd(r.sessionFd);
    closeFd(session);
  });

  test("CLAIM refused: LuoError EPERM", async () => {
    fake.handle("CLAIM", () => {
      throw new FakeLuodError("EPERM", "vm-42 belongs to uid 1000, not 1001");
    });
    const c = await connect();
    const e = await c.claim("vm-42").catch((x) => x);
    expect(e).toBeInstanceOf(LuoError);
    expect(e.code).toBe("EPERM");
  });
});

describe("events", () => {
  test("on() listeners get events; the returned function removes them", async () => {
    fake.handle("SUBSCRIBE", (req, _f, peer) => {
      queueMicrotask(() => peer.send({ event: "ABORTED", update: 3, reason: "test" }));
      return { id: req.id };
    });
    const c = await connect();
    const got: unknown[] = [];
    const off = c.on("ABORTED", (msg) => got.push(msg));
    await c.subscribe("vm-1");
    await Bun.sleep(30);
    expect(got).toEqual([{ event: "ABORTED", update: 3, reason: "test" }]);
    off();
    fake.broadcast({ event: "ABORTED", update: 4, reason: "again" });
    await Bun.sleep(30);
    expect(got.length).toBe(1);
  });

  test("an event that carries an `ok` field is still an event (events may gain fields), not a broken reply", async () => {
    fake.handle("STATUS", (_req, _f, peer) => {
      peer.send({ event: "FUTURE_THING", ok: true });
      return { phase: "idle" };
    });
    const c = await connect();
    const got: unknown[] = [];
    c.on("FUTURE_THING", (msg) => got.push(msg));
    expect((await c.status()).phase).toBe("idle");
    expect(got).toEqual([{ event: "FUTURE_THING", ok: true }]);
    expect(c.closed).toBe(false);
  });

  test("waitFor sees an event that arrived right behind the reply (buffered)", async () => {
    const session = memfdWith("outgoing");
    fake.handle("SUBSCRIBE", (req, _f, peer) => {
      peer.send({ reply: "SUBSCRIBE", ok: true, id: req.id });
      peer.send({ event: "PRESERVATION_REQUEST", update: 7, timeout_ms: 30000, deadline: "2026-01-01T00:00:30Z" });
      peer.send({ event: "START_PRESERVATION", id: req.id, session: `luod:${req.id}/7`, update: 7, fds: 1 }, [session]);
      return null;
    });
    const c = await connect();
    await c.subscribe("vm-7");
    await Bun.sleep(30); // the events are surely here before anyone waits
    const p = await c.waitForSession({ timeoutMs: 1000 });
    expect(p).toMatchObject({ id: "vm-7", session: "luod:vm-7/7", update: 7, deadline: "2026-01-01T00:00:30Z" });
    expect(readAll(p.sessionFd)).toBe("outgoing");
    closeFd(p.sessionFd);
    closeFd(session);
  });

  test("prepare() returns the session fd; a prepared START_PRESERVATION, without fds, hands the same fd back", async () => {
    const session = memfdWith("prepared");
    fake.handle("SUBSCRIBE", (req) => ({ id: req.id }));
    fake.handle("PREPARE", (_req, _f, peer) => {
      peer.send({ reply: "PREPARE", ok: true, id: "vm-8", session: "luod:vm-8/3", fds: 1 }, [session]);
      return null;
    });
    const c = await connect();
    await c.subscribe("vm-8");
    const prepared = await c.prepare();
    expect(prepared).toMatchObject({ id: "vm-8", session: "luod:vm-8/3", prepared: true, update: null });
    expect(readAll(prepared.sessionFd)).toBe("prepared");
    const again = await c.prepare(); // the same session: the first fd stays, the new one is closed
    expect(again.sessionFd).toBe(prepared.sessionFd);
    setTimeout(() => fake.broadcast({ event: "START_PRESERVATION", id: "vm-8", session: "luod:vm-8/3", update: 4, prepared: true }), 10);
    const p = await c.waitForSession({ timeoutMs: 2000 });
    expect(p).toMatchObject({ session: "luod:vm-8/3", sessionFd: prepared.sessionFd, prepared: true, update: 4 });
    closeFd(prepared.sessionFd);
    closeFd(session);
  });

  test("a prepared START_PRESERVATION on a client that never prepared is EBADMSG", async () => {
    const c = await connect();
    while (fake.peers.size === 0) await Bun.sleep(2);
    setTimeout(() => fake.broadcast({ event: "START_PRESERVATION", id: "vm-9", session: "luod:vm-9/1", update: 1, prepared: true }), 10);
    const e = await c.waitForSession({ timeoutMs: 2000 }).catch((x) => x);
    expect(e).toBeInstanceOf(LuoError);
    expect(e.code).toBe("EBADMSG");
  });

  test("waitForSession rejects with ECANCELED on ABORTED", async () => {
    fake.handle("SUBSCRIBE", (req) => ({ id: req.id }));
    const c = await connect();
    await c.subscribe("vm-1");
    setTimeout(() => fake.broadcast({ event: "ABORTED", update: 1, reason: "aborted by an administrator" }), 10);
    const e = await c.waitForSession({ timeoutMs: 2000 }).catch((x) => x);
    expect(e).toBeInstanceOf(LuoError);
    expect(e.code).toBe("ECANCELED");
    expect(e.message).toContain("aborted by an administrator");
  });

  test("waitFor times out with LuoTimeoutError (ETIMEDOUT)", async () => {
    const c = await connect();
    const t0 = Date.now();
    const e = await c.waitFor("START_PRESERVATION", { timeoutMs: 50 }).catch((x) => x);
    expect(e).toBeInstanceOf(LuoTimeoutError);
    expect(e.code).toBe("ETIMEDOUT");
    expect(Date.now() - t0).toBeGreaterThanOrEqual(45);
  });

  test("waitFor takes any of several names", async () => {
    const c = await connect();
    while (fake.peers.size === 0) await Bun.sleep(2); // accepted on the fake's side
    setTimeout(() => fake.broadcast({ event: "ABORTED", update: 1, reason: "x" }), 10);
    const r = await c.waitFor(["START_PRESERVATION", "ABORTED"], { timeoutMs: 2000 });
    expect(r.msg.event).toBe("ABORTED");
  });
});

describe("kexec", () => {
  test("progress events, then the dry-run reply", async () => {
    fake.handle("KEXEC", async (req, _f, peer) => {
      expect(req).toEqual({ cmd: "KEXEC", timeout_ms: 5000, dry_run: true });
      peer.send({ event: "PROGRESS", phase: "preparing", ready: 0, total: 2, waiting: ["a", "b"], remaining_ms: 5000 });
      await Bun.sleep(10);
      peer.send({ event: "PROGRESS", phase: "preparing", ready: 2, total: 2, waiting: [], remaining_ms: 4000 });
      return { dry_run: true, timings: { all_ready_ms: 12 } };
    });
    const c = await connect();
    const progress: unknown[] = [];
    const r = await c.kexec({ timeoutMs: 5000, dryRun: true, onProgress: (p) => progress.push(p.ready) });
    expect(progress).toEqual([0, 2]);
    expect(r).toMatchObject({ rebooting: false, dryRun: true, timings: { all_ready_ms: 12 } });
  });

  test("REBOOTING then the connection drops: resolves rebooting", async () => {
    fake.handle("KEXEC", (_r, _f, peer) => {
      peer.send({ event: "REBOOTING", update: 9, timings: { reboot_called_ms: 40 } });
      setTimeout(() => peer.close("machine is jumping"), 10);
      return null;
    });
    const c = await connect();
    let saw = false;
    const r = await c.kexec({ onRebooting: () => (saw = true) });
    expect(saw).toBe(true);
    expect(r).toMatchObject({ rebooting: true, timings: { reboot_called_ms: 40 } });
  });

  test("REBOOTING then an error reply (reboot() returned): rejects", async () => {
    fake.handle("KEXEC", (_r, _f, peer) => {
      peer.send({ event: "REBOOTING", update: 9, timings: {} });
      throw new FakeLuodError("EBUSY", "reboot(LINUX_REBOOT_CMD_KEXEC) failed: EBUSY; the host keeps running");
    });
    const c = await connect();
    const e = await c.kexec().catch((x) => x);
    expect(e).toBeInstanceOf(LuoError);
    expect(e.code).toBe("EBUSY");
  });
});

describe("connection", () => {
  test("missing socket: LuoConnectError ENOENT", async () => {
    const e = await LuoClient.connect(join(tmpdir(), "no-such-dir-luo", "x.sock")).catch((x) => x);
    expect(e).toBeInstanceOf(LuoConnectError);
    expect(e.code).toBe("ENOENT");
    expect(e.message).toContain("is luod running");
  });

  test("stale socket file: LuoConnectError ECONNREFUSED", async () => {
    const dir = mkdtempSync(join(tmpdir(), "luo-stale-"));
    const path = join(dir, "s.sock");
    closeSync(unixListen(path)); // the file stays, nobody listens
    expect(existsSync(path)).toBe(true);
    const e = await LuoClient.connect(path).catch((x) => x);
    expect(e).toBeInstanceOf(LuoConnectError);
    expect(e.code).toBe("ECONNREFUSED");
    rmSync(dir, { recursive: true, force: true });
  });

  test("luod going away rejects what is outstanding with ECONNRESET", async () => {
    fake.handle("KEXEC", (_r, _f, peer) => {
      setTimeout(() => peer.close("luod crashed"), 10);
      return null;
    });
    const c = await connect();
    let closedWith: unknown = null;
    c.on("close", (m) => (closedWith = m.reason));
    const w = c.waitFor("ABORTED").catch((x) => x);
    const e = await c.kexec().catch((x) => x);
    expect(e).toBeInstanceOf(LuoConnectionClosed);
    expect(e.code).toBe("ECONNRESET");
    expect(await w).toBeInstanceOf(LuoConnectionClosed);
    expect(c.closed).toBe(true);
    expect(closedWith).toBe("peer closed the connection");
    const after = await c.status().catch((x) => x);
    expect(after).toBeInstanceOf(LuoConnectionClosed);
  });

  test("close() rejects outstanding requests with ESHUTDOWN", async () => {
    fake.handle("STATUS", () => null); // never answers
    const c = await connect();
    const p = c.status().catch((x) => x);
    c.close();
    const e = await p;
    expect(e).toBeInstanceOf(LuoConnectionClosed);
    expect(e.code).toBe("ESHUTDOWN");
  });

  test("close() lets the process exit", async () => {
    fake.handle("STATUS", () => ({ phase: "idle" }));
    const script = `
      import { LuoClient } from ${JSON.stringify(join(import.meta.dir, "../../src/client/index.ts"))};
      const c = await LuoClient.connect(${JSON.stringify(fake.path)});
      const r = await c.status();
      console.log(r.phase);
      c.close();
    `;
    const dir = mkdtempSync(join(tmpdir(), "luo-exit-"));
    const file = join(dir, "exit.ts");
    await Bun.write(file, script);
    const t0 = Date.now();
    const proc = Bun.spawn([process.execPath, file], { stdout: "pipe", stderr: "pipe" });
    const killer = setTimeout(() => proc.kill(), 10_000);
    const code = await proc.exited;
    clearTimeout(killer);
    const out = await new Response(proc.stdout).text();
    rmSync(dir, { recursive: true, force: true });
    expect(out.trim()).toBe("idle");
    expect(code).toBe(0);
    expect(Date.now() - t0).toBeLessThan(8000);
  });
});

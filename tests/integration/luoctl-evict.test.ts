// `luoctl evict` against the compiled luod (issue 14, hole 13): an administrator drops a
// subscriber; luod closes its connection, forgets it and logs who asked, the reason escaped.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { run, startDaemon, type Daemon } from "../support/binary";
import { RawPeer } from "./raw-peer";

let luod: Daemon;
beforeAll(async () => {
  luod = await startDaemon(["--device", "/nonexistent/liveupdate", "--config", "/dev/null"]);
});
afterAll(async () => {
  await luod?.stop();
  rmSync(luod.dir, { recursive: true, force: true });
});

const luoctl = (...args: string[]) => run("luoctl", ["--socket", luod.socket, ...args]);

test("luoctl evict ID closes the subscriber's connection, luoctl list no longer shows it, luod's log says who asked", async () => {
  const client = RawPeer.connect(luod.socket);
  try {
    expect(await client.request({ cmd: "SUBSCRIBE", id: "vm-stuck" })).toMatchObject({ ok: true });
    expect(JSON.parse((await luoctl("list", "--json")).stdout).clients.map((c: { id: string }) => c.id)).toEqual(["vm-stuck"]);
    const r = await luoctl("evict", "vm-stuck", "--reason", "supervisor hung");
    expect(r).toMatchObject({ code: 0, stderr: "" });
    expect(r.stdout).toBe("evicted vm-stuck: its connection is closed\n");
    expect(await client.waitClosed()).toBe(true);
    expect(JSON.parse((await luoctl("list", "--json")).stdout).clients).toEqual([]);
    expect(luod.logs()).toMatch(/client vm-stuck evicted by an administrator \(uid \d+, pid \d+\): supervisor hung \(pid \d+ disconnected\)/);
  } finally {
    client.close();
  }
});

test("luoctl evict of an id nobody holds exits 1 with one ENOENT line; --json gives the reply's fields", async () => {
  const r = await luoctl("evict", "vm-none");
  expect(r.code).toBe(1);
  expect(r.stderr.trim().split("\n")).toHaveLength(1);
  expect(r.stderr).toContain("ENOENT");
  const client = RawPeer.connect(luod.socket);
  try {
    expect(await client.request({ cmd: "SUBSCRIBE", id: "vm-j" })).toMatchObject({ ok: true });
    const j = await luoctl("evict", "vm-j", "--json");
    expect(JSON.parse(j.stdout)).toEqual({ ok: true, id: "vm-j", disconnected: true, aborted_update: null, released_session: null, json_version: 1 });
  } finally {
    client.close();
  }
});

test("an EVICT reason with NUL, ESC, BEL and newlines reaches luod's log escaped: one line, no raw control byte (issue 14, hole 6)", async () => {
  const client = RawPeer.connect(luod.socket);
  const admin = RawPeer.connect(luod.socket);
  try {
    expect(await client.request({ cmd: "SUBSCRIBE", id: "vm-esc" })).toMatchObject({ ok: true });
    const from = luod.logs().length;
    const reason = "x\u0000<0>forged\u0007\n<0>also forged\r\u001b[2J\u009b";
    expect(await admin.request({ cmd: "EVICT", id: "vm-esc", reason })).toMatchObject({ ok: true });
    for (let i = 0; i < 500 && !luod.logs().slice(from).includes("vm-esc evicted"); i++) await Bun.sleep(10);
    const log = luod.logs().slice(from);
    expect(log).toContain("x\\x00<0>forged\\x07\\x0a<0>also forged\\x0d\\x1b[2J\\x9b");
    const lines = log.split("\n").filter(Boolean);
    for (const l of lines) {
      expect(l).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f-\x9f]/);
      expect(l).toMatch(/^<\d>/); // stderr is a pipe: every line has luod's priority prefix, and only one
      expect(l.slice(3)).not.toMatch(/^<\d>/);
    }
    expect(lines.some((l) => l.includes("forged") && !l.includes("evicted"))).toBe(false);
  } finally {
    client.close();
    admin.close();
  }
});

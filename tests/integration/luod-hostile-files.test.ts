// What the compiled luod trusts on the filesystem (docs/daemon.md#directories-and-files-luod-trusts):
// the socket's and the state directory only if nobody but root can change them, the socket path
// only if what is there is its own dead socket, the config file only if it is a regular root file,
// and a state file only if it fits its schema (a bad one is set aside, never fatal).
import { describe, expect, test, afterAll } from "bun:test";
import {
  chmodSync, chownSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync,
  symlinkSync, writeFileSync,
} from "node:fs";
import { spawnSync } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run, startDaemon } from "../support/binary";
import { RawPeer } from "./raw-peer";

const root = process.getuid?.() === 0;
const base = mkdtempSync(join(tmpdir(), "luod-files-it-"));
afterAll(() => rmSync(base, { recursive: true, force: true }));
let n = 0;
function fresh(): string {
  const dir = join(base, `t${++n}`);
  mkdirSync(dir, { mode: 0o700 });
  return dir;
}

const COMMON = ["--device", "/nonexistent/liveupdate", "--config", "/dev/null"];

/** luod that must refuse to start: its exit code and its single stderr line. */
async function refused(args: string[]): Promise<{ code: number; line: string }> {
  const r = await run("luod", [...COMMON, ...args], { timeoutMs: 10_000 });
  const lines = r.stderr.trim().split("\n");
  expect(lines).toHaveLength(1);
  return { code: r.code, line: lines[0]! };
}

function mkfifo(path: string): void {
  const r = spawnSync("mkfifo", [path]);
  if (r.status !== 0) throw new Error(`mkfifo ${path}: ${r.stderr}`);
}

function bootId(): string {
  return readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
}

describe.skipIf(!root)("luod refuses directories that others can change (exit 1, one line)", () => {
  test("a state directory writable by group or others", async () => {
    const dir = fresh();
    const state = join(dir, "state");
    mkdirSync(state);
    chmodSync(state, 0o777);
    const r = await refused(["--socket", join(dir, "luod.sock"), "--state-dir", state]);
    expect(r.code).toBe(1);
    expect(r.line).toContain(`state directory ${state}: ${state} is writable by group or others (mode 0777)`);
    expect(existsSync(join(dir, "luod.sock"))).toBe(false);
  });

  test("a socket directory writable by its group", async () => {
    const dir = fresh();
    const sockDir = join(dir, "run");
    mkdirSync(sockDir);
    chmodSync(sockDir, 0o775);
    const r = await refused(["--socket", join(sockDir, "luod.sock"), "--state-dir", join(dir, "state")]);
    expect(r.code).toBe(1);
    expect(r.line).toContain(`socket directory ${sockDir}: ${sockDir} is writable by group or others (mode 0775)`);
    expect(readdirSync(sockDir)).toEqual([]);
  });

  test("a socket directory that belongs to another user", async () => {
    const dir = fresh();
    const sockDir = join(dir, "run");
    mkdirSync(sockDir, { mode: 0o755 });
    chownSync(sockDir, 65534, 65534);
    const r = await refused(["--socket", join(sockDir, "luod.sock"), "--state-dir", join(dir, "state")]);
    expect(r.code).toBe(1);
    expect(r.line).toContain(`${sockDir} belongs to uid 65534, not root`);
  });

  test("an ancestor writable by others that is not sticky", async () => {
    const dir = fresh();
    const open = join(dir, "open");
    mkdirSync(join(open, "luod"), { recursive: true });
    chmodSync(open, 0o777);
    const r = await refused(["--socket", join(dir, "luod.sock"), "--state-dir", join(open, "luod")]);
    expect(r.code).toBe(1);
    expect(r.line).toContain(`${open} is writable by group or others and not sticky (mode 0777)`);
  });

  test("a symlink on the way that belongs to another user", async () => {
    const dir = fresh();
    mkdirSync(join(dir, "real"), { mode: 0o700 });
    const link = join(dir, "link");
    symlinkSync(join(dir, "real"), link);
    spawnSync("chown", ["-h", "65534", link]);
    expect(lstatSync(link).uid).toBe(65534);
    const r = await refused(["--socket", join(dir, "luod.sock"), "--state-dir", join(link, "state")]);
    expect(r.code).toBe(1);
    expect(r.line).toContain(`${link} is a symlink that belongs to uid 65534, not root`);
  });
});

describe.skipIf(!root)("directories luod accepts or makes", () => {
  test("under a sticky root directory (like /tmp), the missing directories are created root-only", async () => {
    const dir = fresh();
    const sticky = join(dir, "sticky");
    mkdirSync(sticky);
    chmodSync(sticky, 0o1777);
    const luod = await startDaemon([...COMMON, "--state-dir", join(sticky, "a", "state")], { dir: join(sticky, "b") });
    try {
      expect(statSync(join(sticky, "b")).mode & 0o7777).toBe(0o755);
      expect(statSync(join(sticky, "a")).mode & 0o7777).toBe(0o700);
      expect(statSync(join(sticky, "a", "state")).mode & 0o7777).toBe(0o700);
      const status = await run("luoctl", ["--socket", luod.socket, "status", "--json"]);
      expect(JSON.parse(status.stdout).ok).toBe(true);
    } finally {
      await luod.stop();
    }
  });

  test("the socket ends with the configured owner and mode, and nothing else is left in its directory", async () => {
    const dir = fresh();
    const luod = await startDaemon([...COMMON, "--socket-group", "64103", "--socket-mode", "0640"], { dir });
    try {
      const st = lstatSync(luod.socket);
      expect(st.isSocket()).toBe(true);
      expect([st.uid, st.gid, st.mode & 0o7777]).toEqual([0, 64103, 0o640]);
      expect(readdirSync(dir).sort()).toEqual(["luod.sock", "state"]);
      const status = await run("luoctl", ["--socket", luod.socket, "status", "--json"]);
      expect(JSON.parse(status.stdout).ok).toBe(true);
    } finally {
      await luod.stop();
    }
  });
});

test.skipIf(!root)("in a setgid directory of another group the socket is still root:root without a socket group", async () => {
  const dir = fresh();
  chownSync(dir, 0, 64104);
  chmodSync(dir, 0o2700);
  const luod = await startDaemon(COMMON, { dir });
  try {
    const st = lstatSync(luod.socket);
    expect([st.uid, st.gid, st.mode & 0o7777]).toEqual([0, 0, 0o600]);
  } finally {
    await luod.stop();
  }
});

describe.skipIf(!root)("a socket path near the 107-byte limit", () => {
  test("is bound all the same, with its owner and mode, and nothing else left in its directory", async () => {
    const dir = fresh();
    const room = 107 - dir.length - 1 - "/s.sock".length;
    const deep = join(dir, "d".repeat(room));
    const sock = join(deep, "s.sock");
    expect(Buffer.byteLength(sock)).toBe(107);
    const luod = await startDaemon([...COMMON, "--socket", sock, "--socket-mode", "0600"], { dir });
    try {
      const st = lstatSync(sock);
      expect([st.isSocket(), st.uid, st.mode & 0o7777]).toEqual([true, 0, 0o600]);
      expect(readdirSync(deep)).toEqual(["s.sock"]);
      expect(JSON.parse((await run("luoctl", ["--socket", sock, "status", "--json"])).stdout).ok).toBe(true);
    } finally {
      await luod.stop();
    }
  });
});

describe.skipIf(!root)("state files are never written through a planted symlink", () => {
  test("a symlink at attempt.json.tmp is not followed: its target is untouched", async () => {
    const dir = fresh();
    const state = join(dir, "state");
    mkdirSync(state, { mode: 0o700 });
    const victim = join(dir, "victim");
    writeFileSync(victim, "precious\n");
    symlinkSync(victim, join(state, "attempt.json.tmp"));
    // a "device" that exists (a plain file) gets PREPARE as far as the attempt number; its ioctls then fail
    writeFileSync(join(dir, "device"), "");
    const luod = await startDaemon(["--device", join(dir, "device"), "--config", "/dev/null"], { dir });
    const peer = RawPeer.connect(luod.socket);
    try {
      // PREPARE draws an attempt number (written to attempt.json) before it asks the kernel for a session
      expect((await peer.request({ cmd: "SUBSCRIBE", id: "vm-1" }))?.ok).toBe(true);
      await peer.request({ cmd: "PREPARE" });
    } finally {
      peer.close();
      await luod.stop();
    }
    expect(readFileSync(victim, "utf8")).toBe("precious\n");
    expect(lstatSync(join(state, "attempt.json.tmp")).isSymbolicLink()).toBe(true);
    expect(JSON.parse(readFileSync(join(state, "attempt.json"), "utf8")).data).toEqual({ last: 64 });
  });
});

describe.skipIf(!root)("the socket path: only luod's own dead socket is removed", () => {
  test.each([
    ["a regular file", (p: string) => writeFileSync(p, "not a socket\n"), "a regular file"],
    ["a FIFO", (p: string) => mkfifo(p), "a FIFO"],
    ["a symlink to a file", (p: string) => { writeFileSync(p + ".target", "x"); symlinkSync(p + ".target", p); }, "a symlink"],
  ])("%s at the socket path survives and luod refuses to start", async (_what, make, kind) => {
    const dir = fresh();
    const sock = join(dir, "luod.sock");
    make(sock);
    const before = lstatSync(sock);
    const r = await refused(["--socket", sock, "--state-dir", join(dir, "state")]);
    expect(r.code).toBe(1);
    expect(r.line).toContain(`${sock} exists and is ${kind}, not a socket`);
    const after = lstatSync(sock);
    expect([after.ino, after.mode]).toEqual([before.ino, before.mode]);
  });

  test("a dead socket left by a killed luod is replaced", async () => {
    const dir = fresh();
    const first = await startDaemon(COMMON, { dir });
    first.proc.kill("SIGKILL");
    await first.proc.exited;
    expect(lstatSync(first.socket).isSocket()).toBe(true);
    const second = await startDaemon(COMMON, { dir });
    try {
      expect(second.logs()).toContain(`removing stale socket ${second.socket}`);
      expect(JSON.parse((await run("luoctl", ["--socket", second.socket, "status", "--json"])).stdout).ok).toBe(true);
    } finally {
      await second.stop();
    }
  });
});

describe("the config file must be a regular file", () => {
  test("a FIFO as --config is refused at once (exit 2), never waited on", async () => {
    const dir = fresh();
    const fifo = join(dir, "luod.conf");
    mkfifo(fifo);
    const t0 = Date.now();
    const r = await run("luod", ["--config", fifo, "--socket", join(dir, "luod.sock"), "--state-dir", join(dir, "state")], { timeoutMs: 10_000 });
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe(`luod: config file ${fifo} is not a regular file (a FIFO)`);
  });

  test("a directory as --config is refused (exit 2)", async () => {
    const dir = fresh();
    const r = await run("luod", ["--config", dir, "--socket", join(dir, "luod.sock")]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe(`luod: config file ${dir} is not a regular file (a directory)`);
  });

  test.skipIf(!root)("a symlink to a root-owned file is followed; a symlink to a file others may write is refused", async () => {
    const dir = fresh();
    writeFileSync(join(dir, "managed.conf"), "verbose = true\n", { mode: 0o644 });
    symlinkSync(join(dir, "managed.conf"), join(dir, "luod.conf"));
    const luod = await startDaemon(["--device", "/nonexistent", "--config", join(dir, "luod.conf")], { dir });
    await luod.stop();
    chownSync(join(dir, "managed.conf"), 65534, 65534);
    const r = await run("luod", ["--config", join(dir, "luod.conf"), "--socket", join(dir, "luod.sock")]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("must belong to root and not be writable by group or others (uid 65534");
  });
});

describe.skipIf(!root)("a malformed state file is set aside with a warning, and luod serves", () => {
  const record = (data: unknown) => JSON.stringify({ bootId: bootId(), data });
  const at = new Date().toISOString();
  const cases: [string, string, string][] = [
    ["restored", "not JSON", "{\"bootId\": "],
    ["restored", "null", "null"],
    ["restored", "null data", record(null)],
    ["restored", "no sessions", record({ previous: null })],
    ["restored", "sessions of the wrong type", record({ previous: null, sessions: "many" })],
    ["restored", "a session with a wrong field", record({ previous: null, sessions: [{ id: 5, session: "s", uid: 0, gid: 0, unit: null, state: "unclaimed", restoredAt: at, changedAt: at, claimedByPid: null }] })],
    ["restored", "a session of an unknown state", record({ previous: null, sessions: [{ id: "a", session: "s", uid: 0, gid: 0, unit: null, state: "lost", restoredAt: at, changedAt: at, claimedByPid: null }] })],
    ["loaded", "not JSON", "\u0000\u0001"],
    ["loaded", "an array", "[1,2]"],
    ["loaded", "missing fields", record({ version: "7.2" })],
    ["loaded", "wrong types", record({ version: 7, sha256: null, cmdline: [], size: "big", initrdSize: null, loadedAt: 0 })],
  ];
  test.each(cases)("%s.json: %s", async (name, _what, text) => {
    const dir = fresh();
    const state = join(dir, "state");
    mkdirSync(state, { mode: 0o700 });
    writeFileSync(join(state, `${name}.json`), text);
    const luod = await startDaemon(COMMON, { dir });
    try {
      const status = await run("luoctl", ["--socket", luod.socket, "status", "--json"]);
      expect(status.code).toBe(0);
      expect(JSON.parse(status.stdout).ok).toBe(true);
      expect(luod.logs()).toContain(`state file ${join(state, `${name}.json`)} is unusable: `);
    } finally {
      expect(await luod.stop()).toBe(0);
    }
    const files = readdirSync(state);
    expect(files).not.toContain(`${name}.json`);
    const aside = files.filter((f) => f.startsWith(`${name}.json.bad-`));
    expect(aside).toHaveLength(1);
    expect(readFileSync(join(state, aside[0]!), "utf8")).toBe(text);
  });

  test("a symlink as restored.json is not followed: set aside, its target untouched", async () => {
    const dir = fresh();
    const state = join(dir, "state");
    mkdirSync(state, { mode: 0o700 });
    writeFileSync(join(dir, "elsewhere.json"), record({ previous: null, sessions: [] }));
    symlinkSync(join(dir, "elsewhere.json"), join(state, "restored.json"));
    const luod = await startDaemon(COMMON, { dir });
    try {
      expect(luod.logs()).toContain("is unusable: it is a symlink; set aside as");
      expect(luod.logs()).not.toContain("restarted after a live-update boot");
    } finally {
      await luod.stop();
    }
    expect(readFileSync(join(dir, "elsewhere.json"), "utf8")).toBe(record({ previous: null, sessions: [] }));
  });
});

// Hostile state and config files. In this process, for volume: every state record luod keeps
// (STATE_SCHEMAS: restored, loaded, attempt, fdstore, subscriptions, running-abi, and any added later) is written mutated —
// fields deleted or of the wrong type, random JSON, garbage bytes, truncated, another boot's, a
// directory, a FIFO, a symlink, a socket, another owner, a group/world-writable mode — and
// StateFiles.readChecked must return ok (then the data fits its schema), absent or invalid (then
// the file is set aside), never throw, never block, and log only clean lines. Then a few starts of
// the compiled luod: with mutated state files it starts and serves STATUS; with a mutated config
// file it starts or refuses with exit 2 and one line, never exit 1 (a TypeError).
//
//   LUO_FUZZ_SEED=N   replay (the seed is printed)
import { afterAll, expect, test } from "bun:test";
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import * as v from "valibot";
import { STATE_SCHEMAS, StateFiles, type StateName } from "../../src/daemon/state-files";
import { createLogger } from "../../src/daemon/log";
import { unixListen } from "../../src/kernel/unix";
import { closeFd } from "../../src/kernel/fd";
import { DIST, requireBinary, startDaemon } from "../support/binary";
import { RawPeer } from "../integration/raw-peer";
import { Rng, randomJson, randomString } from "./generate";
import { badLogLines, fuzzSeed } from "./support";

const SEED = fuzzSeed();
const VOLUME = Number(process.env.LUO_FUZZ_STATE_FILES ?? 3000);
const isRoot = process.getuid?.() === 0;
const BOOT = (() => {
  try {
    return require("node:fs").readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim() as string;
  } catch {
    return "unknown";
  }
})();
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function tempDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}

const at = new Date().toISOString();
/** A valid record of each kind, the seed of its mutations. */
const VALID: Record<string, unknown> = {
  attempt: { last: 7 },
  loaded: { version: "7.2.14", sha256: "ab".repeat(32), cmdline: "console=ttyS0 liveupdate=on", size: 1 << 20, initrdSize: null, loadedAt: at },
  restored: {
    previous: { attempt: 7, createdAt: at, from: "7.2.12", timings: { preserve_ms: 3 } },
    sessions: [{ id: "vm-1", session: "luod:vm-1/7", uid: 0, gid: 0, unit: null, state: "unclaimed", restoredAt: at, changedAt: at, claimedByPid: null }],
  },
  fdstore: { jumpRequested: false, outgoing: [{ fdname: "luod-1", session: "luod:vm-1/8", entry: null }] },
  subscriptions: { version: 1, clients: [{ id: "vm-1", uid: 0, gid: 0, pid: 4242, unit: null, since: at }] },
  "running-abi": { banner: "Linux version 7.2.14 (luo@test) #1 SMP\n", source: "recorded", abi: { luo: "luo-v5", memfd: "memfd-v2", kho: "kho-v4" } },
};

/** Replaces, deletes or retypes something somewhere inside `x`. */
function mutate(rng: Rng, x: unknown, depth = 0): unknown {
  if (x === null || typeof x !== "object" || rng.chance(0.2) || depth > 4) return rng.chance(0.5) ? randomJson(rng, 2) : rng.pick<unknown>([null, "", -1, 1e308, [], {}, "x".repeat(300), "\u0000\u001b[2J"]);
  if (Array.isArray(x)) {
    const a = [...x];
    if (a.length && rng.chance(0.7)) a[rng.int(0, a.length - 1)] = mutate(rng, a[rng.int(0, a.length - 1)], depth + 1);
    else a.push(randomJson(rng, 2));
    return a;
  }
  const o = { ...(x as Record<string, unknown>) };
  const keys = Object.keys(o);
  const r = rng.int(0, 3);
  if (r === 0 && keys.length) delete o[rng.pick(keys)];
  else if (r === 1) o[randomString(rng, 8)] = randomJson(rng, 2);
  else if (keys.length) {
    const k = rng.pick(keys);
    o[k] = mutate(rng, o[k], depth + 1);
  }
  return o;
}

type Hostile = { how: string; write: (path: string) => void };

/** One hostile version of state file `name`'s path. */
function hostileState(rng: Rng, name: string): Hostile {
  const valid = VALID[name] ?? randomJson(rng, 3);
  const text = (data: unknown, boot = BOOT) => JSON.stringify({ bootId: boot, data });
  const r = rng.int(0, 15);
  const file = (how: string, content: string | Uint8Array, mode = 0o600, uid = -1): Hostile => ({
    how, write: (p) => {
      writeFileSync(p, content, { mode });
      chmodSync(p, mode);
      if (uid >= 0 && isRoot) chownSync(p, uid, uid);
    },
  });
  switch (r) {
    case 0: return file("valid", text(valid));
    case 1: return file("another boot's", text(mutate(rng, valid), "0000"));
    case 2: return file("garbage bytes", new Uint8Array(Array.from({ length: rng.int(0, 400) }, () => rng.int(0, 255))));
    case 3: return file("truncated", text(valid).slice(0, rng.int(0, text(valid).length - 1)));
    case 4: return file("random JSON", JSON.stringify(randomJson(rng, 4)));
    case 5: return file("random data", text(randomJson(rng, 4)));
    case 6: return file("group/world-writable", text(valid), rng.pick([0o666, 0o620, 0o602]));
    case 7: return file("another owner's", text(valid), 0o600, rng.pick([65534, 1000, 64300]));
    case 8: return { how: "directory", write: (p) => mkdirSync(p) };
    case 9: return { how: "FIFO", write: (p) => void spawnSync("mkfifo", [p]) };
    case 10: return { how: "symlink", write: (p) => symlinkSync(rng.pick(["/etc/passwd", "/nonexistent", "/dev/zero", "/proc/self/status"]), p) };
    case 11: return { how: "socket", write: (p) => closeFd(unixListen(p)) };
    case 12: return file("deep nesting", text(JSON.parse("[".repeat(5000) + "]".repeat(5000))));
    default: {
      let d = valid;
      for (let i = rng.int(1, 4); i > 0; i--) d = mutate(rng, d);
      return file("mutated", text(d));
    }
  }
}

const NAMES = Object.keys(STATE_SCHEMAS) as StateName[];

test("StateFiles.readChecked takes any hostile state file: ok and valid, absent, or invalid and set aside; never throws, blocks or logs raw bytes", () => {
  console.log(`state/config fuzz: seed ${SEED}, ${VOLUME} state files (replay: LUO_FUZZ_SEED=${SEED} bun test tests/fuzz/state-config-fuzz.test.ts)`);
  const rng = new Rng(SEED);
  const dir = tempDir("luo-state-fuzz-");
  let log = "";
  const files = new StateFiles(join(dir, "state"), createLogger({ prefix: true, write: (l) => (log += l + "\n") }));
  const outcomes = new Map<string, number>();
  for (let i = 0; i < VOLUME; i++) {
    const name = rng.pick(NAMES);
    const path = join(files.dir, `${name}.json`);
    rmSync(path, { recursive: true, force: true });
    const h = hostileState(rng, name);
    h.write(path);
    const ctx = `${h.how} ${name}.json (seed ${SEED}, file ${i})`;
    let r: ReturnType<StateFiles["readChecked"]>;
    try {
      r = files.readChecked(name);
    } catch (e) {
      throw new Error(`readChecked threw on ${ctx}: ${(e as Error).stack}`);
    }
    outcomes.set(`${h.how}: ${r.kind}`, (outcomes.get(`${h.how}: ${r.kind}`) ?? 0) + 1);
    if (r.kind === "ok") expect(v.safeParse(STATE_SCHEMAS[name], r.data).success, ctx).toBe(true);
    if (r.kind === "invalid") expect(existsSync(path), `${ctx}: set aside`).toBe(false);
    if (h.how === "valid") expect(r.kind, ctx).toBe("ok");
    if (["directory", "FIFO", "symlink", "socket", "group/world-writable", "garbage bytes"].includes(h.how) || (h.how === "another owner's" && isRoot)) expect(r.kind, ctx).toBe("invalid");
    // the set-aside files pile up: clear them now and then
    if (i % 200 === 199) for (const f of readdirSync(files.dir)) rmSync(join(files.dir, f), { recursive: true, force: true });
  }
  expect(badLogLines(log)).toEqual([]);
  console.log(`state/config fuzz: ${[...outcomes].sort().map(([k, n]) => `${k} ${n}`).join(", ")}`);
});

/** Config file contents: valid lines, then some of them broken. */
const CONFIG_LINES = ["max-connections = 64", "max-connections-per-uid = 8", "first-request-timeout = 5s", "# a comment", "", 'client-group = "0"', "admin-group = 0"];

test("the compiled luod starts with hostile state files, and starts or refuses (exit 2, one line) a hostile config file, never exit 1", async () => {
  requireBinary();
  const rng = new Rng(SEED ^ 0x85ebca6b);
  const runs: string[] = [];
  // state files: every record hostile at once, luod starts and answers
  for (let run = 0; run < 4; run++) {
    const dir = tempDir("luo-state-start-");
    const state = join(dir, "state");
    mkdirSync(state, { mode: 0o700 });
    const hows = NAMES.map((name) => {
      const h = hostileState(rng, name);
      h.write(join(state, `${name}.json`));
      return `${name}: ${h.how}`;
    });
    const luod = await startDaemon(["--device", "/nonexistent/luo-fuzz/liveupdate", "--config", "/dev/null"], { dir }).catch((e: Error) => e);
    expect(luod, `luod with hostile state files (${hows.join(", ")}; seed ${SEED})`).not.toBeInstanceOf(Error);
    if (luod instanceof Error) continue;
    const p = RawPeer.connect(luod.socket);
    expect(await p.request({ cmd: "STATUS" }), hows.join(", ")).toMatchObject({ ok: true, phase: "idle" });
    p.close();
    expect(await luod.stop()).toBe(0);
    expect(luod.logs()).not.toContain("TypeError");
    expect(badLogLines(luod.logs()), hows.join(", ")).toEqual([]);
    runs.push(`state {${hows.join(", ")}}: started`);
  }
  // the config file
  for (let run = 0; run < 8; run++) {
    const dir = tempDir("luo-config-fuzz-");
    chmodSync(dir, 0o755);
    const conf = join(dir, "luod.conf");
    let lines = Array.from({ length: rng.int(0, 4) }, () => rng.pick(CONFIG_LINES));
    lines = [...new Set(lines.map((l) => l.split("=")[0]))].map((k) => lines.find((l) => l.split("=")[0] === k)!); // no repeated key
    let body = lines.join("\n") + "\n";
    const kind = rng.pick(["fine", "garbage line", "bad value", "unknown key", "control characters", "FIFO", "directory", "world-writable", "another owner's", "symlink"]);
    let mustRefuse = true;
    switch (kind) {
      case "fine": mustRefuse = false; break;
      case "garbage line": body += randomString(rng, 60).replace(/[\n#=]/g, "x") + "!\n"; break;
      case "bad value": body += `max-connections = ${rng.pick(["-1", "lots", "1e9", "\"\"", "0x10"])}\n`; break;
      case "unknown key": body += `${rng.pick(["socket-path", "evil\u001b[2J", "maxconnections"])} = 1\n`; break;
      case "control characters": body += `admin-group = "a\u0000b\u001b[2Jc\u0007"\n`; break;
    }
    if (kind === "FIFO") spawnSync("mkfifo", [conf]);
    else if (kind === "directory") mkdirSync(conf);
    else if (kind === "symlink") {
      writeFileSync(join(dir, "real.conf"), body, { mode: 0o644 });
      symlinkSync(join(dir, "real.conf"), conf);
      mustRefuse = false; // a symlink to a good root-owned file is a good file
    } else {
      writeFileSync(conf, body, { mode: 0o644 });
      if (kind === "world-writable") chmodSync(conf, 0o666);
      if (kind === "another owner's") {
        if (!isRoot) continue;
        chownSync(conf, 65534, 65534);
      }
    }
    const proc = Bun.spawn([join(DIST, "luod"), "--socket", join(dir, "luod.sock"), "--state-dir", join(dir, "state"), "--device", "/nonexistent/luo-fuzz/liveupdate", "--config", conf], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
    let err = "";
    const reader = (async () => {
      for await (const chunk of proc.stderr) err += new TextDecoder().decode(chunk);
    })();
    const until = Date.now() + 10_000;
    while (proc.exitCode === null && !err.includes("listening on") && Date.now() < until) await Bun.sleep(20);
    const started = proc.exitCode === null && err.includes("listening on");
    if (started) proc.kill("SIGTERM");
    const code = await proc.exited;
    await reader;
    const ctx = `config "${kind}" ${JSON.stringify(body)} (seed ${SEED}): exit ${code}, ${JSON.stringify(err.slice(0, 400))}`;
    expect(started || proc.exitCode !== null, `luod neither started nor exited within 10 s: ${ctx}`).toBe(true);
    expect(err, ctx).not.toContain("TypeError");
    // a refusal is luod's one "luod: …" line before its log starts; a start logs <N> lines
    if (started) expect(badLogLines(err), ctx).toEqual([]);
    else expect(err, ctx).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f]/);
    if (started) {
      expect(mustRefuse, `luod started with a config it must refuse: ${ctx}`).toBe(false);
      expect(code, ctx).toBe(0);
    } else {
      expect(code, ctx).toBe(2);
      expect(err.trim().split("\n"), `one line: ${ctx}`).toHaveLength(1);
    }
    runs.push(`config ${kind}: ${started ? "started" : `exit ${code}`}`);
  }
  console.log(`state/config fuzz: ${runs.join("; ")}`);
}, 90_000);

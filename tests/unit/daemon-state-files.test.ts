// State files under luod's state dir: every record is checked against its schema when read; a bad
// one is reported in one warning and set aside (renamed, never deleted), and writes never follow a
// planted symlink.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { chmodSync, chownSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { StateFiles, type StateName } from "../../src/daemon/state-files";
import { FdStore } from "../../src/daemon/fd-store";

let dir: string;
let warnings: string[];
let files: StateFiles;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "luod-state-"));
  warnings = [];
  files = new StateFiles(dir, { warning: (m) => warnings.push(m) });
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const bootId = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
const record = (data: unknown) => JSON.stringify({ bootId, data });
const at = new Date().toISOString();
const entry = { id: "vm", session: "luod:vm/1", uid: 0, gid: 0, pid: 1, unit: null, subscribedAt: at, readyAt: at };

const GOOD: Record<StateName, unknown> = {
  attempt: { last: 64 },
  loaded: { version: "7.2", sha256: "ab", cmdline: "quiet", size: 10, initrdSize: null, loadedAt: at },
  restored: { previous: null, sessions: [{ id: "vm", session: "luod:vm/1", uid: 0, gid: 0, unit: null, state: "unclaimed", restoredAt: at, changedAt: at, claimedByPid: null }] },
  subscriptions: { version: 1, clients: [{ id: "vm", uid: 1000, gid: 1000, pid: 42, unit: "vm.service", since: at }] },
  fdstore: { jumpRequested: false, outgoing: [{ fdname: "luod%3Avm/1", session: "luod:vm/1", entry }] },
  "running-abi": { banner: "Linux version 7.2.13 (luo@test) #1 SMP\n", source: "recorded", abi: { luo: "luo-v5", memfd: "memfd-v2", kho: null } },
};

const BAD: [StateName, string, string][] = [
  ["attempt", "not JSON", "{"],
  ["attempt", "a string number", record({ last: "5" })],
  ["attempt", "a fraction", record({ last: 1.5 })],
  ["loaded", "null data", record(null)],
  ["loaded", "a missing field", record({ version: "7.2", sha256: "ab", cmdline: "", size: 1, loadedAt: at })],
  ["restored", "null", "null"],
  ["running-abi", "an abi string that is a number", record({ banner: "b", source: "s", abi: { luo: 5, memfd: null, kho: null } })],
  ["restored", "no sessions", record({ previous: null })],
  ["restored", "a session that is null", record({ previous: null, sessions: [null] })],
  ["subscriptions", "another version", record({ version: 2, clients: [] })],
  ["subscriptions", "an id SUBSCRIBE would refuse", record({ version: 1, clients: [{ id: "vm/1\u001b", uid: 0, gid: 0, pid: 1, unit: null, since: at }] })],
  ["subscriptions", "a client without a uid", record({ version: 1, clients: [{ id: "vm", gid: 0, pid: 1, unit: null, since: at }] })],
  ["fdstore", "not JSON", "garbage"],
  ["fdstore", "null data", record(null)],
  ["fdstore", "outgoing of the wrong type", record({ jumpRequested: false, outgoing: {} })],
  ["fdstore", "an entry with a wrong field", record({ jumpRequested: true, outgoing: [{ fdname: "x", session: "x", entry: { ...entry, uid: "root" } }] })],
  ["fdstore", "jumpRequested missing", record({ outgoing: [] })],
];

describe("reading", () => {
  test.each(Object.keys(GOOD) as StateName[])("a good %s.json is read back as written", (name) => {
    files.write(name, GOOD[name]);
    expect(files.read(name)).toEqual(GOOD[name]);
    expect(warnings).toEqual([]);
  });

  test.each(BAD)("%s.json: %s is reported, set aside and read as absent", (name, _what, text) => {
    writeFileSync(join(dir, `${name}.json`), text);
    expect(files.readChecked(name).kind).toBe("invalid");
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toStartWith(`state file ${join(dir, `${name}.json`)} is unusable: `);
    const aside = readdirSync(dir).filter((f) => f.startsWith(`${name}.json.bad-`));
    expect(aside).toHaveLength(1);
    expect(readFileSync(join(dir, aside[0]!), "utf8")).toBe(text);
    expect(files.readChecked(name).kind).toBe("absent");
  });

  test("a record of another boot is ignored, not set aside", () => {
    writeFileSync(join(dir, "attempt.json"), JSON.stringify({ bootId: "another", data: { last: 5 } }));
    expect(files.readChecked("attempt").kind).toBe("absent");
    expect(warnings).toEqual([]);
    expect(readdirSync(dir)).toEqual(["attempt.json"]);
  });

  test("fields a newer luod added are kept", () => {
    files.write("attempt", { last: 3, extra: "x" });
    expect(files.read("attempt")).toEqual({ last: 3, extra: "x" });
  });
});

describe("writing", () => {
  test("a symlink planted at the old temp name is neither followed nor removed", () => {
    const victim = join(dir, "..", `${dir.split("/").pop()}-victim`);
    writeFileSync(victim, "precious");
    try {
      symlinkSync(victim, join(dir, "loaded.json.tmp"));
      files.write("loaded", GOOD.loaded);
      expect(readFileSync(victim, "utf8")).toBe("precious");
      expect(files.read("loaded")).toEqual(GOOD.loaded);
      expect(readdirSync(dir).sort()).toEqual(["loaded.json", "loaded.json.tmp"]);
    } finally {
      rmSync(victim, { force: true });
    }
  });

  test("a symlink planted at the next temp name is not followed: the write moves on to a fresh name", () => {
    const victim = join(dir, "victim");
    writeFileSync(victim, "precious");
    for (let i = 1; i <= 3; i++) symlinkSync(victim, join(dir, `attempt.json.${process.pid}.${i}.tmp`));
    files.write("attempt", { last: 1 });
    expect(readFileSync(victim, "utf8")).toBe("precious");
    expect(files.read("attempt")).toEqual({ last: 1 });
  });
});

test("a problem that quotes the file's bytes reaches the log with its control characters escaped", () => {
  const session = { ...(GOOD.restored as { sessions: object[] }).sessions[0], state: "\u001b[31m\u0000\u0007x" };
  writeFileSync(join(dir, "restored.json"), record({ previous: null, sessions: [session] }));
  files.readChecked("restored");
  expect(warnings).toHaveLength(1);
  expect(warnings[0]).toContain("\\x1b[31m\\x00\\x07x");
  expect(warnings[0]).not.toMatch(/[\x00-\x1f\x7f-\x9f]/);
});

test("luod restarted under systemd with a malformed fdstore.json sorts what systemd hands back as incoming, and warns", () => {
  writeFileSync(join(dir, "fdstore.json"), record({ jumpRequested: true, outgoing: {} }));
  const ops = { notify: () => {}, close: () => {}, sessionName: () => "luod:vm/1" };
  const log = { error: () => {}, warning: (m: string) => warnings.push(m), notice: () => {}, info: () => {}, debug: () => {} };
  const store = new FdStore(ops, log, files, 16);
  const r = store.adopt([{ fd: 1000, name: "luod%3Avm/1" }]);
  expect(r).toEqual({ outgoing: [], jumpRequested: false });
  expect([...store.incoming.keys()]).toEqual(["luod:vm/1"]);
  expect(warnings.some((w) => w.includes("fdstore.json is unusable"))).toBe(true);
});

test.skipIf(process.getuid?.() !== 0)("a record luod did not write (another owner, writable by others) is set aside, not trusted", () => {
  for (const [owner, mode, why] of [[65534, 0o600, "belongs to uid 65534"], [0, 0o666, "writable by group or others (mode 0666)"]] as const) {
    const path = join(dir, "restored.json");
    writeFileSync(path, record(GOOD.restored));
    chownSync(path, owner, owner);
    chmodSync(path, mode);
    warnings = [];
    expect(files.read("restored")).toBeNull();
    expect(warnings[0]).toContain(why);
  }
});

// Versions are contracts (docs/protocol.md#compatibility): today's luod, luoctl and luo-qemu read
// every format as an earlier release wrote it. tests/fixtures/v-a93c5de/ holds the files a93c5de
// wrote (tests/fixtures/write-format-fixtures.ts); each is read here by the code that reads it in
// production. A reader must also take a newer writer's additions, and refuse a newer version.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { decodeManifest } from "../../src/daemon/manifest";
import { StateFiles, STATE_SCHEMAS, STATE_VERSIONS, type StateName } from "../../src/daemon/state-files";
import { RestoredSessions, previousUpdateJson } from "../../src/daemon/restored";
import { ExpectedRecord } from "../../src/daemon/expected";
import { attemptCounter } from "../../src/daemon/main";
import { FakeKernel } from "../../src/daemon/fake-kernel";
import { createLogger } from "../../src/daemon/log";
import { decodeRecord } from "../../src/qemu/record";
import { findRunningQemu } from "../../src/qemu/run-dir";
import { formatStatus } from "../../src/ctl/format";
import { previousUpdateCreatedAt, replyProblem } from "../../src/wire/replies";

const FIXTURES = resolve(import.meta.dir, "../fixtures/v-a93c5de");
const fixture = (name: string) => readFileSync(join(FIXTURES, name), "utf8");
const BOOT_ID = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
const STATE_NAMES = Object.keys(STATE_SCHEMAS) as StateName[];

let dir: string;
let warnings: string[];
let files: StateFiles;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "format-fixtures-"));
  warnings = [];
  files = new StateFiles(dir, { warning: (m: string) => void warnings.push(m) });
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** A state file of the fixtures, as this boot's (a record of another boot is ignored by design), edited by `change`. */
function installState(name: StateName, change: (record: Record<string, unknown>) => void = () => {}): void {
  const record = JSON.parse(fixture(`${name}.json`)) as Record<string, unknown>;
  record.bootId = BOOT_ID;
  change(record);
  writeFileSync(join(dir, `${name}.json`), JSON.stringify(record), { mode: 0o600 });
}

const quietLog = createLogger({ write: () => {} });

describe("a93c5de's state files are read by today's luod", () => {
  test("there is a fixture of every state file luod writes", () => {
    const present = readdirSync(FIXTURES).filter((f) => f.endsWith(".json")).map((f) => f.slice(0, -5));
    expect(present).toEqual(expect.arrayContaining(STATE_NAMES));
  });

  for (const name of STATE_NAMES) {
    test(`${name}.json (no version in the record: version 1) fits its schema`, () => {
      installState(name);
      expect(files.readChecked(name)).toMatchObject({ kind: "ok" });
      expect(warnings).toEqual([]);
    });
  }

  test("restored.json with the camelCase previous update: STATUS shows it in both spellings", () => {
    installState("restored");
    const restored = new RestoredSessions(new FakeKernel(), files, quietLog);
    expect(restored.loadFromState()).toBe(true);
    expect(restored.unclaimed().map((s) => s.id)).toEqual(["vm-1"]);
    const at = "2026-12-04T09:27:02.201Z";
    expect(previousUpdateJson(restored.previous)).toEqual({
      attempt: 1, created_at: at, createdAt: at, from: "7.2.13-fake",
      timings: { sessions_created_ms: 5, fds_sent_ms: 6, all_ready_ms: 9, manifest_ms: 9 },
    });
  });

  test("restored.json as a later luod may write it (created_at, an unknown field) is read too", () => {
    installState("restored", (r) => {
      const data = r.data as { previous: Record<string, unknown> };
      data.previous.created_at = data.previous.createdAt;
      delete data.previous.createdAt;
      data.previous.added_later = true;
    });
    const restored = new RestoredSessions(new FakeKernel(), files, quietLog);
    expect(restored.loadFromState()).toBe(true);
    expect(restored.previous?.createdAt).toBe("2026-12-04T09:27:02.201Z");
  });

  test("a previous update with neither spelling of its time is set aside, not read", () => {
    installState("restored", (r) => void delete (r.data as { previous: Record<string, unknown> }).previous.createdAt);
    expect(files.readChecked("restored")).toMatchObject({ kind: "invalid" });
    expect(warnings).toEqual([expect.stringContaining("createdAt is missing")]);
  });

  test("subscriptions.json: its client is expected back; attempt.json: numbers go on above it", () => {
    installState("subscriptions");
    expect(new ExpectedRecord(files, quietLog, () => []).load()).toEqual([
      { id: "vm-1", uid: 0, gid: 0, pid: 4242, unit: "vm@1.service", since: "2026-12-04T08:00:00.000Z" },
    ]);
    installState("attempt");
    expect(attemptCounter(files)()).toBe(65);
  });

  test("today's luod writes the version into each record, and reads its own records back", () => {
    files.write("attempt", { last: 128 });
    const written = JSON.parse(readFileSync(join(dir, "attempt.json"), "utf8"));
    expect(written).toEqual({ bootId: BOOT_ID, version: STATE_VERSIONS.attempt, data: { last: 128 } });
    expect(files.readChecked("attempt")).toEqual({ kind: "ok", data: { last: 128 } });
  });

  test("a record of a newer version is set aside with a warning, never guessed at", () => {
    installState("loaded", (r) => void (r.version = STATE_VERSIONS.loaded + 1));
    expect(files.readChecked("loaded")).toMatchObject({ kind: "invalid", problem: expect.stringContaining("newer than this luod reads") });
    expect(warnings).toHaveLength(1);
  });

  test("a record with fields a newer luod added (same version) is read", () => {
    installState("loaded", (r) => {
      r.version = 1;
      (r.data as Record<string, unknown>).added_later = { x: 1 };
    });
    expect(files.readChecked("loaded")).toMatchObject({ kind: "ok", data: { version: "7.2.14" } });
  });
});

describe("a93c5de's manifest is read by the luod after the jump", () => {
  test("as written", () => {
    const m = decodeManifest(readFileSync(join(FIXTURES, "manifest.json")));
    expect(m).toMatchObject({ version: 1, attempt: 1, kernel: { from: "7.2.13-fake", next: { version: "7.2.14", abi: { luo: "luo-v5" } } } });
    expect(m.entries.map((e) => e.session)).toEqual(["luod:vm-1/1"]);
  });

  test("with fields a newer luod added, at the top and in an entry", () => {
    const raw = JSON.parse(fixture("manifest.json"));
    raw.added_later = 1;
    raw.entries[0].added_later = "x";
    expect(decodeManifest(new TextEncoder().encode(JSON.stringify(raw))).entries[0]!.id).toBe("vm-1");
  });

  test("a newer version is refused with one line", () => {
    const raw = { ...JSON.parse(fixture("manifest.json")), version: 2 };
    expect(() => decodeManifest(new TextEncoder().encode(JSON.stringify(raw)))).toThrow("manifest version 2 is newer than this luod understands (1)");
  });
});

describe("a93c5de's STATUS reply (previous_update in camelCase only) is read by luoctl and luo-qemu", () => {
  const status = JSON.parse(fixture("status-reply.json")) as Record<string, unknown>;

  test("it is a valid STATUS reply", () => {
    expect(replyProblem(status, "STATUS")).toBeNull();
  });

  test("luoctl status shows when the previous update was committed, from either spelling", () => {
    expect(formatStatus(status, Date.parse("2026-12-04T10:00:00Z"))).toContain("last update:  #1 from 7.2.13-fake at 2026-12-04T09:27:02.201Z");
    const snake = { ...status, previous_update: { attempt: 1, from: "7.2.13-fake", created_at: "2026-12-04T09:27:02.201Z", timings: {} } };
    expect(formatStatus(snake)).toContain("at 2026-12-04T09:27:02.201Z");
  });

  test("the commit time luo-qemu reads (previousUpdateCreatedAt) comes from either spelling, snake_case first", () => {
    expect(previousUpdateCreatedAt(status.previous_update)).toBe("2026-12-04T09:27:02.201Z");
    expect(previousUpdateCreatedAt({ created_at: "a" })).toBe("a");
    expect(previousUpdateCreatedAt({ created_at: "a", createdAt: "b" })).toBe("a");
    expect(previousUpdateCreatedAt(null)).toBeNull();
    expect(previousUpdateCreatedAt({ createdAt: 5 })).toBeNull();
  });
});

describe("a93c5de's luo-qemu records are read by today's luo-qemu", () => {
  test("the start record, as written and with a field a newer luo-qemu added", () => {
    const bytes = readFileSync(join(FIXTURES, "qemu-start-record.json"));
    expect(decodeRecord(bytes)).toMatchObject({ id: "vm-1", attempt: 3, memory_bytes: 256 << 20 });
    const added = { ...JSON.parse(bytes.toString()), added_later: true };
    expect(decodeRecord(new TextEncoder().encode(JSON.stringify(added)))).toMatchObject({ id: "vm-1" });
  });

  test("qemu.json: the QEMU it names is taken over while that process runs", () => {
    const runDir = join(dir, "run");
    const proc = join(dir, "proc");
    const state = JSON.parse(fixture("qemu.json"));
    mkdirSync(join(proc, "4242"), { recursive: true });
    // /proc/PID/exe names the binary itself (on a machine with QEMU installed, through its links)
    symlinkSync(existsSync(state.qemu.path) ? realpathSync(state.qemu.path) : state.qemu.path, join(proc, "4242", "exe"));
    const fields = ["S", "1", "2", "2", "0", "-1", "4194560", "1", "0", "0", "0", "5", "6", "0", "0", "20", "0", "3", "0", state.start_time, "100"];
    writeFileSync(join(proc, "4242", "stat"), `4242 (qemu) ${fields.join(" ")}\n`);
    mkdirSync(runDir);
    writeFileSync(join(runDir, "qemu.json"), fixture("qemu.json"));
    expect(findRunningQemu(runDir, "vm-1", proc)).toMatchObject({ id: "vm-1", pid: 4242, paused_for_update: false });
  });
});

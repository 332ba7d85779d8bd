// luod's journal entries (docs/daemon.md#logs-and-the-audit-trail): the native format's bytes,
// the logger's choice between journald's socket and stderr, the fields of milestones and the
// audit records of admin requests (docs/daemon.md#the-audit-trail).
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encodeJournalEntry, JOURNAL_VALUE_MAX_BYTES } from "../../src/daemon/journal-entry";
import { createLogger, journalFromEnvironment, journalSocketPath, type Logger } from "../../src/daemon/log";
import { MESSAGE_ID } from "../../src/daemon/message-ids";
import { audit } from "../../src/daemon/audit";
import { Broker } from "../../src/daemon/broker";
import { Dispatcher } from "../../src/daemon/dispatch";
import { KernelLoader } from "../../src/daemon/loader";
import { RestoredSessions } from "../../src/daemon/restored";
import { StateFiles } from "../../src/daemon/state-files";
import { FakeKernel } from "../../src/daemon/fake-kernel";
import { fileIdentity, closeFd } from "../../src/kernel/fd";
import { JOURNAL_SOCKET } from "../../src/kernel/journal";
import { MessageIo } from "../../src/kernel/scm-rights";
import { unixDatagramBind } from "../../src/kernel/unix";
import { escapeControl } from "../../src/wire/escape";
import type { Request } from "../../src/wire/requests";
import { RecordingPeer } from "../support/fake-peer";
import { decodeJournalEntry, field, type JournalEntry } from "../support/journal-entries";

const utf8 = new TextEncoder();
const text = (b: Uint8Array) => new TextDecoder().decode(b);
const HOSTILE = "bye\x00<0>forged\x07\n<0>another\r\x1b[2J\x7f";

/** A logger whose entries are captured (decoded) and whose stderr lines are kept. */
function capture(opts: { sendOk?: boolean } = {}) {
  const entries: JournalEntry[] = [];
  const lines: string[] = [];
  const log = createLogger({
    verbose: true, write: (l) => lines.push(l),
    journal: (entry) => {
      entries.push(decodeJournalEntry(entry));
      return opts.sendOk ?? true;
    },
  });
  return { log, entries, lines };
}

describe("encodeJournalEntry", () => {
  test("writes NAME=value lines, in order", () => {
    expect(text(encodeJournalEntry([["MESSAGE", "luod started"], ["PRIORITY", "5"], ["LUO_CLIENT", "vm-1"]]))).toBe(
      "MESSAGE=luod started\nPRIORITY=5\nLUO_CLIENT=vm-1\n",
    );
  });

  test("a value with a newline goes as NAME, newline, its length (u64 little-endian), its bytes, newline", () => {
    const got = encodeJournalEntry([["MESSAGE", "a\nb\x00c"], ["PRIORITY", "4"]]);
    const expected = new Uint8Array([
      ...utf8.encode("MESSAGE\n"), 5, 0, 0, 0, 0, 0, 0, 0, ...utf8.encode("a\nb\x00c"), 0x0a, ...utf8.encode("PRIORITY=4\n"),
    ]);
    expect([...got]).toEqual([...expected]);
  });

  test("binary values come through byte for byte, newlines and all", () => {
    const bytes = new Uint8Array(256).map((_, i) => i);
    const got = encodeJournalEntry([["LUO_BLOB", bytes], ["MESSAGE", "after"]]);
    const at = utf8.encode("LUO_BLOB\n").length;
    expect(new DataView(got.buffer, got.byteOffset + at, 8).getBigUint64(0, true)).toBe(256n);
    expect([...got.subarray(at + 8, at + 8 + 256)]).toEqual([...bytes]);
    expect(decodeJournalEntry(got).get("MESSAGE")).toEqual(["after"]);
  });

  test("refuses a field name journald would reject", () => {
    for (const bad of ["message", "_PID", "1ABC", "LUO-CLIENT", "", "A".repeat(65)])
      expect(() => encodeJournalEntry([[bad, "x"]])).toThrow("invalid journal field name");
    expect(() => encodeJournalEntry([["A".repeat(64), "x"]])).not.toThrow();
  });

  test("a value over the bound is cut at a character boundary and says so", () => {
    const long = "é".repeat(JOURNAL_VALUE_MAX_BYTES); // 2 bytes each
    const value = field(decodeJournalEntry(encodeJournalEntry([["MESSAGE", long]])), "MESSAGE")!;
    expect(utf8.encode(value).length).toBeLessThanOrEqual(JOURNAL_VALUE_MAX_BYTES);
    expect(value).toEndWith("é… (truncated)");
    expect(value).not.toContain("\ufffd");
  });
});

describe("createLogger with a journal", () => {
  test("an entry has MESSAGE, PRIORITY, SYSLOG_IDENTIFIER=luod and the message's fields; absent ones are left out", () => {
    const { log, entries, lines } = capture();
    log.notice("update 3 started", { MESSAGE_ID: MESSAGE_ID.updateStarted, LUO_UPDATE: 3, LUO_UID: 0, LUO_PID: 42, LUO_UNIT: null });
    expect(lines).toEqual([]);
    expect([...entries[0]!.entries()]).toEqual([
      ["MESSAGE", ["update 3 started"]], ["PRIORITY", ["5"]], ["SYSLOG_IDENTIFIER", ["luod"]],
      ["MESSAGE_ID", [MESSAGE_ID.updateStarted]], ["LUO_UPDATE", ["3"]], ["LUO_UID", ["0"]], ["LUO_PID", ["42"]],
    ]);
  });

  test("the message and field values are escaped: control characters cannot split or forge an entry", () => {
    const { log, entries } = capture();
    log.warning(`client sent FAIL: ${HOSTILE}`, { LUO_CLIENT: HOSTILE });
    expect(field(entries[0]!, "MESSAGE")).toBe(`client sent FAIL: ${escapeControl(HOSTILE)}`);
    expect(field(entries[0]!, "LUO_CLIENT")).toBe(escapeControl(HOSTILE));
    expect(field(entries[0]!, "PRIORITY")).toBe("4");
  });

  test("a message whose send fails goes to stderr as a <N> line, without its fields", () => {
    const { log, entries, lines } = capture({ sendOk: false });
    log.error(`boom ${HOSTILE}`, { LUO_CLIENT: "vm-1" });
    expect(entries).toHaveLength(1);
    expect(lines).toEqual([`<3>boom ${escapeControl(HOSTILE)}`]);
  });

  test("debug messages are dropped unless verbose, in the journal as on stderr", () => {
    const entries: Uint8Array[] = [];
    createLogger({ journal: (e) => entries.push(e) > 0, write: () => {} }).debug("quiet");
    expect(entries).toHaveLength(0);
  });
});

describe("where luod logs: journald only when stderr is its stream", () => {
  const stderr = () => ({ dev: 2049n, ino: 1234567n });

  test("JOURNAL_STREAM naming stderr's device and inode: journald's socket", () => {
    expect(journalSocketPath({ JOURNAL_STREAM: "2049:1234567" }, stderr)).toBe(JOURNAL_SOCKET);
  });

  test("JOURNAL_STREAM naming another file (stderr redirected by whoever started luod): stderr", () => {
    expect(journalSocketPath({ JOURNAL_STREAM: "2049:7654321" }, stderr)).toBeNull();
    expect(journalSocketPath({ JOURNAL_STREAM: "2050:1234567" }, stderr)).toBeNull();
  });

  test("no JOURNAL_STREAM, a malformed one, or no stderr at all: stderr", () => {
    expect(journalSocketPath({}, stderr)).toBeNull();
    expect(journalSocketPath({ JOURNAL_STREAM: "2049:1234567x" }, stderr)).toBeNull();
    expect(journalSocketPath({ JOURNAL_STREAM: "" }, stderr)).toBeNull();
    expect(journalSocketPath({ JOURNAL_STREAM: "2049:1234567" }, () => { throw new Error("EBADF"); })).toBeNull();
  });

  test("LUOD_JOURNAL_SOCKET replaces journald's socket only together with a matching JOURNAL_STREAM", () => {
    expect(journalSocketPath({ JOURNAL_STREAM: "2049:1234567", LUOD_JOURNAL_SOCKET: "/tmp/j.sock" }, stderr)).toBe("/tmp/j.sock");
    expect(journalSocketPath({ LUOD_JOURNAL_SOCKET: "/tmp/j.sock" }, stderr)).toBeNull();
    expect(journalSocketPath({ JOURNAL_STREAM: "1:2", LUOD_JOURNAL_SOCKET: "/tmp/j.sock" }, stderr)).toBeNull();
  });

  describe("through a real datagram socket", () => {
    let dir = "";
    afterEach(() => rmSync(dir, { recursive: true, force: true }));

    test("with this process's stderr named, an entry arrives as one datagram; named wrongly, no journal", () => {
      dir = mkdtempSync(join(tmpdir(), "luo-journal-"));
      const path = join(dir, "journal.sock");
      const fd = unixDatagramBind(path);
      try {
        const me = fileIdentity(2);
        expect(journalFromEnvironment({ JOURNAL_STREAM: `${me.dev}:${me.ino + 1n}`, LUOD_JOURNAL_SOCKET: path })).toBeNull();
        const sink = journalFromEnvironment({ JOURNAL_STREAM: `${me.dev}:${me.ino}`, LUOD_JOURNAL_SOCKET: path })!;
        const lines: string[] = [];
        createLogger({ journal: sink, write: (l) => lines.push(l) }).notice("hello journal", { LUO_CLIENT: "vm-1" });
        const io = new MessageIo();
        const n = io.receive(fd, []);
        expect(n).toBeGreaterThan(0);
        const e = decodeJournalEntry(io.buffer.slice(0, n));
        expect(field(e, "MESSAGE")).toBe("hello journal");
        expect(field(e, "LUO_CLIENT")).toBe("vm-1");
        expect(lines).toEqual([]);
        // nobody listening any more: the message falls back to stderr
        closeFd(fd);
        rmSync(path);
        createLogger({ journal: sink, write: (l) => lines.push(l) }).warning("journald is gone");
        expect(lines).toEqual(["<4>journald is gone"]);
      } finally {
        try { closeFd(fd); } catch {}
      }
    });
  });
});

describe("milestones and audit records through the dispatcher", () => {
  let dir = "";
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  function setUp(log: Logger) {
    dir = mkdtempSync(join(tmpdir(), "luo-journal-dispatch-"));
    const kernel = new FakeKernel();
    const files = new StateFiles(join(dir, "state"), log);
    const broker = new Broker({ kernel, log, nextKernel: () => null });
    const dispatcher = new Dispatcher({
      broker, loader: new KernelLoader(kernel, files, log), restored: new RestoredSessions(kernel, files, log), log,
      luodStatus: () => ({}), statusExtra: () => ({}),
    });
    const admin = Object.assign(new RecordingPeer({ pid: 4242, uid: 0, gid: 0 }), { roles: { admin: true, client: true } });
    return { broker, dispatcher, admin };
  }
  const audits = (entries: JournalEntry[]) => entries.filter((e) => field(e, "MESSAGE_ID") === MESSAGE_ID.audit);

  test("a KEXEC is audited when its update starts, with the update's number; the update's milestones carry it too", async () => {
    const { log, entries } = capture();
    const { broker, dispatcher, admin } = setUp(log);
    const client = new RecordingPeer({ pid: 777, uid: 1000, gid: 1000 });
    broker.subscribe(client, "vm-1");
    dispatcher.dispatch(admin, { cmd: "KEXEC", dry_run: true, timeout_ms: 5000 } as Request, []);
    await Bun.sleep(0);
    broker.fail(client, "disk full");
    await Bun.sleep(0);
    const [kexec] = audits(entries);
    expect(Object.fromEntries([...kexec!.entries()].map(([k, v]) => [k, v[0]]))).toMatchObject({
      MESSAGE: "audit: KEXEC by uid 0 pid 4242: ok (update 1 started (dry run))", PRIORITY: "5",
      LUO_REQUEST: "KEXEC", LUO_OUTCOME: "ok", LUO_UID: "0", LUO_PID: "4242", LUO_UPDATE: "1",
    });
    const started = entries.find((e) => field(e, "MESSAGE_ID") === MESSAGE_ID.updateStarted)!;
    expect([field(started, "LUO_UPDATE"), field(started, "LUO_UID"), field(started, "LUO_PID")]).toEqual(["1", "0", "4242"]);
    const aborted = entries.find((e) => field(e, "MESSAGE_ID") === MESSAGE_ID.updateAborted)!;
    expect([field(aborted, "PRIORITY"), field(aborted, "LUO_UPDATE"), field(aborted, "LUO_CLIENT"), field(aborted, "LUO_UID")]).toEqual(["4", "1", "vm-1", "1000"]);
    const subscribed = entries.find((e) => field(e, "MESSAGE")?.startsWith("client vm-1 subscribed"))!;
    expect([field(subscribed, "LUO_CLIENT"), field(subscribed, "LUO_UID"), field(subscribed, "LUO_PID")]).toEqual(["vm-1", "1000", "777"]);
  });

  test("a refused request is audited at warning priority with its error code and reason; reads are not audited", () => {
    const { log, entries } = capture();
    const { dispatcher, admin } = setUp(log);
    expect(() => dispatcher.dispatch(admin, { cmd: "EVICT", id: "vm-9" } as Request, [])).toThrow("no client vm-9");
    expect(() => dispatcher.dispatch(admin, { cmd: "DISCARD", id: "vm-8" } as Request, [])).toThrow();
    dispatcher.dispatch(admin, { cmd: "LIST" } as Request, []);
    dispatcher.dispatch(admin, { cmd: "ABORT" } as Request, []);
    const got = audits(entries).map((e) => [field(e, "PRIORITY"), field(e, "LUO_REQUEST"), field(e, "LUO_OUTCOME"), field(e, "LUO_CLIENT"), field(e, "MESSAGE")]);
    expect(got).toEqual([
      ["4", "EVICT", "ENOENT", "vm-9", "audit: EVICT vm-9 by uid 0 pid 4242: ENOENT: no client vm-9 is subscribed"],
      ["4", "DISCARD", "ENOENT", "vm-8", "audit: DISCARD vm-8 by uid 0 pid 4242: ENOENT: no restored session vm-8"],
      ["5", "ABORT", "ok", undefined, "audit: ABORT by uid 0 pid 4242: ok (no update was running)"],
    ]);
  });

  test("audit() names the sender's unit when it has one, and ignores requests that only read", () => {
    const { log, entries } = capture();
    const who = { cred: { uid: 0, pid: 1234 }, unit: "ssh.service" };
    audit(log, "KEXEC", who, { ok: true });
    audit(log, "STATUS", who, { ok: true });
    audit(log, "CHECK", who, { ok: false, code: "EBUSY", reason: "x" });
    expect(entries.map((e) => [field(e, "MESSAGE"), field(e, "LUO_UNIT")])).toEqual([["audit: KEXEC by uid 0 pid 1234 unit ssh.service: ok", "ssh.service"]]);
  });
});

test("every MESSAGE_ID is a distinct 128-bit hex id, and docs/daemon.md's table lists each one", async () => {
  const ids = Object.values(MESSAGE_ID);
  expect(new Set(ids).size).toBe(ids.length);
  for (const id of ids) expect(id).toMatch(/^[0-9a-f]{32}$/);
  const doc = await Bun.file(join(import.meta.dir, "../../docs/daemon.md")).text();
  for (const id of ids) expect(doc).toContain(`| \`${id}\` |`);
});

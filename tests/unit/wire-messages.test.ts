import { describe, expect, test } from "bun:test";
import * as v from "valibot";
import {
  COMMANDS, Request, abortedEvent, claimedReply, errorReply, expectedFds, isEvent, isReply, okReply, parseRequest,
  preservationRequestEvent, progressEvent, rebootingEvent, startPreservationEvent,
} from "../../src/wire/messages";

const SHA = "0123456789abcdef".repeat(4);

/** One valid line per command, with every optional field, and a minimal one. */
const VALID: Record<string, Record<string, unknown>[]> = {
  SUBSCRIBE: [{ cmd: "SUBSCRIBE", id: "vm-42" }, { cmd: "SUBSCRIBE", id: "vm-42", tag: "t1", fds: 0 }],
  PREPARE: [{ cmd: "PREPARE" }, { cmd: "PREPARE", id: "vm-42", tag: 3 }],
  READY: [{ cmd: "READY" }, { cmd: "READY", id: "vm-42", tag: 7 }],
  FAIL: [{ cmd: "FAIL" }, { cmd: "FAIL", reason: "out of memory", tag: "x" }],
  UNSUBSCRIBE: [{ cmd: "UNSUBSCRIBE" }, { cmd: "UNSUBSCRIBE", tag: 0 }],
  CLAIM: [{ cmd: "CLAIM", id: "vm-42" }, { cmd: "CLAIM", id: "vm-42", tag: -3 }],
  FINISHED: [{ cmd: "FINISHED", id: "vm-42" }],
  STATUS: [{ cmd: "STATUS" }, { cmd: "STATUS", tag: "s" }],
  LIST: [{ cmd: "LIST" }],
  LOAD: [
    { cmd: "LOAD", cmdline: "console=ttyS0 liveupdate=on", initrd: false, fds: 1 },
    { cmd: "LOAD", cmdline: "liveupdate=on", initrd: true, force: true, sha256: SHA, fds: 2, tag: 1 },
  ],
  UNLOAD: [{ cmd: "UNLOAD" }],
  CHECK: [
    { cmd: "CHECK" },
    { cmd: "CHECK", kernel: true, cmdline: "liveupdate=on panic=10", fds: 1 },
    { cmd: "CHECK", kernel: true, initrd: true, cmdline: "liveupdate=on", fds: 2 },
  ],
  KEXEC: [{ cmd: "KEXEC" }, { cmd: "KEXEC", timeout_ms: 100, dry_run: true }, { cmd: "KEXEC", timeout_ms: 3_600_000 }],
  ABORT: [{ cmd: "ABORT" }, { cmd: "ABORT", reason: "operator" }],
  DISCARD: [{ cmd: "DISCARD", id: "vm-42" }],
  EVICT: [{ cmd: "EVICT", id: "vm-42" }, { cmd: "EVICT", id: "vm-42", force: true, reason: "hung" }],
};

/** Invalid variants per command: [request, expected code, message fragment]. */
const INVALID: [Record<string, unknown>, string, RegExp][] = [
  [{ cmd: "SUBSCRIBE" }, "EBADMSG", /missing field "id"/],
  [{ cmd: "SUBSCRIBE", id: 42 }, "EBADMSG", /"id" must be string/],
  [{ cmd: "SUBSCRIBE", id: "bad id" }, "EINVAL", /invalid id/],
  [{ cmd: "SUBSCRIBE", id: "x".repeat(49) }, "EINVAL", /invalid id/],
  [{ cmd: "SUBSCRIBE", id: "vm", name: "typo" }, "EBADMSG", /unknown field "name"/],
  [{ cmd: "PREPARE", id: "a b" }, "EINVAL", /invalid id/],
  [{ cmd: "PREPARE", size: 4096 }, "EBADMSG", /unknown field "size"/],
  [{ cmd: "READY", id: "" }, "EINVAL", /invalid id/],
  [{ cmd: "READY", ready: true }, "EBADMSG", /unknown field "ready"/],
  [{ cmd: "FAIL", reason: 5 }, "EBADMSG", /"reason" must be string/],
  [{ cmd: "FAIL", reason: "r".repeat(257) }, "EINVAL", /"reason" must be at most 256/],
  [{ cmd: "UNSUBSCRIBE", id: "vm" }, "EBADMSG", /unknown field "id"/],
  [{ cmd: "CLAIM" }, "EBADMSG", /missing field "id"/],
  [{ cmd: "CLAIM", id: "vm/1" }, "EINVAL", /invalid id/],
  [{ cmd: "FINISHED", id: null }, "EBADMSG", /"id" must be string/],
  [{ cmd: "STATUS", verbose: true }, "EBADMSG", /unknown field "verbose"/],
  [{ cmd: "LIST", all: 1 }, "EBADMSG", /unknown field "all"/],
  [{ cmd: "LOAD", initrd: false, fds: 1 }, "EBADMSG", /missing field "cmdline"/],
  [{ cmd: "LOAD", cmdline: "x", fds: 1 }, "EBADMSG", /missing field "initrd"/],
  [{ cmd: "LOAD", cmdline: "x", initrd: "no", fds: 1 }, "EBADMSG", /"initrd" must be boolean/],
  [{ cmd: "LOAD", cmdline: 1, initrd: false, fds: 1 }, "EBADMSG", /"cmdline" must be string/],
  [{ cmd: "LOAD", cmdline: "x", initrd: false, force: "yes", fds: 1 }, "EBADMSG", /"force" must be boolean/],
  [{ cmd: "LOAD", cmdline: "x", initrd: false, sha256: "abc", fds: 1 }, "EINVAL", /"sha256" must be 64 hex digits/],
  [{ cmd: "LOAD", cmdline: "x", initrd: false, sha256: "g".repeat(64), fds: 1 }, "EINVAL", /"sha256"/],
  [{ cmd: "LOAD", cmdline: "x", initrd: false }, "EBADMSG", /carries 1 fds, but "fds" is 0/],
  [{ cmd: "LOAD", cmdline: "x", initrd: true, fds: 1 }, "EBADMSG", /"initrd":true carries 2 fds/],
  [{ cmd: "LOAD", cmdline: "x", initrd: false, fds: 2 }, "EBADMSG", /carries 1 fds, but "fds" is 2/],
  [{ cmd: "UNLOAD", force: true }, "EBADMSG", /unknown field "force"/],
  [{ cmd: "CHECK", x: 1 }, "EBADMSG", /unknown field "x"/],
  [{ cmd: "CHECK", kernel: true }, "EBADMSG", /"kernel":true, "initrd":false carries 1 fds, but "fds" is 0/],
  [{ cmd: "CHECK", kernel: true, initrd: true, fds: 1 }, "EBADMSG", /carries 2 fds, but "fds" is 1/],
  [{ cmd: "CHECK", initrd: true, fds: 1 }, "EINVAL", /"initrd" and "cmdline" go with "kernel":true/],
  [{ cmd: "CHECK", cmdline: "x" }, "EINVAL", /go with "kernel":true/],
  [{ cmd: "KEXEC", timeout_ms: 99 }, "EINVAL", /"timeout_ms" must be at least 100/],
  [{ cmd: "KEXEC", timeout_ms: 3_600_001 }, "EINVAL", /"timeout_ms" must be at most 3600000/],
  [{ cmd: "KEXEC", timeout_ms: 1000.5 }, "EINVAL", /"timeout_ms" must be an integer/],
  [{ cmd: "KEXEC", timeout_ms: "1000" }, "EBADMSG", /"timeout_ms" must be number/],
  [{ cmd: "KEXEC", dry_run: 1 }, "EBADMSG", /"dry_run" must be boolean/],
  [{ cmd: "KEXEC", timeout: 1000 }, "EBADMSG", /unknown field "timeout"/],
  [{ cmd: "ABORT", reason: ["a"] }, "EBADMSG", /"reason" must be string/],
  [{ cmd: "DISCARD" }, "EBADMSG", /missing field "id"/],
  [{ cmd: "DISCARD", id: "a b" }, "EINVAL", /invalid id/],
  [{ cmd: "EVICT" }, "EBADMSG", /missing field "id"/],
  [{ cmd: "EVICT", id: "vm", force: "yes" }, "EBADMSG", /"force" must be boolean/],
  [{ cmd: "EVICT", id: "vm", reason: "r".repeat(257) }, "EINVAL", /"reason" must be at most 256/],
];

describe("parseRequest", () => {
  test("accepts a valid line for every command of protocol v1", () => {
    expect(new Set(Object.keys(VALID))).toEqual(new Set(COMMANDS));
    for (const [cmd, lines] of Object.entries(VALID)) {
      for (const obj of lines) {
        const r = parseRequest(JSON.stringify(obj));
        if (!r.ok) throw new Error(`${JSON.stringify(obj)}: ${r.code} ${r.message}`);
        expect(r.request.cmd as string).toBe(cmd);
        expect(r.request).toEqual(obj as never);
      }
    }
  });

  test("accepts an already parsed object and a line with its newline (or CRLF)", () => {
    expect(parseRequest({ cmd: "STATUS" })).toEqual({ ok: true, request: { cmd: "STATUS" } });
    expect(parseRequest('{"cmd":"STATUS"}\n').ok).toBe(true);
    expect(parseRequest('{"cmd":"STATUS"}\r\n').ok).toBe(true);
  });

  test("rejects wrong types, unknown fields and bad values with the right code", () => {
    expect(new Set(INVALID.map(([obj]) => obj.cmd))).toEqual(new Set(COMMANDS));
    for (const [obj, code, fragment] of INVALID) {
      const r = parseRequest(JSON.stringify(obj));
      if (r.ok) throw new Error(`accepted ${JSON.stringify(obj)}`);
      expect({ obj, code: r.code }).toEqual({ obj, code });
      expect(r.message).toMatch(fragment);
      expect(r.message).not.toContain("\n");
      expect(r.cmd).toBe(obj.cmd as string);
    }
  });

  test("invalid JSON is EBADMSG with a one-line message", () => {
    for (const line of ["not json", "{", '{"cmd":"STATUS",}', "", "{'cmd':'STATUS'}"]) {
      const r = parseRequest(line);
      expect(r.ok).toBe(false);
      if (r.ok) continue;
      expect(r.code).toBe("EBADMSG");
      expect(r.message).toStartWith("invalid JSON");
      expect(r.message).not.toContain("\n");
    }
  });

  test("a JSON value that is not an object is EBADMSG", () => {
    for (const line of ["[]", "null", "42", '"STATUS"', "true"]) {
      const r = parseRequest(line);
      expect(r.ok ? "ok" : r.code).toBe("EBADMSG");
    }
  });

  test("a missing or unknown cmd is EOPNOTSUPP, a non-string cmd EBADMSG", () => {
    const missing = parseRequest('{"id":"vm-42"}');
    expect(missing).toMatchObject({ ok: false, code: "EOPNOTSUPP", message: 'missing "cmd"' });
    const unknown = parseRequest('{"cmd":"REBOOT"}');
    expect(unknown).toMatchObject({ ok: false, code: "EOPNOTSUPP", cmd: "REBOOT" });
    const lower = parseRequest('{"cmd":"status"}');
    expect(lower).toMatchObject({ ok: false, code: "EOPNOTSUPP" });
    expect(lower.ok ? "" : lower.message).toContain("upper case");
    expect(parseRequest('{"cmd":1}')).toMatchObject({ ok: false, code: "EBADMSG" });
  });

  test("echoes cmd and tag in failures when they are readable", () => {
    expect(parseRequest('{"cmd":"SUBSCRIBE","tag":"abc"}')).toMatchObject({ ok: false, cmd: "SUBSCRIBE", tag: "abc" });
    expect(parseRequest('{"cmd":"NOPE","tag":12}')).toMatchObject({ ok: false, code: "EOPNOTSUPP", cmd: "NOPE", tag: 12 });
    // a tag that is itself invalid is not echoed
    const badTag = parseRequest(JSON.stringify({ cmd: "STATUS", tag: "t".repeat(65) }));
    expect(badTag).toMatchObject({ ok: false, code: "EINVAL" });
    expect(badTag.ok ? 0 : badTag.tag).toBeUndefined();
    expect(parseRequest('{"cmd":"STATUS","tag":1.5}')).toMatchObject({ ok: false, code: "EINVAL" });
    expect(parseRequest('{"cmd":"STATUS","tag":{}}')).toMatchObject({ ok: false, code: "EBADMSG" });
    // an absurdly long cmd is not echoed
    const long = parseRequest(JSON.stringify({ cmd: "X".repeat(100) }));
    expect(long).toMatchObject({ ok: false, code: "EOPNOTSUPP" });
    expect(long).not.toHaveProperty("cmd");
  });

  test("fds must be an integer 0..2 matching the request", () => {
    expect(parseRequest('{"cmd":"STATUS","fds":0}').ok).toBe(true);
    expect(parseRequest('{"cmd":"STATUS","fds":1}')).toMatchObject({ ok: false, code: "EBADMSG" });
    expect(parseRequest('{"cmd":"STATUS","fds":3}')).toMatchObject({ ok: false, code: "EBADMSG" });
    expect(parseRequest('{"cmd":"STATUS","fds":-1}')).toMatchObject({ ok: false, code: "EBADMSG" });
    expect(parseRequest('{"cmd":"STATUS","fds":0.5}')).toMatchObject({ ok: false, code: "EBADMSG" });
    expect(parseRequest('{"cmd":"STATUS","fds":"1"}')).toMatchObject({ ok: false, code: "EBADMSG" });
  });

  test("normalizes sha256 to lower case", () => {
    const r = parseRequest(JSON.stringify({ cmd: "LOAD", cmdline: "x", initrd: false, sha256: SHA.toUpperCase(), fds: 1 }));
    expect(r.ok && r.request.cmd === "LOAD" ? r.request.sha256 : null).toBe(SHA);
  });

  test("the exported Request schema accepts the same requests", () => {
    for (const lines of Object.values(VALID)) for (const obj of lines) expect(v.is(Request, obj)).toBe(true);
    expect(v.is(Request, { cmd: "NOPE" })).toBe(false);
    expect(v.is(Request, { cmd: "STATUS", extra: 1 })).toBe(false);
  });
});

describe("fds", () => {
  test("expectedFds is 1 + initrd for LOAD and 0 for everything else", () => {
    expect(expectedFds({ cmd: "LOAD", cmdline: "x", initrd: false })).toBe(1);
    expect(expectedFds({ cmd: "LOAD", cmdline: "x", initrd: true })).toBe(2);
    expect(expectedFds({ cmd: "CLAIM", id: "vm" })).toBe(0);
    expect(expectedFds({ cmd: "STATUS" })).toBe(0);
  });
});

describe("replies and events", () => {
  test("okReply puts reply and ok first, keeps fields and echoes the tag", () => {
    const r = okReply("SUBSCRIBE", { id: "vm-42" }, "t1");
    expect(JSON.stringify(r)).toBe('{"reply":"SUBSCRIBE","ok":true,"id":"vm-42","tag":"t1"}');
    expect(okReply("UNSUBSCRIBE")).toEqual({ reply: "UNSUBSCRIBE", ok: true });
  });

  test("okReply fields cannot override reply, ok, error or tag", () => {
    expect(okReply("STATUS", { ok: false, reply: "X", error: 1, tag: 9, phase: "idle" }, 3)).toEqual({
      reply: "STATUS", ok: true, phase: "idle", tag: 3,
    });
  });

  test("errorReply has the error object, a null reply without cmd and a one-line message", () => {
    expect(errorReply("CLAIM", "EPERM", "uid 1000 may not claim vm-42", 5)).toEqual({
      reply: "CLAIM", ok: false, error: { code: "EPERM", message: "uid 1000 may not claim vm-42" }, tag: 5,
    });
    const r = errorReply(undefined, "EBADMSG", "line one\nline two");
    expect(r.reply).toBeNull();
    expect(r.error.message).toBe("line one; line two");
    expect("tag" in r).toBe(false);
  });

  test("claimedReply is both the CLAIMED event and the CLAIM reply", () => {
    const c = claimedReply("vm-42", "luod:vm-42/1", 4);
    expect(c).toEqual({ event: "CLAIMED", reply: "CLAIM", ok: true, id: "vm-42", session: "luod:vm-42/1", fds: 1, tag: 4 });
    expect(isEvent(c as unknown as Record<string, unknown>)).toBe(true);
    expect(isReply(c as unknown as Record<string, unknown>)).toBe(true);
  });

  test("event builders write the fields in the order docs/protocol.md shows", () => {
    const line = (o: object) => JSON.stringify(o);
    expect(line(preservationRequestEvent(7, 30000, "2024-11-13T00:00:30.123Z"))).toBe(
      '{"event":"PRESERVATION_REQUEST","update":7,"timeout_ms":30000,"deadline":"2024-11-13T00:00:30.123Z"}');
    expect(line(startPreservationEvent("vm-42", "luod:vm-42/7", 7, false))).toBe(
      '{"event":"START_PRESERVATION","id":"vm-42","session":"luod:vm-42/7","update":7,"fds":1}');
    expect(line(startPreservationEvent("vm-42", "luod:vm-42/5", 7, true))).toBe(
      '{"event":"START_PRESERVATION","id":"vm-42","session":"luod:vm-42/5","update":7,"prepared":true}');
    expect(line(abortedEvent(7, "client vm-7 sent FAIL"))).toBe('{"event":"ABORTED","update":7,"reason":"client vm-7 sent FAIL"}');
    expect(line(progressEvent("preparing", { ready: 0, total: 1, waiting: ["vm-42"], remaining_ms: 9990 }))).toBe(
      '{"event":"PROGRESS","phase":"preparing","ready":0,"total":1,"waiting":["vm-42"],"remaining_ms":9990}');
    expect(line(rebootingEvent(7, { sessions_created_ms: 2 }))).toBe('{"event":"REBOOTING","update":7,"timings":{"sessions_created_ms":2}}');
    expect(line(claimedReply("vm-42", "luod:vm-42/7"))).toBe(
      '{"event":"CLAIMED","reply":"CLAIM","ok":true,"id":"vm-42","session":"luod:vm-42/7","fds":1}');
  });
});

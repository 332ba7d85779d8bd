import { describe, expect, test } from "bun:test";
import { LineFramer, MAX_FDS_PER_MESSAGE, MAX_LINE_BYTES, encodeLine } from "../../src/wire/framing";
import { ProtocolError } from "../../src/wire/errors";

const enc = new TextEncoder();
const bytes = (s: string) => enc.encode(s);

function drain(f: LineFramer): string[] {
  const out: string[] = [];
  for (let l = f.nextLine(); l !== null; l = f.nextLine()) out.push(l);
  return out;
}

describe("LineFramer lines", () => {
  test("limits are 65536 bytes per line and 2 fds per message", () => {
    expect(MAX_LINE_BYTES).toBe(65536);
    expect(MAX_FDS_PER_MESSAGE).toBe(2);
  });

  test("returns nothing until the newline arrives", () => {
    const f = new LineFramer();
    f.push(bytes('{"cmd":'));
    expect(f.nextLine()).toBeNull();
    expect(f.hasPartialLine).toBe(true);
    f.push(bytes('"STATUS"}'));
    expect(f.nextLine()).toBeNull();
    f.push(bytes("\n"));
    expect(f.nextLine()).toBe('{"cmd":"STATUS"}');
    expect(f.nextLine()).toBeNull();
    expect(f.hasPartialLine).toBe(false);
  });

  test("splits coalesced lines from one read and keeps the tail", () => {
    const f = new LineFramer();
    f.push(bytes('{"a":1}\n{"b":2}\n{"c":'));
    expect(drain(f)).toEqual(['{"a":1}', '{"b":2}']);
    expect(f.hasPartialLine).toBe(true);
    expect(f.pendingBytes).toBe(5);
    f.push(bytes("3}\n"));
    expect(drain(f)).toEqual(['{"c":3}']);
  });

  test("one byte at a time gives the same lines", () => {
    const f = new LineFramer();
    const out: string[] = [];
    for (const b of bytes('{"x":"é"}\n\n{"y":2}\n')) {
      f.push(Uint8Array.of(b));
      out.push(...drain(f));
    }
    expect(out).toEqual(['{"x":"é"}', "", '{"y":2}']);
  });

  test("a UTF-8 character split across reads is decoded whole", () => {
    const line = bytes('{"id":"ü€💥"}\n');
    for (let cut = 1; cut < line.length; cut++) {
      const f = new LineFramer();
      f.push(line.subarray(0, cut));
      expect(f.nextLine()).toBeNull();
      f.push(line.subarray(cut));
      expect(f.nextLine()).toBe('{"id":"ü€💥"}');
    }
  });

  test("invalid UTF-8 throws EBADMSG for that line only", () => {
    const f = new LineFramer();
    f.push(Uint8Array.of(0x7b, 0xff, 0x7d, 0x0a, ...bytes('{"ok":1}\n')));
    let err: unknown;
    try {
      f.nextLine();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ProtocolError);
    expect((err as ProtocolError).code).toBe("EBADMSG");
    expect(f.nextLine()).toBe('{"ok":1}');
  });

  test("copies pushed bytes so the caller may reuse its buffer", () => {
    const f = new LineFramer();
    const buf = bytes("abc");
    f.push(buf);
    buf.fill(0x21);
    f.push(bytes("\n"));
    expect(f.nextLine()).toBe("abc");
  });

  test("keeps working across buffer growth and compaction", () => {
    const f = new LineFramer();
    const lines = Array.from({ length: 2000 }, (_, i) => JSON.stringify({ i, pad: "p".repeat(i % 97) }));
    const stream = bytes(lines.map((l) => l + "\n").join(""));
    const out: string[] = [];
    for (let off = 0; off < stream.length; off += 777) {
      f.push(stream.subarray(off, off + 777));
      out.push(...drain(f));
    }
    expect(out).toEqual(lines);
  });
});

describe("LineFramer limit", () => {
  test("a line of exactly the limit (newline included) passes", () => {
    const f = new LineFramer(16);
    f.push(bytes("x".repeat(15) + "\n"));
    expect(f.nextLine()).toBe("x".repeat(15));
    expect(f.overLimit).toBe(false);
  });

  test("a complete line one byte over the limit is detected", () => {
    const f = new LineFramer(16);
    f.push(bytes('{"ok":1}\n' + "x".repeat(16) + "\n"));
    expect(f.nextLine()).toBe('{"ok":1}');
    expect(f.nextLine()).toBeNull();
    expect(f.overLimit).toBe(true);
  });

  test("a partial line that can no longer fit is detected before its newline", () => {
    const f = new LineFramer(16);
    f.push(bytes("x".repeat(15)));
    expect(f.overLimit).toBe(false); // 15 bytes + a newline still fit
    f.push(bytes("x"));
    expect(f.overLimit).toBe(true);
    expect(f.nextLine()).toBeNull();
  });

  test("complete lines before an oversized partial line are still returned", () => {
    const f = new LineFramer(16);
    f.push(bytes("a\nb\n" + "y".repeat(40)));
    expect(f.overLimit).toBe(false);
    expect(drain(f)).toEqual(["a", "b"]);
    expect(f.overLimit).toBe(true);
  });

  test("the default limit is 65536 bytes", () => {
    const f = new LineFramer();
    f.push(new Uint8Array(MAX_LINE_BYTES - 1).fill(0x61));
    expect(f.overLimit).toBe(false);
    f.push(bytes("\n"));
    expect(f.nextLine()?.length).toBe(MAX_LINE_BYTES - 1);
    f.push(new Uint8Array(MAX_LINE_BYTES).fill(0x61));
    expect(f.overLimit).toBe(true);
  });

  test("stops buffering once over the limit", () => {
    const f = new LineFramer(16);
    f.push(bytes("z".repeat(20)));
    expect(f.overLimit).toBe(true);
    const before = f.pendingBytes;
    f.push(bytes("more".repeat(100)));
    expect(f.pendingBytes).toBe(before);
  });
});

describe("LineFramer fd queue", () => {
  test("matches fds to lines by their count in FIFO order", () => {
    const f = new LineFramer();
    // three lines; their fds arrived with their first bytes: [10] for line 1, none, [11, 12] for line 3
    f.push(bytes('{"fds":1}\n{"fds":0}\n{"fds":2}\n'));
    f.pushFds([10]);
    f.pushFds([11, 12]);
    const got = drain(f).map((l) => f.takeFds((JSON.parse(l) as { fds: number }).fds));
    expect(got).toEqual([[10], [], [11, 12]]);
    expect(f.queuedFds).toBe(0);
  });

  test("takeFds returns null and takes nothing when fewer are queued", () => {
    const f = new LineFramer();
    f.pushFds([5]);
    expect(f.takeFds(2)).toBeNull();
    expect(f.queuedFds).toBe(1);
    expect(f.takeFds(0)).toEqual([]);
    expect(f.takeFds(1)).toEqual([5]);
  });

  test("drainFds empties the queue for closing strays", () => {
    const f = new LineFramer();
    f.pushFds([3, 4]);
    f.pushFds([9]);
    expect(f.drainFds()).toEqual([3, 4, 9]);
    expect(f.queuedFds).toBe(0);
    expect(f.drainFds()).toEqual([]);
  });

  test("fds that arrive with a partial line wait for it", () => {
    const f = new LineFramer();
    f.push(bytes('{"cmd":"LOAD","fds":2'));
    f.pushFds([7, 8]);
    expect(f.nextLine()).toBeNull();
    expect(f.hasPartialLine).toBe(true); // the queued fds may still be claimed: not strays
    f.push(bytes("}\n"));
    expect(f.nextLine()).toBe('{"cmd":"LOAD","fds":2}');
    expect(f.takeFds(2)).toEqual([7, 8]);
  });
});

describe("encodeLine", () => {
  test("is JSON plus a newline in UTF-8", () => {
    expect(new TextDecoder().decode(encodeLine({ event: "ABORTED", reason: "é\nx" }))).toBe('{"event":"ABORTED","reason":"é\\nx"}\n');
  });

  test("throws EMSGSIZE over the limit and accepts exactly the limit", () => {
    const pad = (n: number) => ({ p: "x".repeat(n) }); // {"p":"…"}\n is n + 9 bytes
    expect(encodeLine(pad(MAX_LINE_BYTES - 9)).length).toBe(MAX_LINE_BYTES);
    try {
      encodeLine(pad(MAX_LINE_BYTES - 8));
      throw new Error("accepted");
    } catch (e) {
      expect(e).toBeInstanceOf(ProtocolError);
      expect((e as ProtocolError).code).toBe("EMSGSIZE");
    }
  });
});

// What a client writes never reaches luod's log raw: control characters are escaped at the one
// way into it (src/daemon/log.ts, with src/wire/escape.ts), so a FAIL reason cannot end a journal
// record (NUL, newline) and start a forged one with a priority prefix of its own, nor drive the
// operator's terminal (ESC, BEL).
import { describe, expect, test } from "bun:test";
import { escapeControl } from "../../src/wire/escape";
import { createLogger } from "../../src/daemon/log";
import { Broker } from "../../src/daemon/broker";
import { FakeKernel } from "../../src/daemon/fake-kernel";
import { RecordingPeer } from "../support/fake-peer";

// NUL, BEL, LF, CR, ESC, DEL, a C1 control (CSI)
const HOSTILE = "bye\x00<0>forged emergency\x07\n<0>another\r\x1b[2J\x7f\x9b";
const RAW_CONTROL = /[\x00-\x1f\x7f-\x9f]/;

describe("escapeControl", () => {
  test("writes C0 controls, DEL and C1 controls as \\xHH, lower-case", () => {
    expect(escapeControl("a\x00b\x07c\nd\re\x1bf\x7fg\x9bh\x1f")).toBe("a\\x00b\\x07c\\x0ad\\x0de\\x1bf\\x7fg\\x9bh\\x1f");
  });

  test("keeps printable text, backslashes, tabs excepted, and non-ASCII as they are", () => {
    expect(escapeControl("vm-1: é ü 日本 \\x00 <0> \u00a0")).toBe("vm-1: é ü 日本 \\x00 <0> \u00a0");
    expect(escapeControl("a\tb")).toBe("a\\x09b");
  });
});

describe("luod's log under JOURNAL_STREAM (priority prefixes)", () => {
  test("a client's FAIL reason with NUL, BEL, ESC and newlines is one line with one <N> prefix and no raw control byte", async () => {
    const lines: string[] = [];
    const log = createLogger({ prefix: true, verbose: true, write: (l) => lines.push(l) });
    const kernel = new FakeKernel();
    const broker = new Broker({ kernel, log, nextKernel: () => null });
    const client = new RecordingPeer();
    broker.subscribe(client, "vm-a");
    const run = broker.kexec(null, { timeoutMs: 5000, dryRun: true });
    broker.fail(client, HOSTILE);
    expect(await run).toMatchObject({ ok: false, code: "ECANCELED" });

    const aborted = lines.filter((l) => l.includes("sent FAIL"));
    expect(aborted).toEqual([`<4>update 1 aborted: client vm-a sent FAIL: ${escapeControl(HOSTILE)}`]);
    expect(aborted[0]).toContain("bye\\x00<0>forged emergency\\x07\\x0a<0>another\\x0d\\x1b[2J\\x7f\\x9b");
    for (const l of lines) {
      expect(l).not.toMatch(RAW_CONTROL);
      expect(l.match(/^<\d>/)).not.toBeNull();
      // the only "<N>" at a line's start is luod's own
      expect(l.slice(3)).not.toMatch(/^<\d>/);
    }
    // the client itself still gets its reason verbatim (JSON escapes it on the wire)
    expect(client.events("ABORTED")[0]!.msg.reason).toContain(HOSTILE);
  });

  test("without priority prefixes (a terminal) the message is escaped the same way", () => {
    const lines: string[] = [];
    createLogger({ prefix: false, write: (l) => lines.push(l) }).warning(`x ${HOSTILE}`);
    expect(lines).toEqual([`warning: x ${escapeControl(HOSTILE)}`]);
  });
});

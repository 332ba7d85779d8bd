// The one duration grammar (src/duration.ts) is the union of luoctl's and luod's former ones:
// every form either accepted gives the value it gave before, and "min" now works for luod too.
import { describe, expect, test } from "bun:test";
import { parseDurationMs } from "../../src/duration";
import { parseArgs } from "../../src/daemon/config";
import { parseDuration, UsageError } from "../../src/ctl/args";

describe("durations", () => {
  test.each([["10s", 10_000], ["500ms", 500], ["2m", 120_000], ["1m30s", 90_000], ["3", 3000], ["0", 0], ["x", NaN], ["10 s", NaN]])("%p is %p ms", (text, ms) => {
    expect(parseDurationMs(text)).toBe(ms);
  });
});

describe("the union of luoctl's and luod's former grammars", () => {
  // luod's former grammar: numbers with ms|s|m|h, or plain seconds
  test.each([
    ["10s", 10_000], ["500ms", 500], ["2m", 120_000], ["1h", 3_600_000], ["1m30s", 90_000], ["1h2m3s4ms", 3_723_004],
    ["1.5s", 1500], ["0.0004s", 0], ["0.0006s", 1], ["3", 3000], ["2.5", 2500], ["0", 0], ["0s", 0], [" 10s ", 10_000],
  ])("luod's %p is still %p ms", (text, ms) => {
    expect(parseDurationMs(text)).toBe(ms);
  });
  // luoctl's former grammar added "min"
  test.each([["2min", 120_000], ["1min30s", 90_000], ["1h5min", 3_900_000], ["1.5min", 90_000], ["5ms", 5]])("luoctl's %p is still %p ms", (text, ms) => {
    expect(parseDurationMs(text)).toBe(ms);
    expect(parseDuration(text)).toBe(ms);
  });
  test.each(["", " ", "s", "5x", "10 s", "-5s", "+5s", "1s2", "abc", "1e3", "1mi", "1mins", ".5s", "5.s", "1S", "0x10"])("%p is no duration", (text) => {
    expect(parseDurationMs(text)).toBeNaN();
  });
  test("a number too long for a double is Infinity, which both callers refuse", () => {
    expect(parseDurationMs("9".repeat(400))).toBe(Infinity);
    expect(() => parseDuration("9".repeat(400))).toThrow("must be more than 0");
  });
});

describe("the callers keep their own checks and messages", () => {
  test("luoctl: junk, zero", () => {
    expect(() => parseDuration("abc")).toThrow(new UsageError('invalid duration "abc": use e.g. 30s, 2m, 500ms, 1m30s or a number of seconds'));
    expect(() => parseDuration("0s")).toThrow(new UsageError('invalid duration "0s": must be more than 0'));
  });
  test("luod: min is accepted now, junk is refused as before", () => {
    const run = (args: string[]) => {
      const p = parseArgs(args);
      if (p.kind !== "run") throw new Error(p.kind);
      return p.flags.firstRequestTimeoutMs;
    };
    expect(run(["--first-request-timeout", "2min"])).toBe(120_000);
    expect(run(["--first-request-timeout", "0"])).toBe(0);
    expect(() => run(["--first-request-timeout", "abc"])).toThrow('--first-request-timeout: "abc" must be a duration such as 10s, 500ms or 2m (0: never)');
    expect(() => run(["--first-request-timeout", "50ms"])).toThrow('--first-request-timeout: "50ms" must be 0 (never) or from 100ms to 24h');
  });
});

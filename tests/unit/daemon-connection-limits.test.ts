// The per-uid connection cap: its option and its default (issue 14, hole 8).
import { describe, expect, test } from "bun:test";
import { parseArgs, parseConfigText, DEFAULTS } from "../../src/daemon/config";
import { toConfig } from "../../src/daemon/main";
import { perUidDefault } from "../../src/daemon/peers";

describe("max-connections-per-uid", () => {
  test("the default leaves a sixteenth of the table to other uids: 240 of 256; all of a table under 16", () => {
    expect(perUidDefault(256)).toBe(240);
    expect(perUidDefault(512)).toBe(480);
    expect(perUidDefault(64)).toBe(60);
    expect(perUidDefault(8)).toBe(8);
    expect(perUidDefault(1)).toBe(1);
  });

  test("is a flag and a config key, passed on to the daemon; unset means the default", () => {
    const p = parseArgs(["--max-connections-per-uid", "300"]);
    expect(p.kind === "run" && p.flags).toEqual({ maxConnectionsPerUid: 300 });
    expect(parseConfigText("max-connections-per-uid = 12\n", "f")).toEqual({ maxConnectionsPerUid: 12 });
    expect(toConfig({ ...DEFAULTS, maxConnectionsPerUid: 300 }).maxConnectionsPerUid).toBe(300);
    expect(toConfig(DEFAULTS).maxConnectionsPerUid).toBeNull();
  });

  test("a bad value is refused", () => {
    expect(() => parseArgs(["--max-connections-per-uid", "0"])).toThrow("must be at least 1");
    expect(() => parseArgs(["--max-connections-per-uid", "many"])).toThrow("whole number");
  });
});

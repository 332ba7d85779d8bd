// The example /etc/luod.conf shipped by the packages: every key, commented out; uncommented, the
// defaults it shows are the built-in ones and the file passes luod's own parser.
import { describe, expect, test } from "bun:test";
import { parseConfigText } from "../../src/daemon/config-file";
import { DEFAULTS, OPTIONS } from "../../src/daemon/settings";
import { exampleConfig } from "../../src/manual/luod-conf";

const TEXT = exampleConfig("9.9.9");

describe("the example luod.conf", () => {
  test("names every key of luod's settings, each on a commented-out line after its meaning", () => {
    for (const o of OPTIONS) {
      expect(TEXT).toContain(`\n# ${o.help.slice(0, 40)}`);
      expect(TEXT).toMatch(new RegExp(`^#${o.flag} = \\S`, "m"));
    }
  });

  test("as shipped it sets nothing", () => {
    expect(parseConfigText(TEXT, "luod.conf")).toEqual({});
  });

  test("uncommented, it passes luod's parser and every value shown as a default is the built-in default", () => {
    const uncommented = TEXT.replace(/^#(?=[a-z])/gm, "");
    const parsed = parseConfigText(uncommented, "luod.conf") as Record<string, unknown>;
    const examples = new Set(TEXT.split("\n").filter((l) => l.includes("# an example")).map((l) => l.slice(1, l.indexOf(" "))));
    expect(Object.keys(parsed)).toHaveLength(OPTIONS.length);
    for (const o of OPTIONS) {
      if (examples.has(o.flag)) expect([o.flag, DEFAULTS[o.key]]).toEqual([o.flag, null]);
      else expect([o.flag, parsed[o.key]]).toEqual([o.flag, DEFAULTS[o.key]]);
    }
  });
});

import { describe, expect, test } from "bun:test";
import { escapeControl } from "../../src/wire/escape";
import { formatList, formatProgress } from "../../src/ctl/format";

describe("escapeControl", () => {
  test("C0 (NUL, BEL, ESC, CR, LF), DEL and C1 become \\xHH", () => {
    expect(escapeControl("a\u0000b\u0007c\u001b[31md\r\ne\u007ff\u009bg")).toBe("a\\x00b\\x07c\\x1b[31md\\x0d\\x0ae\\x7ff\\x9bg");
  });
  test("U+2028 and U+2029 become \\uHHHH", () => {
    expect(escapeControl("a\u2028b\u2029c")).toBe("a\\u2028b\\u2029c");
  });
  test("anything else comes back unchanged, backslashes and non-ASCII included", () => {
    for (const s of ["", "vm-1", "luod:vm-1/3", "C:\\x00 literally", "héllo wörld ✓ 日本", "tab-free"]) expect(escapeControl(s)).toBe(s);
  });
});

describe("luoctl's human output escapes what luod sends", () => {
  test("ids and units in `luoctl list`, waiting ids and the phase in progress lines", () => {
    const list = formatList({ clients: [{ id: "vm\u001b[2J", state: "sub\u0007scribed", unit: "x\u0000y", since: "nope" }] });
    expect(list).toContain("vm\\x1b[2J");
    expect(list).toContain("sub\\x07scribed");
    expect(list).toContain("x\\x00y");
    expect(list).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/);
    const p = formatProgress({ ready: 0, total: 1, waiting: ["vm-\u001b]0;pwned\u0007"], phase: "x\u009b" });
    expect(p).toBe("ready 0/1, waiting: vm-\\x1b]0;pwned\\x07 [x\\x9b]");
  });
});

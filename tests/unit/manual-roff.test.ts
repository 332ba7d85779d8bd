// Text from the tables reaches roff as text: a leading "." or "'" would be a request, a backslash
// an escape; options keep their \- so they can be searched for and copied.
import { describe, expect, test } from "bun:test";
import { example, literal, macro, optionTag, text } from "../../src/manual/roff";

describe("roff escaping", () => {
  test("a paragraph starting with '.' or an apostrophe is guarded with \\&", () => {
    expect(text(".profile is read")).toBe("\\&.profile is read");
    expect(text("'quoted' first")).toBe("\\&'quoted' first");
    expect(text("ends with a dot.")).toBe("ends with a dot.");
  });

  test("a line break in the text is a space, so no line of it can start a request", () => {
    expect(text("first line\n.second line")).toBe("first line .second line");
  });

  test("backslashes are printed (\\e), not escapes", () => {
    expect(text("C:\\fBnot bold")).toBe("C:\\efBnot bold");
    expect(literal("a\\b")).toBe("a\\eb");
  });

  test("an option's dashes are \\-, a hyphen inside a word stays a hyphen", () => {
    expect(text("use --force or -h on a live-update boot")).toBe("use \\-\\-force or \\-h on a live-update boot");
    expect(text("(--initrd) and x=--y")).toBe("(\\-\\-initrd) and x=\\-\\-y");
    expect(literal("luo-qemu --run-dir")).toBe("luo\\-qemu \\-\\-run\\-dir");
  });

  test("`code` is bold and typed as it is", () => {
    expect(text("run `luoctl discard ID` now")).toBe("run \\fBluoctl discard ID\\fR now");
  });

  test("characters outside ASCII are named escapes", () => {
    expect(text("luoctl — broker … ≥ 261 → é")).toBe("luoctl \\(em broker \\&.\\|.\\|. \\(>= 261 \\(-> \\[u00E9]");
  });

  test("example lines are guarded too, and every hyphen is \\-", () => {
    expect(example([".hidden --x", "'q'"])).toBe(".PP\n.RS 4\n.nf\n\\&.hidden \\-\\-x\n\\&'q'\n.fi\n.RE");
  });

  test("macro arguments are quoted; a quote inside is \\(dq", () => {
    expect(macro("TH", "A", 'say "hi"')).toBe('.TH "A" "say \\(dqhi\\(dq"');
  });

  test("option tags: names bold, the value italic and upper case", () => {
    expect(optionTag("-h, --help")).toBe("\\fB\\-h\\fR, \\fB\\-\\-help\\fR");
    expect(optionTag("--initrd <file>")).toBe("\\fB\\-\\-initrd\\fR \\fIFILE\\fR");
    expect(optionTag("--config FILE")).toBe("\\fB\\-\\-config\\fR \\fIFILE\\fR");
  });
});

// The man pages come from the tables --help is made of: every option a --help prints is in the
// page (per luoctl command, in that command's section), and no text line becomes a roff request.
import { describe, expect, test } from "bun:test";
import { luoctlMain } from "../../src/ctl/main";
import { SPECS, commandName } from "../../src/ctl/commands";
import type { CtlIo } from "../../src/ctl/io";
import { helpText as luodHelp } from "../../src/daemon/config-args";
import { OPTIONS as SETTINGS } from "../../src/daemon/settings";
import { HELP as QEMU_HELP } from "../../src/qemu/main";
import { MACROS } from "../../src/manual/roff";
import { luoQemuPage, luoctlPage, luodConfPage, luodPage } from "../../src/manual/man-pages";
import { helpOptions, roffTag } from "../support/help-options";

const META = { version: "9.9.9", date: "2026-01-02" };
const PAGES = { luoctl: luoctlPage(META), luod: luodPage(META), "luod.conf": luodConfPage(META), "luo-qemu": luoQemuPage(META) };

async function luoctlHelp(args: string[]): Promise<string> {
  const out: string[] = [];
  const io: Partial<CtlIo> = { stdout: (t) => void out.push(t), stderr: () => {}, env: {}, stdoutIsTTY: false };
  expect(await luoctlMain(args, io)).toBe(0);
  return out.join("");
}

/** The part of luoctl(8) about one command: from its .SS to the next section or subsection. */
function commandSection(page: string, name: string): string {
  const start = page.indexOf(`\n.SS \\fB${name}\\fR`);
  expect(start).toBeGreaterThan(0);
  const end = page.slice(start + 1).search(/\n\.S[SH] /);
  return page.slice(start, start + 1 + end);
}

describe("man pages carry every option --help prints", () => {
  test("luoctl --help's options are in luoctl(8)'s OPTIONS", async () => {
    const options = helpOptions(await luoctlHelp(["--help"]));
    expect(options).toContain("--reply-timeout");
    const section = PAGES.luoctl.slice(PAGES.luoctl.indexOf("\n.SH OPTIONS"));
    for (const o of options) expect([o, section.includes(roffTag(o))]).toEqual([o, true]);
  });

  for (const spec of SPECS) {
    const name = commandName(spec);
    test(`luoctl ${name} --help: its options are in its section of luoctl(8), its usage in the SYNOPSIS`, async () => {
      const help = await luoctlHelp([name, "--help"]);
      const own = help.slice(0, help.indexOf("Global options:"));
      const section = commandSection(PAGES.luoctl, name);
      for (const o of helpOptions(own)) expect([o, section.includes(roffTag(o))]).toEqual([o, true]);
      expect(PAGES.luoctl).toContain(`\\fB${name.replace(/-/g, "\\-")}\\fR`);
    });
  }

  test("luod --help's options are in luod(8), and every setting is a key of luod.conf(5)", () => {
    const options = helpOptions(luodHelp("9.9.9"));
    expect(options).toEqual(expect.arrayContaining(["--config", "-V", "--max-connections-per-uid"]));
    for (const o of options) expect([o, PAGES.luod.includes(roffTag(o))]).toEqual([o, true]);
    for (const s of SETTINGS) expect([s.flag, PAGES["luod.conf"].includes(roffTag(s.flag))]).toEqual([s.flag, true]);
  });

  test("luo-qemu --help's options are in luo-qemu(8)", () => {
    const options = helpOptions(QEMU_HELP);
    expect(options).toEqual(expect.arrayContaining(["--memory", "--no-sandbox", "-v"]));
    for (const o of options) expect([o, PAGES["luo-qemu"].includes(roffTag(o))]).toEqual([o, true]);
  });
});

describe("man pages are well-formed roff", () => {
  for (const [name, page] of Object.entries(PAGES)) {
    test(`${name}: every line starting with "." is one of the page macros; none starts with "'"`, () => {
      const lines = page.split("\n");
      const requests = lines.filter((l) => l.startsWith(".")).map((l) => /^\.(\\"|\S+)/.exec(l)![1]!);
      expect(requests.filter((r) => !MACROS.has(r))).toEqual([]);
      expect(lines.filter((l) => l.startsWith("'"))).toEqual([]);
    });

    test(`${name}: the sections a man page has, the version and the date in its header`, () => {
      const sections = [...page.matchAll(/^\.SH (.*)$/gm)].map((m) => m[1]);
      expect(sections).toEqual(expect.arrayContaining(["NAME", "SYNOPSIS", "DESCRIPTION", "FILES", "SEE ALSO", "EXAMPLES"]));
      expect(page).toContain('"2026-01-02" "luo-agent 9.9.9"');
      expect(page).toMatch(/^[\x00-\x7f]*$/); // named escapes, no input encoding needed
    });
  }

  test("luoctl(8) has COMMANDS, OPTIONS, EXIT STATUS and ENVIRONMENT from luoctl's tables", () => {
    const sections = [...PAGES.luoctl.matchAll(/^\.SH (.*)$/gm)].map((m) => m[1]);
    expect(sections).toEqual(["NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "OPTIONS", "EXIT STATUS", "ENVIRONMENT", "FILES", "EXAMPLES", "SEE ALSO"]);
    expect(PAGES.luoctl).toContain(".TP\n\\fB3\\fR\ncannot reach luod");
    expect(PAGES.luoctl).toContain("\\fBLUOD_SOCKET\\fR");
  });
});

// The completions come from the tables --help is made of: every luoctl command, every option (in
// the command's own arm for per-command options), every luod option.
import { describe, expect, test } from "bun:test";
import { GLOBAL_OPTIONS, OPTION_ALIASES, SPECS, commandName } from "../../src/ctl/commands";
import { optionRows } from "../../src/daemon/config-args";
import { bashLuoctl, bashLuod, zshLuoctl, zshLuod } from "../../src/manual/completions";

const BASH = bashLuoctl("9.9.9");
const ZSH = zshLuoctl("9.9.9");
const names = (raw: string) => raw.split(", ").map((alt) => alt.split(" ")[0]!);
/** Option `n` is a word of a bash word list or case pattern in `text`. */
const inBash = (text: string, n: string) => new RegExp(`[ "|]${n}[ "|)]`).test(text);
/** Option `n` has an _arguments spec in `text` (a switch, or one that takes a value). */
const inZsh = (text: string, n: string) => [`'${n}[`, `'*${n}=[`, `'*${n}+[`].some((s) => text.includes(s));

/** The line of a generated `case` arm for a command: `load) …` in bash, `        load) _arguments …` in zsh. */
function arm(script: string, indent: string, cmd: string): string {
  const line = script.split("\n").find((l) => l.startsWith(`${indent}${cmd}) `));
  expect([cmd, line !== undefined]).toEqual([cmd, true]);
  return line!;
}

describe("luoctl's completions", () => {
  test("offer every command and help", () => {
    const commands = [...SPECS.map(commandName), "help"];
    expect(BASH).toContain(`compgen -W "${commands.join(" ")}"`);
    for (const c of commands) expect(ZSH).toContain(`'${c}:`);
  });

  test("offer the global options with every command", () => {
    for (const [raw] of GLOBAL_OPTIONS)
      for (const n of names(raw)) {
        for (const spec of SPECS.filter((s) => s.options.length)) expect([n, inBash(arm(BASH, "      ", commandName(spec)), n)]).toEqual([n, true]);
        expect([n, inZsh(ZSH, n), ZSH.includes("_arguments -C $global")]).toEqual([n, true, true]);
      }
  });

  test("offer each command's own options (and kexec-tools' spellings) in that command's arm", () => {
    for (const spec of SPECS) {
      const cmd = commandName(spec);
      const own = spec.options.flatMap(([raw]) => names(raw));
      const aliases = Object.entries(OPTION_ALIASES).filter(([, to]) => own.includes(`--${to}`)).map(([from]) => `--${from}`);
      for (const n of [...own, ...aliases]) {
        expect([cmd, n, inBash(arm(BASH, "      ", cmd), n)]).toEqual([cmd, n, true]);
        expect([cmd, n, inZsh(arm(ZSH, "        ", cmd), n)]).toEqual([cmd, n, true]);
      }
    }
  });

  test("complete files for --socket and the kernel, and ask luod for the ids of discard and evict", () => {
    expect(BASH).toContain("--socket|--initrd|--ramdisk|--kernel) _luoctl_files; return 0 ;;");
    expect(BASH).toContain("load) ((arg == 0)) && _luoctl_files ;;");
    expect(BASH).toContain('discard) ((arg == 0)) && COMPREPLY=($(compgen -W "$(_luoctl_ids restored)"');
    expect(BASH).toContain('evict) ((arg == 0)) && COMPREPLY=($(compgen -W "$(_luoctl_ids clients)"');
    expect(arm(ZSH, "        ", "discard")).toContain("':id:_luoctl_ids restored'");
    expect(arm(ZSH, "        ", "load")).toContain("':kernel:_files'");
  });
});

describe("luod's completions", () => {
  test("offer every option of luod --help, in bash and zsh", () => {
    const bash = bashLuod("9.9.9");
    const zsh = zshLuod("9.9.9");
    for (const [raw] of optionRows())
      for (const n of names(raw)) {
        expect([n, inBash(bash, n)]).toEqual([n, true]);
        expect([n, inZsh(zsh, n)]).toEqual([n, true]);
      }
  });

  test("complete groups, directories and the kexec modes; --verbose takes no value", () => {
    const bash = bashLuod("9.9.9");
    expect(bash).toContain('--admin-group|--client-group|--socket-group) COMPREPLY=($(compgen -g -- "$cur"))');
    expect(bash).toContain("--state-dir) _luod_files -d");
    expect(bash).toContain('--kexec-mode) COMPREPLY=($(compgen -W "auto direct systemd"');
    expect(bash).not.toContain("--verbose)");
    expect(zshLuod("9.9.9")).toContain("'--verbose[log debug messages]'");
  });
});

// `scripts/build-manual.ts OUTDIR` (npm run manual): the files of the packaging contract, the
// same bytes on every run, man pages that groff and man render without a warning, carrying every
// option the compiled binary's --help prints; completions that bash (and zsh, when installed)
// accept and that complete what they should.
import { VERSION } from "../../src/version";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DIST, REPO, requireBinary, run } from "../support/binary";
import { helpOptions, roffTag } from "../support/help-options";

const CONTRACT = [
  "completions/bash/luoctl",
  "completions/bash/luod",
  "completions/zsh/_luoctl",
  "completions/zsh/_luod",
  "luod.conf",
  "man/man5/luod.conf.5",
  "man/man8/luo-qemu.8",
  "man/man8/luoctl.8",
  "man/man8/luod.8",
];
const PAGES = CONTRACT.filter((p) => p.startsWith("man/"));

let dir: string;
const out = () => join(dir, "a");
const read = (path: string) => readFileSync(join(out(), path), "utf8");

function buildManual(outdir: string, env: Record<string, string> = {}) {
  const r = Bun.spawnSync([process.execPath, "scripts/build-manual.ts", outdir], {
    cwd: REPO,
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  expect([r.exitCode, r.stderr.toString()]).toEqual([0, ""]);
}

function filesUnder(root: string): string[] {
  return readdirSync(root, { recursive: true, encoding: "utf8" })
    .filter((p) => statSync(join(root, p)).isFile())
    .sort();
}

function sh(cmd: string[], env: Record<string, string> = {}) {
  const r = Bun.spawnSync(cmd, { env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...env }, stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

beforeAll(() => {
  requireBinary();
  dir = mkdtempSync(join(tmpdir(), "luo-manual-"));
  buildManual(out());
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("build-manual.ts OUTDIR", () => {
  test("writes exactly the files of the contract, plain text", () => {
    expect(filesUnder(out())).toEqual(CONTRACT);
    for (const p of PAGES) expect(read(p)).toStartWith('.\\"');
  });

  test("writes the same bytes every time; the date is SOURCE_DATE_EPOCH's when set, never the clock's", () => {
    buildManual(join(dir, "b"));
    for (const p of CONTRACT) expect([p, readFileSync(join(dir, "b", p), "utf8") === read(p)]).toEqual([p, true]);
    buildManual(join(dir, "c"), { SOURCE_DATE_EPOCH: "1767225600" });
    expect(readFileSync(join(dir, "c", "man/man8/luod.8"), "utf8")).toContain(`"8" "2026-01-01" "luo-agent ${VERSION}"`);
  });
});

describe("the man pages", () => {
  test("groff renders each without a warning (-ww)", () => {
    if (!Bun.which("groff")) return void console.warn("groff is not installed: the man pages were not rendered with warnings on");
    for (const p of PAGES) expect([p, sh(["groff", "-man", "-Tutf8", "-ww", "-z", join(out(), p)])]).toEqual([p, { code: 0, stdout: "", stderr: "" }]);
  });

  test("man -l renders each without a warning, with the sections a man page has", () => {
    if (!Bun.which("man")) return void console.warn("man is not installed: the man pages were not rendered with man -l");
    for (const p of PAGES) {
      const r = sh(["man", "--warnings=w", "-l", join(out(), p)], { MANPAGER: "cat", MANWIDTH: "100", LANG: "C.UTF-8" });
      expect([p, r.code, r.stderr]).toEqual([p, 0, ""]);
      for (const section of ["NAME", "SYNOPSIS", "DESCRIPTION", "FILES", "SEE ALSO"]) expect([p, r.stdout.includes(`\n${section}\n`)]).toEqual([p, true]);
    }
  });

  test("carry every option that the binary's --help prints (luoctl and each command, luod, luo-qemu)", async () => {
    const cases: [string, string, string[]][] = [
      ["man/man8/luod.8", "luod", ["--help"]],
      ["man/man8/luo-qemu.8", "luo-qemu", ["--help"]],
      ["man/man8/luoctl.8", "luoctl", ["--help"]],
    ];
    const overview = (await run("luoctl", ["--help"])).stdout;
    const commands = [...overview.slice(overview.indexOf("Commands:"), overview.indexOf("Options:")).matchAll(/^ {2}([a-z]+)/gm)].map((m) => m[1]!);
    expect(commands).toContain("evict");
    for (const c of commands) cases.push(["man/man8/luoctl.8", "luoctl", [c, "--help"]]);
    for (const [page, name, args] of cases) {
      const help = await run(name as "luod", args);
      expect(help.code).toBe(0);
      const options = helpOptions(help.stdout);
      expect(options.length).toBeGreaterThan(1);
      for (const o of options) expect([name, ...args, o, read(page).includes(roffTag(o))]).toEqual([name, ...args, o, true]);
    }
  });
});

describe("the completions", () => {
  const bash = (script: string, env: Record<string, string> = {}) => sh(["bash", "--norc", "--noprofile", "-c", script], env);
  /** Runs the luoctl completion on a command line (the cursor at its end); prints COMPREPLY, one per line. */
  const complete = (words: string[], env: Record<string, string> = {}) =>
    bash(
      `source ${join(out(), "completions/bash/luoctl")}; COMP_WORDS=(${words.map((w) => `'${w}'`).join(" ")}); ` +
        `COMP_CWORD=${words.length - 1}; _luoctl; printf '%s\\n' "\${COMPREPLY[@]}"`,
      env,
    );

  test("bash accepts them, and sourcing them sets `complete -F` for luoctl and luod", () => {
    for (const name of ["luoctl", "luod"]) {
      const file = join(out(), "completions/bash", name);
      expect(bash(`bash -n ${file}`)).toEqual({ code: 0, stdout: "", stderr: "" });
      expect(bash(`source ${file}; complete -p ${name}`)).toEqual({ code: 0, stdout: `complete -F _${name} ${name}\n`, stderr: "" });
    }
  });

  test("zsh accepts them (when zsh is installed)", () => {
    if (!Bun.which("zsh")) return void console.warn("zsh is not installed: the zsh completions were not checked with zsh -n");
    for (const name of ["_luoctl", "_luod"]) expect(sh(["zsh", "-n", join(out(), "completions/zsh", name)])).toEqual({ code: 0, stdout: "", stderr: "" });
  });

  test("luoctl: commands, a command's options, files for --socket (also as --socket=)", () => {
    expect(complete(["luoctl", "di"]).stdout).toBe("discard\n");
    expect(complete(["luoctl", "--json", "load", "--ra"]).stdout).toBe("--ramdisk\n");
    expect(complete(["luoctl", "kexec", "--dr"]).stdout).toBe("--dry-run\n");
    const sock = join(dir, "luod.sock");
    writeFileSync(sock, "");
    expect(complete(["luoctl", "--socket", "=", join(dir, "luod.so")]).stdout).toBe(`${sock}\n`);
    expect(complete(["luoctl", "load", join(dir, "luod.so")]).stdout).toBe(`${sock}\n`);
  });

  test("luoctl discard/evict: ids from `luoctl --json status`/`list`, asked at the --socket on the line", () => {
    const bin = join(dir, "bin");
    Bun.spawnSync(["mkdir", "-p", bin]);
    // replies in the shape of docs/protocol.md (STATUS's restored[], LIST's clients[])
    const fake = join(bin, "luoctl");
    writeFileSync(
      fake,
      `#!/bin/sh\necho "$@" >> ${join(dir, "args")}\ncase "$*" in\n` +
        `*status*) echo '{"ok":true,"phase":"idle","restored":[{"id":"vm-1","session":"s","state":"unclaimed","uid":0,"unit":null,"age_s":3},{"id":"vm-2","session":"t","state":"claimed","uid":0,"unit":null,"age_s":3}],"previous_update":null}' ;;\n` +
        `*list*) echo '{"ok":true,"clients":[{"id":"c-1","uid":0,"gid":0,"pid":1,"unit":null,"state":"subscribed","connected":true,"since":"x","session":null}]}' ;;\nesac\n`,
    );
    chmodSync(fake, 0o755);
    const env = { PATH: `${bin}:${process.env.PATH}` };
    expect(complete(["luoctl", "--socket", "/x/luod.sock", "discard", ""], env).stdout).toBe("vm-1\n");
    expect(complete(["luoctl", "evict", ""], env).stdout).toBe("c-1\n");
    expect(readFileSync(join(dir, "args"), "utf8")).toBe("--socket /x/luod.sock --json --reply-timeout 2s status\n--json --reply-timeout 2s list\n");
  });

  test("luoctl discard with no luod to ask: nothing offered, nothing printed", () => {
    const env = { PATH: `${DIST}:${process.env.PATH}` };
    expect(complete(["luoctl", "--socket", join(dir, "absent.sock"), "discard", ""], env)).toEqual({ code: 0, stdout: "\n", stderr: "" });
  });

  test("luod: options, groups for --client-group, the kexec modes", () => {
    const script = (words: string[]) =>
      `source ${join(out(), "completions/bash/luod")}; COMP_WORDS=(${words.map((w) => `'${w}'`).join(" ")}); COMP_CWORD=${words.length - 1}; _luod; printf '%s\\n' "\${COMPREPLY[@]}"`;
    expect(bash(script(["luod", "--kexec-mode", "sy"])).stdout).toBe("systemd\n");
    expect(bash(script(["luod", "--max-connections-p"])).stdout).toBe("--max-connections-per-uid\n");
    expect(bash(script(["luod", "--client-group", "roo"])).stdout).toBe("root\n");
  });

});

// luoctl argument parsing: durations, value protection around cac/mri, usage errors (exit 2),
// help and version (exit 0).
import { describe, expect, test } from "bun:test";
import { luoctlMain } from "../../src/ctl/main";
import { buildCmdline } from "../../src/ctl/cmd-load";
import type { CtlIo } from "../../src/ctl/io";
import { optionValues, parseDuration, parseSha256, protectOptionValues, UsageError } from "../../src/ctl/args";

function capture(overrides: Partial<CtlIo> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const io: Partial<CtlIo> = {
    stdout: (t) => void out.push(t),
    stderr: (t) => void err.push(t),
    stdoutIsTTY: false,
    stderrIsTTY: false,
    env: {},
    readProcCmdline: () => "BOOT_IMAGE=/vmlinuz root=/dev/vda ro\n",
    connect: () => Promise.reject(new Error("no connection expected in this test")),
    onInterrupt: () => () => {},
    ...overrides,
  };
  return { io, out: () => out.join(""), err: () => err.join("") };
}

async function run(args: string[], overrides: Partial<CtlIo> = {}) {
  const c = capture(overrides);
  const code = await luoctlMain(args, c.io);
  return { code, out: c.out(), err: c.err() };
}

describe("parseDuration", () => {
  test("units and plain seconds", () => {
    expect(parseDuration("30s")).toBe(30_000);
    expect(parseDuration("2m")).toBe(120_000);
    expect(parseDuration("500ms")).toBe(500);
    expect(parseDuration("1h")).toBe(3_600_000);
    expect(parseDuration("1m30s")).toBe(90_000);
    expect(parseDuration("1.5s")).toBe(1500);
    expect(parseDuration("45")).toBe(45_000);
    expect(parseDuration(" 10s ")).toBe(10_000);
    expect(parseDuration("2min")).toBe(120_000);
  });
  test("rejects junk, zero and negatives", () => {
    for (const bad of ["", "s", "5x", "10 s", "-5s", "0", "0s", "1s2", "abc", "1e3"]) {
      expect(() => parseDuration(bad)).toThrow(UsageError);
    }
  });
});

describe("value protection", () => {
  test("marks values of value options, leaves the rest", () => {
    const p = protectOptionValues(["load", "0123", "--cmdline", "0123", "--force", "--sha256=00", "--", "--cmdline", "x"], new Set(["cmdline", "sha256"]));
    expect(p).toEqual(["load", "0123", "--cmdline", "\u00010123", "--force", "--sha256=\u000100", "--", "--cmdline", "x"]);
  });
  test("optionValues unmarks, and reports a value-less option", () => {
    expect(optionValues(["\u00011", "\u00012"], "append")).toEqual(["1", "2"]);
    expect(optionValues(undefined, "append")).toEqual([]);
    expect(() => optionValues(["true"], "cmdline")).toThrow("option --cmdline needs a value");
  });
  test("sha256", () => {
    expect(parseSha256("AB".repeat(32))).toBe("ab".repeat(32));
    expect(() => parseSha256("abc")).toThrow(UsageError);
  });
});

describe("buildCmdline", () => {
  const proc = () => "BOOT_IMAGE=/vmlinuz root=/dev/vda ro\n";
  test("explicit, reuse, append", () => {
    expect(buildCmdline({ cmdline: "a b", reuse: false, append: [] }, proc)).toBe("a b");
    expect(buildCmdline({ reuse: true, append: [] }, proc)).toBe("BOOT_IMAGE=/vmlinuz root=/dev/vda ro");
    expect(buildCmdline({ reuse: true, append: ["kho=on", "liveupdate=on"] }, proc)).toBe("BOOT_IMAGE=/vmlinuz root=/dev/vda ro kho=on liveupdate=on");
    expect(buildCmdline({ append: ["liveupdate=on"], reuse: false }, proc)).toBe("liveupdate=on");
    expect(buildCmdline({ cmdline: "", reuse: false, append: [] }, proc)).toBe("");
  });
  test("--append goes before a ' -- ' (what follows it is init's, not the kernel's), as kexec-tools does", () => {
    const withInit = () => "BOOT_IMAGE=/vmlinuz root=/dev/vda ro -- single splash\n";
    expect(buildCmdline({ reuse: true, append: ["liveupdate=on"] }, withInit)).toBe("BOOT_IMAGE=/vmlinuz root=/dev/vda ro liveupdate=on -- single splash");
    expect(buildCmdline({ cmdline: 'a "x -- y" -- b', reuse: false, append: ["c"] }, proc)).toBe('a "x -- y" c -- b'); // a quoted -- is not one
    expect(buildCmdline({ cmdline: "a --", reuse: false, append: ["c", "d"] }, proc)).toBe("a c d --");
  });
  test("mutually exclusive, and one is required", () => {
    expect(() => buildCmdline({ cmdline: "x", reuse: true, append: [] }, proc)).toThrow("exclude each other");
    expect(() => buildCmdline({ reuse: false, append: [] }, proc)).toThrow("needs a command line");
  });
});

describe("usage errors exit 2 with one line on stderr", () => {
  const cases: [string, string[], string][] = [
    ["no command", [], "no command given"],
    ["unknown command", ["frobnicate"], 'unknown command "frobnicate"'],
    ["missing KERNEL", ["load"], "load needs KERNEL"],
    ["missing discard ID", ["discard"], "discard needs ID"],
    ["unknown option", ["status", "--bogus"], 'unknown option "--bogus"'],
    ["extra argument", ["status", "now"], 'unexpected argument "now"'],
    ["--cmdline and --reuse-cmdline", ["load", "/k", "--cmdline", "x", "--reuse-cmdline"], "exclude each other"],
    ["no command line at all", ["load", "/k"], "load needs a command line"],
    ["--cmdline without value", ["load", "/k", "--cmdline"], "option --cmdline needs a value"],
    ["bad --sha256", ["load", "/k", "--cmdline", "x", "--sha256", "123"], "invalid --sha256"],
    ["bad --timeout", ["kexec", "--timeout", "soon"], 'invalid duration "soon"'],
    ["zero --timeout", ["kexec", "--timeout", "0"], "must be more than 0"],
    ["--timeout over luod's limit", ["kexec", "--timeout", "2h"], "must be from 100ms to 1h00m"],
    ["bad id", ["discard", "no/slash"], 'invalid id "no/slash"'],
    ["option of another command", ["status", "--dry-run"], 'unknown option "--dry-run"'],
  ];
  for (const [name, args, msg] of cases) {
    test(name, async () => {
      const r = await run(args);
      expect(r.code).toBe(2);
      expect(r.out).toBe("");
      expect(r.err).toStartWith("luoctl: ");
      expect(r.err).toContain(msg);
      expect(r.err.trimEnd().split("\n").length).toBe(1);
    });
  }
  test("with --json the usage error is also one JSON document on stdout", async () => {
    const r = await run(["frob", "--json"]);
    expect(r.code).toBe(2);
    expect(JSON.parse(r.out)).toEqual({ ok: false, error: { code: "EUSAGE", message: expect.stringContaining("frob") }, json_version: 1 });
  });
  test("the usage hint names the command", async () => {
    expect((await run(["load"])).err).toContain('see "luoctl load --help"');
  });
});

describe("help and version exit 0", () => {
  test("luoctl --help lists every command and the exit codes", async () => {
    for (const args of [["--help"], ["-h"], ["help"]]) {
      const r = await run(args);
      expect(r.code).toBe(0);
      for (const cmd of ["status", "list", "load KERNEL", "unload", "check", "kexec", "abort", "discard ID"]) expect(r.out).toContain(`  ${cmd}`);
      expect(r.out).toContain("Exit status:");
      expect(r.out).toContain("3  cannot reach luod");
      expect(r.out).toContain("LUOD_SOCKET");
    }
  });
  for (const cmd of ["status", "list", "load", "unload", "check", "kexec", "abort", "discard"]) {
    test(`luoctl ${cmd} --help`, async () => {
      const r = await run([cmd, "--help"]);
      expect(r.code).toBe(0);
      expect(r.out).toStartWith(`Usage: luoctl ${cmd}`);
      expect(r.out).toContain("Exit status:");
      expect(r.err).toBe("");
      const viaHelp = await run(["help", cmd]);
      expect(viaHelp.out).toBe(r.out);
    });
  }
  test("load --help documents its options", async () => {
    const r = await run(["load", "--help"]);
    for (const o of ["--initrd FILE", "--cmdline STRING", "--reuse-cmdline", "--append STRING", "--force", "--sha256 HEX"]) expect(r.out).toContain(o);
  });
  test("--version / -v: luoctl's version first, then the luod it reaches (none here)", async () => {
    for (const args of [["--version"], ["-v"], ["status", "--version"]]) {
      const r = await run([...args, "--socket", "/nonexistent/luod.sock"]);
      expect(r.code).toBe(0);
      expect(r.out).toBe("luoctl 0.2.0\nluod not reachable at /nonexistent/luod.sock (ENOENT)\n");
    }
  });
});

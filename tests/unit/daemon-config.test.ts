// luod's settings: the command line, the config file, their precedence, and the errors that
// make luod exit 2 with one line.
import { describe, expect, test, afterAll } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync, chmodSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import {
  parseArgs, parseConfigText, readConfigFile, mergeSettings, resolveGroup, helpText,
  DEFAULTS, DEFAULT_CONFIG_FILE, OPTIONS, ConfigError,
} from "../../src/daemon/config";
import { toConfig } from "../../src/daemon/main";

const dir = mkdtempSync(join(tmpdir(), "luod-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function flags(args: string[]) {
  const p = parseArgs(args);
  if (p.kind !== "run") throw new Error(`not a run: ${p.kind}`);
  return p;
}

describe("the command line", () => {
  test("no arguments: the default config file, which may be absent", () => {
    expect(flags([])).toEqual({ kind: "run", configFile: DEFAULT_CONFIG_FILE, explicitConfig: false, flags: {} });
  });

  test("--key value and --key=value; the last one wins", () => {
    const p = flags(["--socket", "/run/a.sock", "--max-connections=12", "--socket=/run/b.sock", "--verbose"]);
    expect(p.flags).toEqual({ socket: "/run/b.sock", maxConnections: 12, verbose: true });
  });

  test("values that look like numbers or options stay what they are", () => {
    expect(flags(["--socket-mode", "0640", "--client-group", "0100"]).flags).toEqual({ socketMode: 0o640, clientGroup: "0100" });
  });

  test("--config names a file that must exist", () => {
    expect(flags(["--config", "/etc/x.conf"])).toMatchObject({ configFile: "/etc/x.conf", explicitConfig: true });
    expect(() => readConfigFile(join(dir, "missing.conf"), true)).toThrow("cannot read config file");
    expect(readConfigFile(join(dir, "missing.conf"), false)).toEqual({});
  });

  test("--help and --version", () => {
    expect(parseArgs(["--socket", "/x", "--help"]).kind).toBe("help");
    expect(parseArgs(["-v"]).kind).toBe("version");
    const help = helpText("9.9");
    for (const o of OPTIONS) expect(help).toContain(`--${o.flag}`);
  });

  test.each([
    [["--bogus"], "unknown option --bogus"],
    [["stray"], "unexpected argument"],
    [["--socket"], "--socket needs a value"],
    [["--socket", "relative.sock"], "must be an absolute path"],
    [["--socket", "/" + "x".repeat(120)], "at most 107 bytes"],
    [["--max-connections", "0"], "must be at least 1"],
    [["--max-connections", "many"], "must be a whole number"],
    [["--socket-mode", "0999"], "octal mode"],
    [["--client-group", "bad group"], "group name or a numeric gid"],
    [["--first-request-timeout", "soon"], "duration"],
    [["--first-request-timeout", "10ms"], "from 100ms to 24h"],
    [["--verbose=maybe"], "true or false"],
    [["--config"], "--config needs a file"],
  ])("%p is a ConfigError: %s", (args, message) => {
    expect(() => parseArgs(args)).toThrow(ConfigError);
    expect(() => parseArgs(args)).toThrow(message);
  });
});

describe("the config file", () => {
  test("key = value lines, comments, quotes, the same names as the flags", () => {
    const s = parseConfigText(
      ['# luod', "client-group = kvm", 'admin-group = "wheel"   # admins', "", "  max-connections=64", "first-request-timeout = 2s", "verbose = yes", 'socket = "/run/a#b.sock"'].join("\n"),
      "t.conf",
    );
    expect(s).toEqual({ clientGroup: "kvm", adminGroup: "wheel", maxConnections: 64, firstRequestTimeoutMs: 2000, verbose: true, socket: "/run/a#b.sock" });
  });

  test("errors name the file and line", () => {
    expect(() => parseConfigText("verbose = true\nclient-grop = kvm\n", "/etc/luod.conf")).toThrow('/etc/luod.conf:2: unknown key "client-grop"');
    expect(() => parseConfigText("max-connections = -1", "f")).toThrow("f:1: max-connections: \"-1\" must be a whole number");
    expect(() => parseConfigText("verbose = true\nverbose = false", "f")).toThrow('f:2: "verbose" was already set on line 1');
    expect(() => parseConfigText("just words", "f")).toThrow('f:1: expected "key = value"');
    expect(() => parseConfigText('socket = "/run/x', "f")).toThrow("f:1: unterminated quoted value");
  });

  test("flags override the file, the file overrides the defaults", () => {
    const file = parseConfigText("max-connections = 64\nverbose = true", "f");
    const s = mergeSettings(file, flags(["--max-connections", "8"]).flags);
    expect(s).toEqual({ ...DEFAULTS, maxConnections: 8, verbose: true });
  });

  test("a file anyone but root could write is refused (it decides who may KEXEC)", () => {
    const path = join(dir, "loose.conf");
    writeFileSync(path, "verbose = true\n");
    chmodSync(path, 0o666);
    expect(() => readConfigFile(path, true, { enforceOwner: true })).toThrow("must belong to root and not be writable");
    chmodSync(path, 0o644);
    if (process.getuid?.() === 0) expect(readConfigFile(path, true, { enforceOwner: true })).toEqual({ verbose: true });
  });

  test("a FIFO or a directory is refused at once, whoever runs luod; /dev/null reads as an empty file", () => {
    const fifo = join(dir, "fifo.conf");
    expect(spawnSync("mkfifo", [fifo]).status).toBe(0);
    expect(() => readConfigFile(fifo, true, { enforceOwner: false })).toThrow(`config file ${fifo} is not a regular file (a FIFO)`);
    expect(() => readConfigFile(dir, true, { enforceOwner: false })).toThrow("is not a regular file (a directory)");
    expect(readConfigFile("/dev/null", true, { enforceOwner: true })).toEqual({});
  });
});

describe("settings to the daemon's config", () => {
  const gids = (g: string) => ({ kvm: 36, wheel: 10 })[g] ?? Number(g);

  test("defaults: only root, socket 0600 root:root, 256 connections, first request within 10 s", () => {
    expect(toConfig(DEFAULTS, gids)).toMatchObject({
      adminGid: null, clientGid: null, socketGid: null, socketMode: 0o600, maxConnections: 256, firstRequestTimeoutMs: 10_000,
      socket: "/run/luod/liveupdate.sock", stateDir: "/run/luod", device: "/dev/liveupdate",
    });
  });

  test("a client group gives the socket that group and 0660; the admin group is the fallback", () => {
    expect(toConfig({ ...DEFAULTS, clientGroup: "kvm", adminGroup: "wheel" }, gids)).toMatchObject({ clientGid: 36, adminGid: 10, socketGid: 36, socketMode: 0o660 });
    expect(toConfig({ ...DEFAULTS, adminGroup: "wheel" }, gids)).toMatchObject({ socketGid: 10, socketMode: 0o660 });
    expect(toConfig({ ...DEFAULTS, clientGroup: "kvm", socketGroup: "5", socketMode: 0o666 }, gids)).toMatchObject({ socketGid: 5, socketMode: 0o666 });
  });
});

describe("groups", () => {
  const groupFile = join(dir, "group");
  writeFileSync(groupFile, "root:x:0:\nkvm:x:36:alice\nwheel:x:10:\n");

  test("a name from the group file, or a number", () => {
    expect(resolveGroup("kvm", { groupFile, useGetent: false })).toBe(36);
    expect(resolveGroup("4242", { groupFile, useGetent: false })).toBe(4242);
  });

  test("an unknown name is a ConfigError", () => {
    expect(() => resolveGroup("nosuch", { groupFile, useGetent: false })).toThrow('unknown group "nosuch"');
  });
});


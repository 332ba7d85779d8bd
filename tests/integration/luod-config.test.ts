// The config file and the command line of the compiled luod: a bad option or config is one
// line on stderr and exit code 2; a good config file is applied, and flags override it.
import { describe, expect, test, afterAll } from "bun:test";
import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run, startDaemon } from "../support/binary";
import { RawPeer } from "./raw-peer";

const dir = mkdtempSync(join(tmpdir(), "luod-config-it-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function conf(name: string, text: string, mode = 0o644): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  chmodSync(path, mode);
  return path;
}

describe("luod refuses to start with one line and exit code 2", () => {
  test.each([
    ["an unknown flag", ["--bogus"], "unknown option --bogus"],
    ["a bad value", ["--max-connections", "lots"], "--max-connections"],
    ["a missing --config file", ["--config", "/nonexistent/luod.conf"], "cannot read config file /nonexistent/luod.conf"],
    ["an unknown key in the config", ["--config", conf("typo.conf", "client-grop = kvm\n")], "typo.conf:1: unknown key"],
    ["a bad value in the config", ["--config", conf("bad.conf", "# ok\nsocket-mode = 999\n")], "bad.conf:2: socket-mode"],
    ["an unknown group", ["--client-group", "no-such-group-luod"], 'unknown group "no-such-group-luod"'],
  ])("%s", async (_what, args, message) => {
    const r = await run("luod", ["--socket", join(dir, "never.sock"), "--state-dir", join(dir, "never"), ...args]);
    expect(r.code).toBe(2);
    const lines = r.stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toStartWith("luod: ");
    expect(lines[0]).toContain(message);
  });

  test.skipIf(process.getuid?.() !== 0)("a config file others may write", async () => {
    const r = await run("luod", ["--config", conf("loose.conf", "verbose = true\n", 0o666), "--socket", join(dir, "never.sock")]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("must belong to root and not be writable by group or others");
  });
});

test("a config file is applied and flags override it", async () => {
  const path = conf("good.conf", ["# luod test config", "socket-mode = 0640", "socket-group = 64102", "max-connections = 3", "verbose = true"].join("\n"));
  const luod = await startDaemon(["--device", "/nonexistent", "--config", path, "--max-connections", "2"]);
  try {
    const st = statSync(luod.socket);
    expect([st.gid, st.mode & 0o777]).toEqual([64102, 0o640]);
    const status = JSON.parse((await run("luoctl", ["--socket", luod.socket, "status", "--json"])).stdout);
    expect(status.ok).toBe(true);
    await Bun.sleep(50);
    expect(luod.logs()).toMatch(/<7>connection 1 .*closed/); // verbose: debug lines
    // --max-connections 2 beats the file's 3: root gets 2 + its reserve of 8
    const peers = Array.from({ length: 12 }, () => RawPeer.connect(luod.socket));
    await Bun.sleep(200);
    const closed = peers.filter((p) => (p.pump(), p.eof)).length;
    for (const p of peers) p.close();
    expect(closed).toBe(2);
  } finally {
    await luod.stop();
    rmSync(luod.dir, { recursive: true, force: true });
  }
});

test("luod --help lists every option with its default; --version names luod", async () => {
  const help = await run("luod", ["--help"]);
  expect(help.code).toBe(0);
  for (const flag of ["--config", "--socket", "--admin-group", "--client-group", "--socket-group", "--socket-mode", "--max-connections", "--first-request-timeout"]) {
    expect(help.stdout).toContain(flag);
  }
  expect((await run("luod", ["--version"])).stdout).toMatch(/^luod \d/);
  expect((await run("luod", ["-V"])).stdout).toMatch(/^luod \d/); // kexec-tools' and systemctl's spelling
});

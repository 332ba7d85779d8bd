// luoctl (the compiled binary) and the client library facing a luod that breaks the protocol:
// garbage, null, replies of the wrong shape, a 3 MiB line, fds nobody asked for, silence, and
// strings full of control characters. luoctl: exit 3 with one "luod gave an invalid reply" line,
// within its reply timeout; the library: its typed errors, no fd left behind, no crash.
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { LuoClient } from "../../src/client/client";
import { LuoProtocolError, LuoTimeoutError } from "../../src/client/errors";
import { OneShotClient } from "../../src/client/oneshot";
import { countOpenFds } from "../../src/kernel/fd";
import { REPO, requireBinary, run, startDaemon } from "../support/binary";

const FIXTURE = join(REPO, "tests/fixtures/hostile-luod.ts");

interface Hostile {
  path: string;
  proc: Subprocess;
}
const started: { proc: Subprocess; dir: string }[] = [];

afterEach(() => {
  for (const s of started.splice(0)) {
    s.proc.kill("SIGKILL");
    rmSync(s.dir, { recursive: true, force: true });
  }
});

/** A hostile luod (tests/fixtures/hostile-luod.ts) in MODE on a fresh socket. */
async function hostile(mode: string): Promise<Hostile> {
  const dir = mkdtempSync(join(tmpdir(), "hostile-luod-"));
  const path = join(dir, "luod.sock");
  const proc = Bun.spawn([process.execPath, FIXTURE, path, mode], { stdout: "pipe", stderr: "inherit", stdin: "ignore" });
  started.push({ proc, dir });
  const reader = proc.stdout.getReader();
  let out = "";
  while (!out.includes("listening")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`hostile luod (${mode}) exited: ${out}`);
    out += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  return { path, proc };
}

/** Control characters a terminal would act on (the newline that ends a line excepted). */
const RAW_CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/;

describe("luoctl against a luod that breaks the protocol: exit 3, one line", () => {
  const cases: [mode: string, args: string[], detail: RegExp][] = [
    ["garbage", ["status"], /not JSON/],
    ["null", ["status"], /expected a JSON object, got null/],
    ["reply-null-ok", ["status"], /"reply" must be "STATUS", got null/],
    ["reply-null-ok", ["kexec", "--dry-run"], /"reply" must be "KEXEC", got null/],
    ["other-cmd", ["list"], /"reply" must be "LIST", got "UNLOAD"/],
    ["ok-not-boolean", ["check"], /"ok" must be true or false, got "yes"/],
    ["wrong-types", ["status"], /"phase" must be a string, got 7/],
    ["error-not-object", ["unload"], /an error reply needs "error"/],
    ["stray-tag", ["abort"], /"tag" must be absent, got "not-yours"/],
    ["kexec-bare-ok", ["kexec"], /"dry_run" must be true/],
    ["huge", ["status"], /a line over 2097152 bytes/],
    ["huge", ["kexec"], /a line over 2097152 bytes/],
    ["stray-fd", ["status"], /1 fd\(s\) arrived that no line claimed/],
    ["stray-fd", ["kexec"], /fd\(s\) arrived that no line claimed/],
    ["claimed-fd", ["list"], /"fds" must be 0 in an ok reply to LIST, got 1/],
  ];
  for (const [mode, args, detail] of cases) {
    test(`${mode}: luoctl ${args.join(" ")}`, async () => {
      requireBinary();
      const h = await hostile(mode);
      const r = await run("luoctl", ["--socket", h.path, ...args], { timeoutMs: 20_000 });
      expect(r.stdout).toBe("");
      expect(r.stderr).toMatch(/^luoctl: luod gave an invalid reply: [^\n]*\n$/);
      expect(r.stderr).toMatch(detail);
      expect(r.code).toBe(3);
    });
  }

  test("--json: the error document names EBADMSG", async () => {
    requireBinary();
    const h = await hostile("reply-null-ok");
    const r = await run("luoctl", ["--socket", h.path, "--json", "status"]);
    expect(r.code).toBe(3);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: false, error: { code: "EBADMSG" } });
  });
});

describe("luoctl against a luod that does not answer", () => {
  test("a frozen luod (SIGSTOP): `luoctl status` gives up within 15 s with exit 3", async () => {
    const luod = await startDaemon();
    try {
      luod.proc.kill("SIGSTOP");
      const t0 = Date.now();
      const r = await run("luoctl", ["--socket", luod.socket, "status"], { timeoutMs: 40_000 });
      const took = Date.now() - t0;
      expect(r.stderr).toMatch(/^luoctl: luod did not answer STATUS within 15s[^\n]*\n$/);
      expect(r.code).toBe(3);
      expect(took).toBeLessThan(25_000); // the promise is 15 s; generous for a loaded machine
    } finally {
      luod.proc.kill("SIGCONT");
      await luod.stop();
    }
  }, 60_000);

  test("--reply-timeout sets the wait of a quick command", async () => {
    const h = await hostile("silence");
    const t0 = Date.now();
    const r = await run("luoctl", ["--socket", h.path, "--reply-timeout", "500ms", "list"]);
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(r.stderr).toBe("luoctl: luod did not answer LIST within 500ms (ETIMEDOUT)\n");
    expect(r.code).toBe(3);
  });

  test("--reply-timeout sets the wait of kexec too (its --timeout stays the READY deadline)", async () => {
    const h = await hostile("silence");
    const t0 = Date.now();
    const r = await run("luoctl", ["--socket", h.path, "kexec", "--timeout", "1h", "--reply-timeout", "1s"]);
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(r.stderr).toContain("no answer from luod within --reply-timeout");
    expect(r.code).toBe(1);
  });

  test("an invalid --reply-timeout is a usage error", async () => {
    const r = await run("luoctl", ["--reply-timeout", "soon", "status"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('invalid duration "soon"');
  });
});

describe("control characters from luod reach the terminal escaped", () => {
  test("a FAIL reason with NUL, ESC and BEL in `luoctl kexec`, and ids in `luoctl list`", async () => {
    const h = await hostile("evil");
    const k = await run("luoctl", ["--socket", h.path, "kexec"]);
    expect(k.code).toBe(1);
    expect(k.stderr).toContain("ready 0/1, waiting: vm-a\\x00b\\x1b[2Jc\\x07d\\x9be");
    expect(k.stderr).toContain("luoctl: update aborted: client vm-1 sent FAIL: a\\x00b\\x1b[2Jc\\x07d\\x9be (ECANCELED)\n");
    expect(k.stderr).not.toMatch(RAW_CONTROL);
    const l = await run("luoctl", ["--socket", h.path, "list"]);
    expect(l.code).toBe(0);
    expect(l.stdout).toContain("vm-a\\x00b\\x1b[2Jc\\x07d\\x9be  subscribed");
    expect(l.stdout).not.toMatch(RAW_CONTROL);
    const j = await run("luoctl", ["--socket", h.path, "--json", "list"]);
    expect(j.stdout).not.toMatch(RAW_CONTROL);
    expect(JSON.parse(j.stdout).clients[0].id).toBe("vm-a\u0000b\u001b[2Jc\u0007d\u009be");
    const e = await run("luoctl", ["--socket", h.path, "unload"]);
    expect(e.code).toBe(1);
    expect(e.stderr).toBe("luoctl: a\\x00b\\x1b[2Jc\\x07d\\x9be (EPERM)\n");
  });
});

describe("the client library against a hostile luod: typed errors, no fd left behind", () => {
  const modes = ["garbage", "null", "reply-null-ok", "other-cmd", "ok-not-boolean", "wrong-types", "error-not-object", "stray-tag", "huge", "stray-fd", "claimed-fd"];
  for (const mode of modes) {
    test(`${mode}: OneShotClient and LuoClient reject with LuoProtocolError (EBADMSG)`, async () => {
      const h = await hostile(mode);
      const before = countOpenFds();
      const once = await OneShotClient.connect(h.path);
      const e1 = await once.status({ timeoutMs: 10_000 }).catch((e: unknown) => e);
      once.close();
      expect(e1).toBeInstanceOf(LuoProtocolError);
      expect((e1 as LuoProtocolError).code).toBe("EBADMSG");
      expect(countOpenFds()).toBe(before); // the blocking client is synchronous: exact
      const client = await LuoClient.connect(h.path);
      const e2 = await client.status({ timeoutMs: 10_000 }).catch((e: unknown) => e);
      expect(e2).toBeInstanceOf(LuoProtocolError);
      expect((e2 as LuoProtocolError).message).toStartWith("luod gave an invalid reply: ");
      expect(client.closed).toBe(true); // a luod that broke the protocol is not talked to again
      client.close();
    });
  }

  test("silence: both clients reject with LuoTimeoutError (ETIMEDOUT)", async () => {
    const h = await hostile("silence");
    const once = await OneShotClient.connect(h.path);
    const e1 = await once.list({ timeoutMs: 300 }).catch((e: unknown) => e);
    once.close();
    expect(e1).toBeInstanceOf(LuoTimeoutError);
    const client = await LuoClient.connect(h.path, { requestTimeoutMs: 300 });
    const e2 = await client.list().catch((e: unknown) => e);
    client.close();
    expect(e2).toBeInstanceOf(LuoTimeoutError);
    expect((e2 as LuoTimeoutError).code).toBe("ETIMEDOUT");
  });

  test("KEXEC: a bare ok reply is not a completed update", async () => {
    const h = await hostile("kexec-bare-ok");
    const client = await LuoClient.connect(h.path);
    const e = await client.kexec({ dryRun: true }).catch((x: unknown) => x);
    client.close();
    expect(e).toBeInstanceOf(LuoProtocolError);
  });
});

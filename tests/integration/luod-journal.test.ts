// The compiled luod logging through journald's native protocol (docs/daemon.md#logs-and-the-audit-trail),
// on this host without a LUO kernel: the test binds its own datagram socket, names it with
// $LUOD_JOURNAL_SOCKET, and makes luod's stderr a file that $JOURNAL_STREAM names, as systemd
// does for a unit whose stderr is the journal. The entries of a milestone, of a client, and the
// audit records of admin requests, refused ones included (docs/daemon.md#the-audit-trail).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, closeSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { DIST, requireBinary, run } from "../support/binary";
import { decodeJournalEntry, field, type JournalEntry } from "../support/journal-entries";
import { LuoClient } from "../../src/client";
import { MESSAGE_ID } from "../../src/daemon/message-ids";
import { closeFd } from "../../src/kernel/fd";
import { MessageIo } from "../../src/kernel/scm-rights";
import { unixDatagramBind, waitFd } from "../../src/kernel/unix";

const STRANGER_UID = 64110;
const canSetpriv = process.getuid?.() === 0 && spawnSync("setpriv", ["--version"]).status === 0;

interface Luod {
  proc: Subprocess;
  socket: string;
  stderrPath: string;
  /** Every entry received so far. */
  entries: JournalEntry[];
  /** Every entry received until now. */
  received: () => JournalEntry[];
  /** Receives until `pick` finds an entry (10 s at most). */
  waitFor: (what: string, pick: (e: JournalEntry) => boolean) => Promise<JournalEntry>;
  stop: () => Promise<void>;
}

/** luod with stderr in a file; JOURNAL_STREAM names that file, or (`mismatch`) another inode. */
async function startLuod(dir: string, opts: { mismatch?: boolean } = {}): Promise<Luod> {
  requireBinary();
  const socket = join(dir, "luod.sock");
  const journalPath = join(dir, "journal.sock");
  const stderrPath = join(dir, "luod.stderr");
  const jfd = unixDatagramBind(journalPath);
  const errFd = openSync(stderrPath, "w");
  const st = statSync(stderrPath, { bigint: true });
  const proc = Bun.spawn([join(DIST, "luod"), "--socket", socket, "--state-dir", join(dir, "state"),
    "--device", "/nonexistent/liveupdate", "--config", "/dev/null", "--socket-mode", "0666"], {
    stdin: "ignore", stdout: "ignore", stderr: errFd,
    env: { ...process.env, JOURNAL_STREAM: `${st.dev}:${st.ino + (opts.mismatch ? 1n : 0n)}`, LUOD_JOURNAL_SOCKET: journalPath },
  });
  closeSync(errFd);
  const io = new MessageIo({ bufferSize: 256 * 1024 });
  const entries: JournalEntry[] = [];
  const drain = () => {
    for (let n = io.receive(jfd, []); n > 0; n = io.receive(jfd, [])) entries.push(decodeJournalEntry(io.buffer.slice(0, n)));
  };
  const waitFor = async (what: string, pick: (e: JournalEntry) => boolean) => {
    const until = Date.now() + 10_000;
    for (;;) {
      drain();
      const found = entries.find(pick);
      if (found) return found;
      if (Date.now() > until || proc.exitCode !== null)
        throw new Error(`no journal entry ${what}; got: ${entries.map((e) => field(e, "MESSAGE")).join(" | ")}; stderr: ${readFileSync(stderrPath, "utf8")}`);
      waitFd(jfd, "read", 50);
      await Bun.sleep(0);
    }
  };
  return {
    proc, socket, stderrPath, entries, waitFor,
    received: () => (drain(), entries),
    stop: async () => {
      proc.kill("SIGTERM");
      await proc.exited;
      closeFd(jfd);
    },
  };
}

const byId = (id: string) => (e: JournalEntry) => field(e, "MESSAGE_ID") === id;
const audit = (cmd: string) => (e: JournalEntry) => byId(MESSAGE_ID.audit)(e) && field(e, "LUO_REQUEST") === cmd;
const fields = (e: JournalEntry, ...names: string[]) => names.map((n) => field(e, n));

describe("luod under systemd's JOURNAL_STREAM", () => {
  let dir: string;
  let luod: Luod;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "luod-journal-"));
    chmodSync(dir, 0o755); // a peer of another uid reaches the socket (setpriv below)
    luod = await startLuod(dir);
  });
  afterAll(async () => {
    await luod?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("its start is a native entry: MESSAGE_ID, PRIORITY, SYSLOG_IDENTIFIER=luod; nothing on stderr", async () => {
    const started = await luod.waitFor("of luod's start", byId(MESSAGE_ID.started));
    expect(fields(started, "PRIORITY", "SYSLOG_IDENTIFIER")).toEqual(["5", "luod"]);
    expect(field(started, "MESSAGE")).toContain(`listening on ${luod.socket}`);
    expect(readFileSync(luod.stderrPath, "utf8")).toBe("");
  });

  test("a client's subscription carries LUO_CLIENT, LUO_UID and LUO_PID; its eviction a milestone and an audit record", async () => {
    const client = await LuoClient.connect(luod.socket);
    try {
      await client.subscribe("vm-1");
      const subscribed = await luod.waitFor("of vm-1's subscription", (e) => field(e, "MESSAGE")?.startsWith("client vm-1 subscribed") ?? false);
      expect(fields(subscribed, "LUO_CLIENT", "LUO_UID", "LUO_PID")).toEqual(["vm-1", String(process.getuid!()), String(process.pid)]);
      const r = await run("luoctl", ["--socket", luod.socket, "evict", "vm-1"]);
      expect(r.code).toBe(0);
      const evicted = await luod.waitFor("of vm-1's eviction", byId(MESSAGE_ID.clientEvicted));
      expect(fields(evicted, "LUO_CLIENT", "PRIORITY")).toEqual(["vm-1", "5"]);
      const record = await luod.waitFor("auditing EVICT", audit("EVICT"));
      expect(fields(record, "LUO_OUTCOME", "LUO_CLIENT", "LUO_UID", "PRIORITY")).toEqual(["ok", "vm-1", String(process.getuid!()), "5"]);
      expect(field(record, "MESSAGE")).toMatch(/^audit: EVICT vm-1 by uid \d+ pid \d+( unit \S+)?: ok$/);
    } finally {
      client.close();
    }
  });

  test("a LOAD of a file that is no kernel and a KEXEC without LUO are audited as refusals, at warning priority", async () => {
    const notKernel = join(dir, "not-a-kernel");
    writeFileSync(notKernel, "just text, no bzImage header\n".repeat(200));
    expect((await run("luoctl", ["--socket", luod.socket, "load", notKernel, "--cmdline", "quiet"])).code).not.toBe(0);
    const load = await luod.waitFor("auditing LOAD", audit("LOAD"));
    expect(field(load, "PRIORITY")).toBe("4");
    expect(field(load, "LUO_OUTCOME")).toBe("ENOEXEC");
    expect(field(load, "MESSAGE")).toStartWith(`audit: LOAD by uid ${process.getuid!()} pid `);
    expect(field(load, "MESSAGE")).toContain(`: ${field(load, "LUO_OUTCOME")}: `);

    expect((await run("luoctl", ["--socket", luod.socket, "kexec", "--timeout", "2s"])).code).toBe(1);
    const kexec = await luod.waitFor("auditing KEXEC", audit("KEXEC"));
    expect(fields(kexec, "PRIORITY", "LUO_OUTCOME")).toEqual(["4", "ENODEV"]);
  });

  test.skipIf(!canSetpriv)("an ABORT from a uid without the admin role is audited as EPERM with that uid", async () => {
    const r = spawnSync("setpriv", [`--reuid=${STRANGER_UID}`, `--regid=${STRANGER_UID}`, "--clear-groups", join(DIST, "luoctl"), "--socket", luod.socket, "abort"], { encoding: "utf8" });
    expect(r.status).not.toBe(0);
    const record = await luod.waitFor("auditing the stranger's ABORT", audit("ABORT"));
    expect(fields(record, "PRIORITY", "LUO_OUTCOME", "LUO_UID")).toEqual(["4", "EPERM", String(STRANGER_UID)]);
    expect(field(record, "MESSAGE")).toMatch(new RegExp(`^audit: ABORT by uid ${STRANGER_UID} pid \\d+: EPERM: uid ${STRANGER_UID} may not send ABORT`));
  });
});

test("with JOURNAL_STREAM naming another file than its stderr, luod writes <N> lines to stderr and sends nothing", async () => {
  const dir = mkdtempSync(join(tmpdir(), "luod-journal-"));
  const luod = await startLuod(dir, { mismatch: true });
  try {
    const until = Date.now() + 4_000;
    while (!readFileSync(luod.stderrPath, "utf8").includes("listening on")) {
      if (Date.now() > until || luod.proc.exitCode !== null) throw new Error(`luod did not start: ${readFileSync(luod.stderrPath, "utf8")}`);
      await Bun.sleep(20);
    }
    expect(readFileSync(luod.stderrPath, "utf8")).toMatch(/^<5>luod .* listening on /m);
    await Bun.sleep(100);
    expect(luod.received()).toEqual([]);
  } finally {
    await luod.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

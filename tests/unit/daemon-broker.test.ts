// The broker's barrier logic against a fake kernel: fast, on any host. The same behaviours are
// proven against the real kernel in tests/vm/.
import { describe, expect, test, beforeEach } from "bun:test";
import { Broker, type Peer, type KexecOutcome } from "../../src/daemon/broker";
import { createLogger } from "../../src/daemon/log";
import { decodeManifest } from "../../src/daemon/manifest";
import { ProtocolError } from "../../src/wire/errors";
import { FakeKernel } from "../../src/daemon/fake-kernel";
import { RecordingPeer } from "../support/fake-peer";
import { thrown } from "../support/thrown";

const errorOf = (fn: () => unknown) => thrown(fn, ProtocolError);

const quiet = createLogger({ write: () => {} });


let kernel: FakeKernel;
let broker: Broker;
const next = { version: "7.2.13", sha256: "ab".repeat(32), cmdline: "console=ttyS0 liveupdate=on" };

beforeEach(() => {
  kernel = new FakeKernel();
  kernel.loaded = true;
  broker = new Broker({ kernel, log: quiet, nextKernel: () => next });
});

function subscribed(id: string, cred?: Peer["cred"]): RecordingPeer {
  const p = new RecordingPeer(cred);
  broker.subscribe(p, id);
  return p;
}


describe("an update", () => {
  test("sends PRESERVATION_REQUEST then START_PRESERVATION with one session fd to every client", async () => {
    const a = subscribed("vm-a"), b = subscribed("vm-b");
    const run = broker.kexec(null, { timeoutMs: 5000, dryRun: true });
    for (const p of [a, b]) {
      expect(p.sent[0].msg.event).toBe("PRESERVATION_REQUEST");
      expect(p.sent[1].msg.event).toBe("START_PRESERVATION");
      expect(p.sent[1].fds).toHaveLength(1);
      expect(p.sent[1].msg.fds).toBe(1);
      expect(String(p.sent[1].msg.session)).toStartWith(`luod:${p === a ? "vm-a" : "vm-b"}/`);
    }
    broker.ready(a);
    broker.ready(b);
    const outcome = await run;
    expect(outcome.ok).toBe(true);
  });

  test("a dry run preserves the manifest, then aborts and releases every session", async () => {
    const a = subscribed("vm-a");
    const run = broker.kexec(null, { timeoutMs: 5000, dryRun: true });
    broker.ready(a);
    const outcome = await run;
    expect(outcome).toMatchObject({ ok: true, dryRun: true });
    expect(a.events("ABORTED")[0].msg.reason).toBe("dry run complete");
    const manifest = decodeManifest(kernel.blobs.get("luod")!);
    expect(manifest.entries.map((e) => e.id)).toEqual(["vm-a"]);
    expect(manifest.entries[0].uid).toBe(1000);
    expect(kernel.outgoing.size).toBe(0);
    expect(broker.phase).toBe("idle");
  });

  test("with no clients commits at once", async () => {
    const outcome = await broker.kexec(null, { timeoutMs: 5000, dryRun: true });
    expect(outcome.ok).toBe(true);
  });

  test("a FAIL right after the last READY, before the commit runs, aborts: no manifest, no jump", async () => {
    // Both lines can arrive in one read: the commit is queued as a microtask after the last
    // READY, and the FAIL handled in the same task aborts the update before it runs.
    const a = subscribed("vm-a"), b = subscribed("vm-b");
    const run = broker.kexec(null, { timeoutMs: 5000, dryRun: false });
    broker.ready(a);
    broker.ready(b);
    broker.fail(a, "changed my mind");
    const outcome = await run;
    expect(outcome).toMatchObject({ ok: false, code: "ECANCELED" });
    await Promise.resolve(); // let a queued commit run, if one is still queued
    expect(kernel.reboots).toBe(0);
    expect(kernel.blobs.has("luod")).toBe(false);
    expect(broker.phase).toBe("idle");
  });

  test("a client's FAIL aborts the update for everyone with ECANCELED", async () => {
    const a = subscribed("vm-a"), b = subscribed("vm-b");
    const run = broker.kexec(null, { timeoutMs: 5000, dryRun: false });
    broker.ready(a);
    broker.fail(b, "disk full");
    const outcome = (await run) as Extract<KexecOutcome, { ok: false }>;
    expect(outcome.code).toBe("ECANCELED");
    expect(outcome.message).toContain("vm-b sent FAIL: disk full");
    expect(a.events("ABORTED")).toHaveLength(1);
    expect(b.events("ABORTED")).toHaveLength(1);
    expect(kernel.outgoing.size).toBe(0);
    expect(kernel.reboots).toBe(0);
  });

  test("the READY deadline aborts with ETIMEDOUT and names the late clients", async () => {
    const a = subscribed("vm-a");
    subscribed("vm-late");
    const run = broker.kexec(null, { timeoutMs: 50, dryRun: false });
    broker.ready(a);
    const outcome = (await run) as Extract<KexecOutcome, { ok: false }>;
    expect(outcome.code).toBe("ETIMEDOUT");
    expect(outcome.message).toContain("vm-late");
    expect(outcome.message).not.toContain("vm-a,");
  });

  test("a client that disconnects before READY aborts the update, and stays expected (not connected)", async () => {
    const a = subscribed("vm-a"), b = subscribed("vm-b");
    const run = broker.kexec(null, { timeoutMs: 5000, dryRun: false });
    broker.ready(a);
    broker.peerClosed(b);
    const outcome = (await run) as Extract<KexecOutcome, { ok: false }>;
    expect(outcome.code).toBe("ECANCELED");
    expect(outcome.message).toContain("vm-b disconnected before READY");
    // issue 14, hole 14: it was forgotten here; it is expected back now
    expect(broker.list().map((c) => [c.id, c.connected, c.state])).toEqual([["vm-a", true, "subscribed"], ["vm-b", false, "subscribed"]]);
  });

  test("a client that disconnects after READY stays in the update: luod holds its session", async () => {
    const a = subscribed("vm-a"), b = subscribed("vm-b");
    const run = broker.kexec(null, { timeoutMs: 5000, dryRun: true });
    broker.ready(a);
    broker.peerClosed(a);
    expect(kernel.outgoing.size).toBe(2); // still held by luod
    broker.ready(b);
    const outcome = await run;
    expect(outcome.ok).toBe(true);
    expect(decodeManifest(kernel.blobs.get("luod")!).entries.map((e) => e.id)).toEqual(["vm-a", "vm-b"]);
  });

  test("a real KEXEC asks for a background writeback at once, before any client is READY; a dry run does not", async () => {
    const a = subscribed("vm-a");
    const dry = broker.kexec(null, { timeoutMs: 5000, dryRun: true });
    expect(kernel.syncsStarted).toBe(0);
    broker.ready(a);
    await dry;
    const real = broker.kexec(null, { timeoutMs: 5000, dryRun: false });
    expect(kernel.syncsStarted).toBe(1);
    broker.abortByAdmin("test");
    await real;
  });

  test("a failing reboot(KEXEC) aborts, reports the errno and keeps the host running", async () => {
    kernel.rebootError = "EBUSY";
    const a = subscribed("vm-a");
    const run = broker.kexec(null, { timeoutMs: 5000, dryRun: false });
    broker.ready(a);
    const outcome = (await run) as Extract<KexecOutcome, { ok: false }>;
    expect(kernel.reboots).toBe(1);
    expect(outcome.code).toBe("EBUSY");
    expect(outcome.message).toContain("the host keeps running");
    expect(a.events("ABORTED")).toHaveLength(1);
    expect(broker.phase).toBe("idle");
  });

  test("a jump that returns (systemd will stop luod) leaves the update committing until luod stops", async () => {
    kernel.rebootError = null; // the fake kernel's jump returns "jumped"
    const a = subscribed("vm-a");
    const run = broker.kexec(null, { timeoutMs: 5000, dryRun: false });
    broker.ready(a);
    await new Promise((r) => setTimeout(r, 0));
    expect(kernel.reboots).toBe(1);
    expect(broker.phase).toBe("committing");
    expect(a.events("ABORTED")).toHaveLength(0);
    broker.shutdown();
    expect((await run).ok).toBe(false);
  });

  test("the admin connection gets PROGRESS and REBOOTING before the jump", async () => {
    const admin = new RecordingPeer({ pid: 1, uid: 0, gid: 0 });
    const a = subscribed("vm-a");
    const run = broker.kexec(admin, { timeoutMs: 5000, dryRun: false });
    broker.ready(a);
    await run;
    expect(admin.events("PROGRESS").at(-1)!.msg).toMatchObject({ ready: 1, total: 1, waiting: [] });
    expect(admin.events("REBOOTING")).toHaveLength(1);
  });

  test("a second update after an abort creates fresh sessions and succeeds", async () => {
    const a = subscribed("vm-a");
    const first = broker.kexec(null, { timeoutMs: 5000, dryRun: false });
    broker.fail(a, "not now");
    await first;
    const second = broker.kexec(null, { timeoutMs: 5000, dryRun: true });
    broker.ready(a);
    expect((await second).ok).toBe(true);
    const names = a.events("START_PRESERVATION").map((e) => e.msg.session);
    expect(names).toHaveLength(2);
    expect(names[0]).not.toBe(names[1]);
  });
});

describe("a connection lost while luod hands out sessions", () => {
  test("aborts the update and releases every session, also those not sent yet", async () => {
    const a = subscribed("vm-a");
    subscribed("vm-b");
    // a's socket is full: the wire layer closes the connection during the send
    a.send = (msg: object | readonly object[]) => {
      const first = Array.isArray(msg) ? msg[0] : msg;
      if ((first as { event?: string }).event === "PRESERVATION_REQUEST") broker.peerClosed(a);
      return false;
    };
    const outcome = (await broker.kexec(null, { timeoutMs: 5000, dryRun: false })) as Extract<KexecOutcome, { ok: false }>;
    expect(outcome.code).toBe("ECANCELED");
    expect(kernel.outgoing.size).toBe(0);
    expect(broker.phase).toBe("idle");
  });
});

describe("a prepared session (PREPARE)", () => {
  function prepared(id: string): { peer: RecordingPeer; session: string; fd: number } {
    const peer = subscribed(id);
    const { session, fd } = broker.prepare(peer);
    return { peer, session, fd };
  }

  test("is created at PREPARE, once: asking again returns the same session", () => {
    const a = prepared("vm-a");
    expect(a.session).toStartWith("luod:vm-a/");
    expect(kernel.outgoing.get(a.session)).toBe(a.fd);
    expect(broker.prepare(a.peer)).toEqual({ id: "vm-a", session: a.session, fd: a.fd });
    expect(kernel.outgoing.size).toBe(1);
    expect(broker.list()[0]).toMatchObject({ state: "prepared", session: a.session });
    expect(broker.summary().clients).toEqual({ subscribed: 1, disconnected: 0, prepared: 1, ready: 0 });
  });

  test("is not created again by KEXEC: START_PRESERVATION names it, says prepared and carries no fd", async () => {
    const a = prepared("vm-a");
    const b = subscribed("vm-b");
    const run = broker.kexec(null, { timeoutMs: 5000, dryRun: true });
    const start = a.peer.events("START_PRESERVATION")[0]!;
    expect(start.msg).toMatchObject({ session: a.session, prepared: true });
    expect(start.msg.fds).toBeUndefined();
    expect(start.fds).toHaveLength(0);
    expect(b.events("START_PRESERVATION")[0]!.fds).toHaveLength(1); // the others as before
    broker.ready(a.peer);
    broker.ready(b);
    expect(await run).toMatchObject({ ok: true });
    expect(decodeManifest(kernel.blobs.get("luod")!).entries.map((e) => e.session)).toContain(a.session);
  });

  test("outlives a dry run and an abort, so repeated updates do not create it again", async () => {
    const a = prepared("vm-a");
    const dry = broker.kexec(null, { timeoutMs: 5000, dryRun: true });
    broker.ready(a.peer);
    await dry;
    const real = broker.kexec(null, { timeoutMs: 5000, dryRun: false });
    broker.abortByAdmin("operator");
    expect((await real).ok).toBe(false);
    expect([...kernel.outgoing.keys()]).toEqual([a.session]);
    expect(broker.list()[0]).toMatchObject({ state: "prepared", session: a.session });
    expect(a.peer.events("START_PRESERVATION").every((s) => s.msg.session === a.session)).toBe(true);
  });

  test("is released when its client unsubscribes or disconnects while idle (a disconnected one stays expected, without it)", () => {
    const a = prepared("vm-a");
    const b = prepared("vm-b");
    broker.unsubscribe(a.peer);
    broker.peerClosed(b.peer);
    expect(kernel.outgoing.size).toBe(0);
    expect(broker.list()).toMatchObject([{ id: "vm-b", connected: false, state: "subscribed", session: null }]);
  });

  test("a client lost before READY aborts the update and its prepared session is released", async () => {
    const a = prepared("vm-a");
    const run = broker.kexec(null, { timeoutMs: 5000, dryRun: false });
    broker.peerClosed(a.peer);
    expect(await run).toMatchObject({ ok: false, code: "ECANCELED" });
    expect(kernel.outgoing.size).toBe(0);
  });

  test("a client gone after READY keeps its prepared session in the update until it ends", async () => {
    const a = prepared("vm-a");
    const run = broker.kexec(null, { timeoutMs: 5000, dryRun: false });
    broker.ready(a.peer);
    broker.peerClosed(a.peer);
    expect(kernel.outgoing.has(a.session)).toBe(true);
    expect(await run).toMatchObject({ ok: false, code: "EINVAL" }); // the fake reboot() fails
    expect(kernel.outgoing.size).toBe(0);
  });

  test("PREPARE during an update is EBUSY, READY while only prepared is EBUSY, a wrong id is EINVAL", async () => {
    const a = prepared("vm-a");
    expect(errorOf(() => broker.ready(a.peer)).code).toBe("EBUSY");
    expect(errorOf(() => broker.prepare(a.peer, "vm-b")).code).toBe("EINVAL");
    const run = broker.kexec(null, { timeoutMs: 5000, dryRun: true });
    expect(errorOf(() => broker.prepare(a.peer)).code).toBe("EBUSY");
    broker.abortByAdmin("test");
    await run;
  });

  test("PREPARE without /dev/liveupdate is ENODEV; a kernel refusal passes its errno on", () => {
    const a = subscribed("vm-a");
    kernel.device = false;
    expect(errorOf(() => broker.prepare(a)).code).toBe("ENODEV");
    kernel.device = true;
    kernel.createError = "ENOMEM";
    expect(() => broker.prepare(a)).toThrow(/ENOMEM/);
    expect(broker.list()[0]).toMatchObject({ state: "subscribed", session: null });
  });
});

describe("refusals", () => {
  test("an id held by another connection is EEXIST", () => {
    subscribed("vm-a");
    expect(errorOf(() => subscribed("vm-a")).code).toBe("EEXIST");
  });

  test("subscribing during an update is EBUSY", async () => {
    subscribed("vm-a");
    const run = broker.kexec(null, { timeoutMs: 5000, dryRun: false });
    expect(errorOf(() => subscribed("vm-b")).code).toBe("EBUSY");
    broker.abortByAdmin("test");
    expect((await run).ok).toBe(false);
  });

  test("READY without an update is EBUSY; READY without SUBSCRIBE is ENOENT", () => {
    const a = subscribed("vm-a");
    expect(errorOf(() => broker.ready(a)).code).toBe("EBUSY");
    expect(errorOf(() => broker.ready(new RecordingPeer())).code).toBe("ENOENT");
  });

  test("KEXEC without a kernel loaded by luod is EINVAL; without /dev/liveupdate ENODEV", async () => {
    const none = new Broker({ kernel, log: quiet, nextKernel: () => null });
    await expect(none.kexec(null, { timeoutMs: 100, dryRun: false })).rejects.toMatchObject({ code: "EINVAL" });
    kernel.device = false;
    await expect(broker.kexec(null, { timeoutMs: 100, dryRun: true })).rejects.toMatchObject({ code: "ENODEV" });
  });

  test("a session that cannot be created aborts with the kernel's errno", async () => {
    subscribed("vm-a");
    kernel.createError = "ENOMEM";
    const outcome = (await broker.kexec(null, { timeoutMs: 5000, dryRun: false })) as Extract<KexecOutcome, { ok: false }>;
    expect(outcome.code).toBe("ENOMEM");
  });

  test("ABORT while idle reports that nothing was running", () => {
    expect(broker.abortByAdmin(undefined)).toBe(false);
  });
});

describe("KEXEC reloads the loaded kernel first", () => {
  test("before any client is paused: a refused reload ends the KEXEC and no client got START_PRESERVATION", async () => {
    const reloads: string[] = [];
    broker = new Broker({
      kernel, log: quiet, nextKernel: () => next,
      reloadKernel: async () => {
        reloads.push("reload");
        throw new ProtocolError("ENOEXEC", "the kernel image changed on disk after `luoctl load` verified it: unloaded; load it again");
      },
    });
    const a = subscribed("vm-a");
    const err = await broker.kexec(null, { timeoutMs: 5000, dryRun: false }).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(ProtocolError);
    expect((err as ProtocolError).code).toBe("ENOEXEC");
    expect(reloads).toEqual(["reload"]);
    expect(a.sent).toEqual([]);
    expect(broker.phase).toBe("idle");
  });

  test("a second KEXEC while the first reloads is refused with EBUSY; a dry run does not reload", async () => {
    let release!: () => void;
    let reloads = 0;
    broker = new Broker({
      kernel, log: quiet, nextKernel: () => next,
      reloadKernel: () => { reloads++; return new Promise<void>((r) => (release = r)); },
    });
    const first = broker.kexec(null, { timeoutMs: 5000, dryRun: false });
    const second = await broker.kexec(null, { timeoutMs: 5000, dryRun: false }).then(() => null, (e: unknown) => e);
    expect((second as ProtocolError).code).toBe("EBUSY");
    release();
    await first;
    expect(reloads).toBe(1);
    await broker.kexec(null, { timeoutMs: 5000, dryRun: true });
    expect(reloads).toBe(1);
  });
});

describe("KEXEC: what happens while the loaded kernel is re-verified", () => {
  function slowReload() {
    const calls: { release: () => void } = { release: () => {} };
    let loads = 0;
    const reloadKernel = (stillWanted: () => void) =>
      new Promise<void>((resolve, reject) => {
        calls.release = () => {
          try {
            stillWanted(); // as loader.reload: just before kexec_file_load
            loads++;
            resolve();
          } catch (e) {
            reject(e);
          }
        };
      });
    return { calls, reloadKernel, loads: () => loads };
  }

  test("a client that disconnects meanwhile is not left behind silently: ENOTCONN naming it, nobody paused, nothing reloaded", async () => {
    const r = slowReload();
    broker = new Broker({ kernel, log: quiet, nextKernel: () => next, reloadKernel: r.reloadKernel });
    const a = subscribed("vm-a"), b = subscribed("vm-b");
    const run = broker.kexec(null, { timeoutMs: 5000, dryRun: false }).then(() => null, (e: unknown) => e);
    broker.peerClosed(b);
    r.calls.release();
    const err = (await run) as ProtocolError;
    expect(err).toBeInstanceOf(ProtocolError);
    expect(err.code).toBe("ENOTCONN");
    expect(err.message).toContain("vm-b");
    expect(r.loads()).toBe(0);
    expect(a.sent).toEqual([]);
    expect(broker.phase).toBe("idle");
  });

  test("an ABORT meanwhile cancels it: ABORT says it aborted something, KEXEC fails ECANCELED, nobody paused", async () => {
    const r = slowReload();
    broker = new Broker({ kernel, log: quiet, nextKernel: () => next, reloadKernel: r.reloadKernel });
    const a = subscribed("vm-a");
    const run = broker.kexec(null, { timeoutMs: 5000, dryRun: false }).then(() => null, (e: unknown) => e);
    expect(broker.abortByAdmin("wrong window")).toBe(true);
    r.calls.release();
    const err = (await run) as ProtocolError;
    expect(err.code).toBe("ECANCELED");
    expect(err.message).toContain("wrong window");
    expect(r.loads()).toBe(0);
    expect(a.sent).toEqual([]);
    // the cancellation is not kept for the next KEXEC
    broker = new Broker({ kernel, log: quiet, nextKernel: () => next, reloadKernel: async () => {} });
    expect(broker.abortByAdmin(undefined)).toBe(false);
  });
});

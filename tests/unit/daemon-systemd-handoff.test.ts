// src/daemon/systemd-handoff.ts (with fd-store.ts and kexec-mode.ts) against a fake kernel and a
// fake service manager: the fd store protocol (FDSTORE/FDSTOREREMOVE/BARRIER), the jump request,
// carried sessions after a restart, and the sessions systemd hands back after a kexec. The real
// thing runs in tests/vm/systemd-*.test.ts.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Broker } from "../../src/daemon/broker";
import { createLogger } from "../../src/daemon/log";
import { decodeManifest, encodeManifest, MANIFEST_FORMAT, MANIFEST_VERSION } from "../../src/daemon/manifest";
import { RestoredSessions } from "../../src/daemon/restored";
import { StateFiles } from "../../src/daemon/state-files";
import { SystemdHandoff } from "../../src/daemon/systemd-handoff";
import { fdNameOf, sessionOfFdName } from "../../src/daemon/fd-store";
import { resolveKexecMode, parseSystemdVersion, type Environment } from "../../src/daemon/kexec-mode";
import type { SystemdOps } from "../../src/daemon/service-manager";
import { closeFd, dupFd } from "../../src/kernel/fd";
import { memfdCreate } from "../../src/kernel/memfd";
import { FakeKernel } from "../../src/daemon/fake-kernel";
import { RecordingPeer } from "../support/fake-peer";

const lines: string[] = [];
const log = createLogger({ write: (l) => lines.push(l), prefix: false });
const SYSTEMD: Environment = { notifySocket: true, fdStoreMax: 64, version: 262, unit: "luod.service", preserve: "yes" };
const next = { version: "7.2.13", sha256: "ab".repeat(32), cmdline: "console=ttyS0 liveupdate=on" };

let pids = 2000;
const rootPeer = () => new RecordingPeer({ pid: pids++, uid: 0, gid: 0 });

/** A service manager that records what luod tells it. */
class FakeManager implements SystemdOps {
  messages: { state: string; fds: number }[] = [];
  commands: string[][] = [];
  listen: { fd: number; name: string }[] = [];
  names = new Map<number, string>();
  blobs = new Map<string, Uint8Array>();
  kexecExit = 0;
  jobs = "";
  env = {};
  listenFds() { return this.listen; }
  notify(state: string, fds: readonly number[] = []) {
    this.messages.push({ state, fds: fds.length });
  }
  barrier() { this.messages.push({ state: "BARRIER=1", fds: 1 }); }
  run(argv: string[]) {
    this.commands.push(argv);
    if (argv[1] === "kexec") return { code: this.kexecExit, stdout: "", stderr: this.kexecExit ? "Failed to kexec: Access denied" : "" };
    if (argv[1] === "list-jobs") return { code: 0, stdout: this.jobs, stderr: "" };
    return { code: 1, stdout: "", stderr: "" };
  }
  sessionName(fd: number) {
    const n = this.names.get(fd);
    if (n === undefined) throw new Error("not a session");
    return n;
  }
  readBlob(_fd: number, _token: bigint, name: string) { return this.blobs.get(name)!; }
  close(fd: number) { closeFd(fd); }
  exits: number[] = [];
  exit(code: number) { this.exits.push(code); }
  stores() { return this.messages.filter((m) => m.state.startsWith("FDSTORE=1")).map((m) => /FDNAME=(.*)/.exec(m.state)![1]); }
  removes() { return this.messages.filter((m) => m.state.startsWith("FDSTOREREMOVE=1")).map((m) => /FDNAME=(.*)/.exec(m.state)![1]); }
  /** An fd as systemd would pass it in $LISTEN_FDS. */
  give(session: string) {
    const fd = memfdCreate(`fake:${session}`);
    this.listen.push({ fd, name: fdNameOf(session) });
    this.names.set(fd, session);
    return fd;
  }
}

let dir: string;
let mgr: FakeManager;
let kernel: FakeKernel;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "luod-systemd-"));
  mgr = new FakeManager();
  kernel = new FakeKernel();
  kernel.loaded = true;
  lines.length = 0;
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** luod's wiring of main.ts, minus the socket. */
function daemon(env: Environment = SYSTEMD) {
  const sd = new SystemdHandoff({ requested: "auto", stateDir: dir, log, ops: mgr, environment: env });
  const k = sd.wrap(kernel);
  const files = new StateFiles(dir);
  const restored = new RestoredSessions(k, files, log);
  let unloaded = 0;
  const loader = { loaded: () => (kernel.loaded ? { ...next, size: 1, loadedAt: "" } : null), unload: () => { unloaded++; kernel.loaded = false; } };
  const broker = new Broker({
    kernel: k, log, nextKernel: () => loader.loaded(), nextAttempt: (() => { let n = 0; return () => ++n; })(),
    onReady: (id) => sd.clientReady(id), onAbort: (d) => sd.aborted(d),
  });
  return { sd, k, restored, broker, loader, unloads: () => unloaded, start: (boot: { kind: string; restore_error?: string } = { kind: "cold boot" }) => sd.start({ broker, restored, loader, boot }) };
}

/** A started daemon (cold boot, systemd mode) with one subscribed root client per id. */
function startedWith(...ids: string[]) {
  const d = daemon();
  d.start();
  const peers = ids.map((id) => {
    const p = rootPeer();
    d.broker.subscribe(p, id);
    return p;
  });
  return { d, peers };
}

const tick = () => new Promise((r) => setTimeout(r, 0));

describe("FDNAME", () => {
  test("has no ':' and maps back to the session name", () => {
    for (const s of ["luod", "luod:vm-42/1", "luod:a:b/z", "luod:a.b@c/zz"]) {
      expect(fdNameOf(s)).not.toContain(":");
      expect(sessionOfFdName(fdNameOf(s))).toBe(s);
    }
    expect(fdNameOf("luod:vm-42/1")).toBe("luod%3Avm-42/1");
  });
  test("names luod did not give are not luod's", () => {
    for (const n of ["stored", "systemd", "luod%3A/1", "luod-vm-42", "varlink"]) expect(sessionOfFdName(n)).toBeNull();
  });
});

describe("the kexec mode", () => {
  test("auto is systemd only with systemd >= 261 and a preserved fd store", () => {
    expect(resolveKexecMode("auto", SYSTEMD).mode).toBe("systemd");
    expect(resolveKexecMode("auto", { ...SYSTEMD, notifySocket: false }).mode).toBe("direct");
    expect(resolveKexecMode("auto", { ...SYSTEMD, fdStoreMax: 0 }).mode).toBe("direct");
    expect(resolveKexecMode("auto", { ...SYSTEMD, version: 260 }).why).toContain("needs 261");
    expect(resolveKexecMode("auto", { ...SYSTEMD, preserve: "restart" }).mode).toBe("direct");
    expect(resolveKexecMode("direct", SYSTEMD).mode).toBe("direct");
  });
  test("systemd mode that cannot work is an error at start", () => {
    expect(() => resolveKexecMode("systemd", { ...SYSTEMD, fdStoreMax: 0 })).toThrow(/FileDescriptorStoreMax/);
  });
  test("versions", () => {
    expect(parseSystemdVersion("262.1-1")).toBe(262);
    expect(parseSystemdVersion("systemd 261 (261.3-2)")).toBe(261);
    expect(parseSystemdVersion("v262-rc1")).toBe(262);
    expect(parseSystemdVersion("")).toBeNull();
  });
  test("direct mode without $LISTEN_FDS leaves the kernel port alone", () => {
    const sd = new SystemdHandoff({ requested: "auto", stateDir: dir, log, ops: mgr, environment: { ...SYSTEMD, notifySocket: false } });
    expect(sd.wrap(kernel)).toBe(kernel);
  });
});

describe("systemd mode, before the jump", () => {
  test("a READY client's session goes to the fd store; the commit adds the manifest and asks systemd to kexec", async () => {
    const { d, peers: [a, b] } = startedWith("vm-a", "vm-b");
    d.broker.kexec(null, { timeoutMs: 5000, dryRun: false });
    d.broker.ready(a);
    await tick();
    expect(mgr.stores()).toEqual(["luod%3Avm-a/1"]);
    d.broker.ready(b);
    await tick();
    await tick();
    expect(mgr.stores()).toEqual(["luod%3Avm-a/1", "luod%3Avm-b/1", "luod"]);
    expect(mgr.messages.every((m) => !m.state.startsWith("FDSTORE=1") || /FDPOLL=0/.test(m.state))).toBe(true);
    expect(mgr.commands.at(-1)).toEqual(["systemctl", "kexec", "--no-wall", "--no-ask-password"]);
    expect(d.sd.jumpInProgress).toBe(true);
    expect(d.broker.phase).toBe("committing");
    // SIGTERM from the shutdown: main.ts must not abort the update now, and luod exits by itself
    expect(d.sd.stop()).toBe(true);
    expect(mgr.removes()).toEqual([]);
    await tick();
    expect(mgr.exits).toEqual([0]);
  });

  test("an aborted update takes its sessions out of the fd store and unloads the kernel", async () => {
    const { d, peers: [a, b] } = startedWith("vm-a", "vm-b");
    const run = d.broker.kexec(null, { timeoutMs: 5000, dryRun: false });
    d.broker.ready(a);
    await tick();
    d.broker.fail(b, "no");
    const o = await run;
    expect(o.ok).toBe(false);
    expect(mgr.removes()).toEqual(["luod%3Avm-a/1"]);
    expect(d.unloads()).toBe(1);
  });

  test("an aborted update takes a PREPAREd session out of the fd store too, and keeps it open for the next update", async () => {
    const { d, peers: [a, b] } = startedWith("vm-a", "vm-b");
    const { session } = d.broker.prepare(a);
    const run = d.broker.kexec(null, { timeoutMs: 5000, dryRun: false });
    d.broker.ready(a);
    await tick();
    expect(mgr.stores()).toEqual([fdNameOf(session)]);
    d.broker.fail(b, "no");
    expect((await run).ok).toBe(false);
    expect(mgr.removes()).toEqual([fdNameOf(session)]);
    expect(kernel.outgoing.has(session)).toBe(true);
    // the next update (after `luoctl load` again) stages it again when its client is READY again
    kernel.loaded = true;
    const again = d.broker.kexec(null, { timeoutMs: 5000, dryRun: false });
    d.broker.ready(a);
    await tick();
    expect(mgr.stores()).toEqual([fdNameOf(session), fdNameOf(session)]);
    d.broker.abortByAdmin("test");
    await again;
  });

  test("a READY and a FAIL handled in one batch stage nothing: the aborted update's session stays out of the fd store", async () => {
    const { d, peers: [a, b] } = startedWith("vm-a", "vm-b");
    const { session } = d.broker.prepare(a);
    const run = d.broker.kexec(null, { timeoutMs: 5000, dryRun: false });
    d.broker.ready(a); // the staging is queued…
    d.broker.fail(b, "no"); // …and the update aborted before it runs
    expect((await run).ok).toBe(false);
    await tick();
    expect(mgr.stores()).toEqual([]);
    expect(kernel.outgoing.has(session)).toBe(true); // still PREPAREd, for the next update
  });

  test("a failing `systemctl kexec` aborts the update, empties the store, unloads the kernel", async () => {
    mgr.kexecExit = 1;
    const { d, peers: [a] } = startedWith("vm-a");
    const run = d.broker.kexec(null, { timeoutMs: 5000, dryRun: false });
    d.broker.ready(a);
    const o = await run;
    expect(o.ok).toBe(false);
    if (!o.ok) expect(o.message).toContain("systemctl kexec failed: Failed to kexec: Access denied");
    expect(new Set(mgr.removes())).toEqual(new Set(["luod%3Avm-a/1", "luod"]));
    expect(d.unloads()).toBe(1);
    expect(d.sd.jumpInProgress).toBe(false);
  });

  test("a dry run stages nothing and keeps the kernel", async () => {
    const { d, peers: [a] } = startedWith("vm-a");
    const run = d.broker.kexec(null, { timeoutMs: 5000, dryRun: true });
    d.broker.ready(a);
    expect((await run).ok).toBe(true);
    expect(mgr.stores()).toEqual([]);
    expect(d.unloads()).toBe(0);
  });
});

describe("luod restarted before the jump", () => {
  async function killedAfterReady() {
    const { d, peers: [a] } = startedWith("vm-a", "vm-b");
    d.broker.kexec(null, { timeoutMs: 5000, dryRun: false });
    const fd = kernel.outgoing.get("luod:vm-a/1")!;
    d.broker.ready(a);
    await tick();
    // luod dies here, vm-b not READY yet: the store keeps a copy of vm-a's session only
    expect(mgr.stores()).toEqual(["luod%3Avm-a/1"]);
    kernel.outgoing.clear();
    mgr.listen = [{ fd: dupFd(fd), name: "luod%3Avm-a/1" }];
    mgr.names.set(mgr.listen[0]!.fd, "luod:vm-a/1");
    mgr.messages = [];
  }

  test("carries the READY sessions into the next update's manifest", async () => {
    await killedAfterReady();
    const d = daemon();
    d.start();
    expect(d.sd.counts().carried).toBe(1);
    expect(lines.some((l) => l.includes("carrying 1 READY session(s)"))).toBe(true);
    // the next update has no participant: only the carried session jumps
    d.broker.kexec(null, { timeoutMs: 5000, dryRun: false });
    await tick();
    const m = decodeManifest(kernel.blobs.get("luod")!);
    expect(m.entries.map((e) => [e.id, e.session])).toEqual([["vm-a", "luod:vm-a/1"]]);
    expect(mgr.stores()).toEqual(["luod"]);
    expect(mgr.commands.at(-1)?.[1]).toBe("kexec");
  });

  test("a client that takes part again supersedes its carried session", async () => {
    await killedAfterReady();
    const { d } = startedWith("vm-a");
    d.broker.kexec(null, { timeoutMs: 5000, dryRun: false });
    expect(mgr.removes()).toEqual(["luod%3Avm-a/1"]);
    expect(d.sd.counts().carried).toBe(0);
  });

  test("while systemd's kexec is under way, the restarted luod only waits", async () => {
    await killedAfterReady();
    // the record says the jump was requested
    new StateFiles(dir).write("fdstore", { jumpRequested: true, outgoing: [{ fdname: "luod%3Avm-a/1", session: "luod:vm-a/1", entry: null }] });
    mgr.jobs = "42 kexec.target start waiting\n";
    const d = daemon();
    d.start();
    expect(d.sd.jumpInProgress).toBe(true);
    expect(mgr.removes()).toEqual([]);
    expect(d.sd.stop()).toBe(true);
  });
});

describe("after the jump", () => {
  function manifestFor(ids: string[]) {
    return encodeManifest({
      format: MANIFEST_FORMAT, version: MANIFEST_VERSION, luod: "test", attempt: 1, createdAt: new Date().toISOString(),
      kernel: { from: "7.2.13", next }, timings: {},
      entries: ids.map((id) => ({ id, session: `luod:${id}/1`, uid: 0, gid: 0, pid: 1, unit: null, subscribedAt: "", readyAt: null })),
    });
  }

  test("sessions come from $LISTEN_FDS, never RETRIEVE_SESSION; done ones leave the fd store", () => {
    mgr.give("luod");
    mgr.blobs.set("luod", manifestFor(["vm-a", "vm-b"]));
    mgr.give("luod:vm-a/1");
    mgr.give("luod:vm-b/1");
    mgr.give("luod:gone/1"); // not in the manifest
    const d = daemon();
    const blob = d.k.takeBlob("luod", 0n);
    expect(blob.kind).toBe("taken");
    d.restored.adoptManifest(decodeManifest((blob as { data: Uint8Array }).data));
    expect(mgr.removes()).toEqual(["luod"]);
    d.start({ kind: "live-update boot" });
    expect(mgr.removes()).toEqual(["luod", "luod%3Agone/1"]);
    // kernel.incoming is empty: a by-name retrieve would throw ENOENT
    const { fd } = d.restored.claim("vm-a", { uid: 0, pid: 9 });
    expect(fd).toBeGreaterThan(2);
    d.restored.finished("vm-a", { uid: 0 });
    expect(mgr.removes()).toEqual(["luod", "luod%3Agone/1", "luod%3Avm-a/1"]);
    d.restored.discard("vm-b");
    expect(mgr.removes()).toContain("luod%3Avm-b/1");
    expect(d.sd.counts()).toEqual({ incoming: 0, lent: 0, staged: 0, carried: 0 });
  });

  test("luod killed after a CLAIM and restarted: the fd store's copy is held again, so the client may die and CLAIM again", () => {
    mgr.give("luod");
    mgr.blobs.set("luod", manifestFor(["vm-a", "vm-b"]));
    mgr.give("luod:vm-a/1");
    mgr.give("luod:vm-b/1");
    // what stays in systemd's store when luod is SIGKILLed: its own copies (the manifest is gone)
    const store = mgr.listen.filter((l) => l.name !== "luod").map((l) => ({ fd: dupFd(l.fd), name: l.name }));
    const first = daemon();
    first.restored.adoptManifest(decodeManifest((first.k.takeBlob("luod", 0n) as { data: Uint8Array }).data));
    first.start({ kind: "live-update boot" });
    first.restored.claim("vm-a", { uid: 0, pid: 9 });
    first.restored.flush(); // the record says claimed; then SIGKILL: nothing more runs
    const removed = mgr.removes().length;
    mgr.listen = store;
    for (const l of store) mgr.names.set(l.fd, sessionOfFdName(l.name)!);
    const after = daemon();
    expect(after.restored.loadFromState()).toBe(true);
    after.start({ kind: "restarted after a live-update boot" });
    expect(mgr.removes().length).toBe(removed); // neither session left the store
    expect(after.sd.counts()).toMatchObject({ incoming: 2, lent: 1 });
    // the client dies meanwhile (its copy closes); it comes back and gets a dup of luod's copy
    expect(after.restored.claim("vm-a", { uid: 0, pid: 10 }).fd).toBeGreaterThan(2);
    after.restored.finished("vm-a", { uid: 0 });
    expect(mgr.removes().slice(removed)).toEqual(["luod%3Avm-a/1"]);
    expect(after.sd.counts()).toMatchObject({ incoming: 1, lent: 0 });
  });

  test("a manifest that cannot be read keeps every session in the store", () => {
    mgr.give("luod:vm-a/1");
    const d = daemon();
    d.start({ kind: "cold boot", restore_error: "bad" });
    expect(mgr.removes()).toEqual([]);
    expect(d.sd.counts().incoming).toBe(1);
  });

  test("fds that are not luod's sessions are left alone", () => {
    const fd = memfdCreate("other");
    mgr.listen.push({ fd, name: "varlink" });
    const d = daemon();
    expect(d.sd.foreign).toEqual([{ fd, name: "varlink" }]);
    closeFd(fd);
  });
});

// Issue 14, hole 14: a tenant must never be left behind silently. A subscription outlives its
// connection and a luod restart (until UNSUBSCRIBE or EVICT); KEXEC refuses to start while an
// expected client is not connected, naming it, unless forced. Against the broker and the fake kernel.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Broker, type Peer } from "../../src/daemon/broker";
import { createLogger } from "../../src/daemon/log";
import { decodeManifest } from "../../src/daemon/manifest";
import { FakeKernel } from "../../src/daemon/fake-kernel";
import { StateFiles } from "../../src/daemon/state-files";
import { ProtocolError } from "../../src/wire/errors";
import { RecordingPeer } from "../support/fake-peer";
import { thrown } from "../support/thrown";

const next = { version: "7.2.13", sha256: "ab".repeat(32), cmdline: "liveupdate=on" };
const admin = new RecordingPeer({ pid: 4321, uid: 0, gid: 0 });

let dir: string;
let kernel: FakeKernel;
let lines: string[];
let broker: Broker;

function newBroker(opts: { carried?: (id: string) => boolean; maxSubscriptionsPerUid?: number } = {}): Broker {
  const log = createLogger({ prefix: false, write: (l) => lines.push(l) });
  return new Broker({ kernel, log, nextKernel: () => next, files: new StateFiles(dir, log), ...opts });
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "luod-expected-"));
  kernel = new FakeKernel();
  kernel.loaded = true;
  lines = [];
  broker = newBroker();
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** A peer of uid 1000 (or `cred`), optionally in a systemd service. */
function peer(cred?: Peer["cred"], unit: string | null = null): RecordingPeer {
  const p = new RecordingPeer(cred);
  (p as { unit: string | null }).unit = unit;
  return p;
}

function subscribed(id: string, cred?: Peer["cred"], unit: string | null = null): RecordingPeer {
  const p = peer(cred, unit);
  broker.subscribe(p, id);
  return p;
}

const errorOf = (fn: () => unknown) => thrown(fn, ProtocolError);
async function refusal(run: Promise<unknown>): Promise<ProtocolError> {
  try {
    await run;
  } catch (e) {
    if (e instanceof ProtocolError) return e;
    throw e;
  }
  throw new Error("KEXEC was not refused");
}

describe("an expected client (subscribed, not connected)", () => {
  test("a client that disconnects while idle stays in LIST, not connected", () => {
    const a = subscribed("vm-a");
    broker.peerClosed(a);
    expect(broker.list()).toMatchObject([{ id: "vm-a", uid: 1000, gid: 1000, connected: false, state: "subscribed" }]);
    expect(broker.summary().clients).toMatchObject({ subscribed: 1, disconnected: 1 });
  });

  test("KEXEC refuses with ENOTCONN naming it, before the device check; no session is created", async () => {
    subscribed("vm-here");
    broker.peerClosed(subscribed("vm-gone"));
    kernel.device = false;
    const e = await refusal(broker.kexec(admin, { timeoutMs: 5000, dryRun: true }));
    expect(e.code).toBe("ENOTCONN");
    expect(e.message).toContain("vm-gone");
    expect(e.message).not.toContain("vm-here");
    expect(e.message).toContain("--force");
    expect(kernel.outgoing.size).toBe(0);
    expect(broker.phase).toBe("idle");
  });

  test("CHECK fails naming it", () => {
    subscribed("vm-here");
    expect(broker.clientsCheck()).toMatchObject({ name: "clients", ok: true });
    broker.peerClosed(subscribed("vm-gone"));
    const c = broker.clientsCheck();
    expect(c).toMatchObject({ name: "clients", ok: false });
    expect(c.detail).toContain("vm-gone");
    expect(c.detail).not.toContain("vm-here");
  });

  test("with force the update runs without it and the log warns, naming it", async () => {
    const a = subscribed("vm-here");
    broker.peerClosed(subscribed("vm-gone"));
    const run = broker.kexec(admin, { timeoutMs: 5000, dryRun: true, force: true });
    expect(lines.some((l) => /warning: update \d+: forced: 1 subscribed client\(s\) not connected are left out.*vm-gone/.test(l))).toBe(true);
    broker.ready(a);
    expect(await run).toMatchObject({ ok: true, dryRun: true });
    expect(decodeManifest(kernel.blobs.get("luod")!).entries.map((e) => e.id)).toEqual(["vm-here"]);
    // still expected after the update
    expect(broker.list().find((c) => c.id === "vm-gone")).toMatchObject({ connected: false });
  });

  test("its own uid takes its place again by SUBSCRIBE; then KEXEC runs with it", async () => {
    broker.peerClosed(subscribed("vm-a", { pid: 10, uid: 1000, gid: 1000 }));
    const back = peer({ pid: 11, uid: 1000, gid: 1000 });
    expect(broker.subscribe(back, "vm-a")).toEqual({ id: "vm-a" });
    expect(broker.list()).toMatchObject([{ id: "vm-a", pid: 11, connected: true }]);
    const run = broker.kexec(admin, { timeoutMs: 5000, dryRun: true });
    expect(back.events("START_PRESERVATION")).toHaveLength(1);
    broker.ready(back);
    expect(await run).toMatchObject({ ok: true });
  });

  test("another non-root uid gets EEXIST without the owner; root takes it", () => {
    broker.peerClosed(subscribed("vm-a", { pid: 10, uid: 1000, gid: 1000 }));
    const e = errorOf(() => broker.subscribe(peer({ pid: 12, uid: 1001, gid: 1001 }), "vm-a"));
    expect(e.code).toBe("EEXIST");
    expect(e.message).toBe("id vm-a is taken");
    expect(broker.subscribe(peer({ pid: 13, uid: 0, gid: 0 }), "vm-a")).toEqual({ id: "vm-a" });
  });

  test("from another systemd service of the same uid it is EPERM; from the same service, or outside any, it is taken", () => {
    broker.peerClosed(subscribed("vm-a", undefined, "vm@a.service"));
    expect(errorOf(() => broker.subscribe(peer(undefined, "vm@b.service"), "vm-a")).code).toBe("EPERM");
    const same = peer(undefined, "vm@a.service");
    broker.subscribe(same, "vm-a");
    broker.peerClosed(same);
    broker.subscribe(peer(undefined, null), "vm-a");
    expect(broker.list()).toMatchObject([{ id: "vm-a", connected: true }]);
  });

  test("UNSUBSCRIBE and EVICT forget it", () => {
    const a = subscribed("vm-a");
    broker.unsubscribe(a);
    broker.peerClosed(a);
    broker.peerClosed(subscribed("vm-b"));
    expect(broker.evict(admin, "vm-b")).toMatchObject({ id: "vm-b", disconnected: false });
    expect(broker.list()).toEqual([]);
    expect(broker.clientsCheck().ok).toBe(true);
  });

  test("a client that disconnected after READY is expected once the update ends", async () => {
    const a = subscribed("vm-a"), b = subscribed("vm-b");
    const run = broker.kexec(admin, { timeoutMs: 5000, dryRun: true });
    broker.ready(a);
    broker.peerClosed(a);
    broker.ready(b);
    expect(await run).toMatchObject({ ok: true });
    expect(kernel.outgoing.size).toBe(0);
    expect(broker.list().find((c) => c.id === "vm-a")).toMatchObject({ connected: false, session: null, state: "subscribed" });
    expect((await refusal(broker.kexec(admin, { timeoutMs: 5000, dryRun: true }))).code).toBe("ENOTCONN");
  });

  test("a client whose READY session is carried without it (systemd's fd store) is not missing", async () => {
    broker.peerClosed(subscribed("vm-a"));
    broker.flushExpected();
    broker = newBroker({ carried: (id) => id === "vm-a" });
    expect(broker.clientsCheck().ok).toBe(true);
    expect(await broker.kexec(admin, { timeoutMs: 5000, dryRun: true })).toMatchObject({ ok: true });
  });

  test("one uid holds at most maxSubscriptionsPerUid subscriptions, expected ones included (ENOSPC)", () => {
    broker = newBroker({ maxSubscriptionsPerUid: 2 });
    broker.peerClosed(subscribed("vm-1"));
    broker.peerClosed(subscribed("vm-2"));
    expect(errorOf(() => subscribed("vm-3")).code).toBe("ENOSPC");
    expect(() => subscribed("vm-4", { pid: 5, uid: 1001, gid: 1001 })).not.toThrow();
    broker.evict(admin, "vm-1");
    expect(() => subscribed("vm-3")).not.toThrow();
  });
});

describe("subscriptions.json", () => {
  test("a restarted luod (a new broker on the same state dir) expects every subscription of this boot", async () => {
    subscribed("vm-a", { pid: 10, uid: 1000, gid: 1000 }, "vm@a.service");
    const b = subscribed("vm-b", { pid: 11, uid: 1001, gid: 1001 });
    broker.unsubscribe(b);
    broker.flushExpected();
    const file = JSON.parse(readFileSync(join(dir, "subscriptions.json"), "utf8"));
    expect(file.data).toMatchObject({ version: 1, clients: [{ id: "vm-a", uid: 1000, gid: 1000, pid: 10, unit: "vm@a.service" }] });
    broker = newBroker();
    expect(broker.list()).toMatchObject([{ id: "vm-a", uid: 1000, pid: 10, unit: "vm@a.service", connected: false }]);
    expect(lines.some((l) => l.includes("expecting 1 subscribed client(s) back") && l.includes("vm-a"))).toBe(true);
    const e = await refusal(broker.kexec(admin, { timeoutMs: 5000, dryRun: true }));
    expect(e.code).toBe("ENOTCONN");
    expect(e.message).toContain("vm-a");
    broker.subscribe(peer({ pid: 12, uid: 1000, gid: 1000 }, "vm@a.service"), "vm-a");
    expect(broker.clientsCheck().ok).toBe(true);
  });

  test("is written soon after a change, without a flush", async () => {
    subscribed("vm-a");
    await Bun.sleep(50);
    expect(JSON.parse(readFileSync(join(dir, "subscriptions.json"), "utf8")).data.clients.map((c: { id: string }) => c.id)).toEqual(["vm-a"]);
  });

  test("a bad record is set aside with a warning; luod goes on expecting nobody", () => {
    const bootId = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
    writeFileSync(join(dir, "subscriptions.json"), JSON.stringify({ bootId, data: { version: 1, clients: [{ id: "vm-a", uid: "root" }] } }), { mode: 0o600 });
    broker = newBroker();
    expect(broker.list()).toEqual([]);
    expect(readdirSync(dir).some((f) => f.startsWith("subscriptions.json.bad-"))).toBe(true);
    expect(lines.some((l) => l.includes("subscriptions.json is unusable"))).toBe(true);
  });

  test("a record of another boot is ignored", () => {
    writeFileSync(join(dir, "subscriptions.json"), JSON.stringify({ bootId: "another-boot", data: { version: 1, clients: [{ id: "vm-a", uid: 0, gid: 0, pid: 1, unit: null, since: new Date().toISOString() }] } }), { mode: 0o600 });
    broker = newBroker();
    expect(broker.list()).toEqual([]);
  });
});

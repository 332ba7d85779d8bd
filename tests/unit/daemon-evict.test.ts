// EVICT (issue 14, hole 13): an administrator drops a stuck subscriber. Against the broker and the
// fake kernel: the connection is closed, the subscription forgotten, an update it takes part in is
// aborted naming the client and the admin, and a prepared session needs force (and is released).
import { beforeEach, describe, expect, test } from "bun:test";
import { Broker, type Peer } from "../../src/daemon/broker";
import { createLogger } from "../../src/daemon/log";
import { FakeKernel } from "../../src/daemon/fake-kernel";
import { ProtocolError } from "../../src/wire/errors";
import { RecordingPeer } from "../support/fake-peer";
import { thrown } from "../support/thrown";

/** A peer whose connection luod can close. */
class ClosablePeer extends RecordingPeer {
  closedWith: string | null = null;
  close(reason: string): void {
    this.closedWith = reason;
  }
}

let kernel: FakeKernel;
let broker: Broker;
let lines: string[];
const admin = new RecordingPeer({ pid: 4321, uid: 0, gid: 0 });

beforeEach(() => {
  kernel = new FakeKernel();
  kernel.loaded = true;
  lines = [];
  broker = new Broker({ kernel, log: createLogger({ prefix: false, write: (l) => lines.push(l) }), nextKernel: () => ({ version: "7.2.13", sha256: "ab".repeat(32), cmdline: "liveupdate=on" }) });
});

function subscribed(id: string): ClosablePeer {
  const p = new ClosablePeer();
  broker.subscribe(p, id);
  return p;
}

describe("EVICT", () => {
  test("closes the client's connection, forgets its subscription and logs who asked", () => {
    const a = subscribed("vm-a");
    subscribed("vm-b");
    expect(broker.evict(admin, "vm-a", { reason: "hung" })).toEqual({ id: "vm-a", disconnected: true, aborted_update: null, released_session: null });
    expect(a.closedWith).toBe("client vm-a evicted by an administrator (uid 0, pid 4321): hung");
    expect(broker.list().map((c) => c.id)).toEqual(["vm-b"]);
    expect(lines.at(-1)).toContain("notice: client vm-a evicted by an administrator (uid 0, pid 4321): hung");
    // its id is free again; its connection's close is nothing more to the broker
    broker.peerClosed(a);
    expect(() => subscribed("vm-a")).not.toThrow();
  });

  test("an id nobody holds is ENOENT", () => {
    expect(thrown(() => broker.evict(admin, "vm-none"), ProtocolError).code).toBe("ENOENT");
  });

  test("during an update aborts it cleanly, the reason naming the client and the admin; the others carry on subscribed", async () => {
    const a = subscribed("vm-a"), b = subscribed("vm-b");
    const run = broker.kexec(admin, { timeoutMs: 5000, dryRun: false });
    broker.ready(b);
    const r = broker.evict(admin, "vm-a", { reason: "supervisor hung" });
    expect(r).toMatchObject({ id: "vm-a", disconnected: true, aborted_update: 1 });
    const outcome = await run;
    expect(outcome).toMatchObject({ ok: false, code: "ECANCELED", message: "client vm-a evicted by an administrator (uid 0, pid 4321): supervisor hung" });
    expect(b.events("ABORTED")[0]!.msg.reason).toBe("client vm-a evicted by an administrator (uid 0, pid 4321): supervisor hung");
    expect(broker.phase).toBe("idle");
    expect(broker.list()).toEqual([expect.objectContaining({ id: "vm-b", state: "subscribed", session: null })]);
    expect(kernel.outgoing.size).toBe(0); // every session of the aborted update is released
    expect(a.closedWith).not.toBeNull();
  });

  test("a client whose session is prepared needs force; with it, the session is released and the reply and log say so", () => {
    const a = subscribed("vm-a");
    const { session } = broker.prepare(a);
    const refused = thrown(() => broker.evict(admin, "vm-a"), ProtocolError);
    expect(refused.code).toBe("EBUSY");
    expect(refused.message).toContain("use force");
    expect(a.closedWith).toBeNull();
    expect(kernel.outgoing.has(session)).toBe(true);

    expect(broker.evict(admin, "vm-a", { force: true })).toMatchObject({ released_session: session });
    expect(kernel.outgoing.has(session)).toBe(false);
    expect(lines.at(-1)).toContain(`its prepared session ${session} is released: its memory will not be carried across the next update unless it PREPAREs again`);
  });

  test("a client gone after READY (luod holds its session) is evicted without a connection to close", async () => {
    const a = subscribed("vm-a");
    subscribed("vm-b");
    const run = broker.kexec(admin, { timeoutMs: 5000, dryRun: true });
    broker.ready(a);
    broker.peerClosed(a);
    expect(broker.evict(admin, "vm-a")).toMatchObject({ disconnected: false, aborted_update: 1 });
    expect((await run).ok).toBe(false);
    expect(broker.list().map((c) => c.id)).toEqual(["vm-b"]);
  });
});

// keep the Peer interface honest: close is optional, RecordingPeer has none
const _plain: Peer = new RecordingPeer();
void _plain;

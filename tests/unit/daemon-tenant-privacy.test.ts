// A client sees only its own (issue 14, hole 7): STATUS during an update lists only the caller's
// uid's ids, and SUBSCRIBE of an id held for another uid says "taken" without naming its owner.
// Admins (and root) still see everything. Through dispatch.ts, as server.ts calls it.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Broker } from "../../src/daemon/broker";
import { Dispatcher, type Requester } from "../../src/daemon/dispatch";
import { KernelLoader } from "../../src/daemon/loader";
import { RestoredSessions } from "../../src/daemon/restored";
import { StateFiles } from "../../src/daemon/state-files";
import { createLogger } from "../../src/daemon/log";
import { FakeKernel } from "../../src/daemon/fake-kernel";
import type { Request } from "../../src/wire/requests";
import { ProtocolError } from "../../src/wire/errors";
import { RecordingPeer } from "../support/fake-peer";
import { thrown } from "../support/thrown";

const quiet = createLogger({ write: () => {} });
let dir: string;
let broker: Broker;
let restored: RestoredSessions;
let dispatcher: Dispatcher;

class Conn extends RecordingPeer implements Requester {
  constructor(
    uid: number,
    readonly roles = { admin: false, client: true },
  ) {
    super({ pid: 5000 + uid, uid, gid: uid });
  }
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "luod-privacy-"));
  const kernel = new FakeKernel();
  const files = new StateFiles(dir);
  restored = new RestoredSessions(kernel, files, quiet);
  restored.adoptManifest({
    format: "luod-manifest", version: 1, luod: "test", attempt: 3, createdAt: "2026-12-01T00:00:00.000Z",
    kernel: { from: "7.2.13", next: null }, timings: {},
    entries: [{ id: "vm-owned", session: "luod:vm-owned/3", uid: 1000, gid: 1000, pid: 10, unit: null, subscribedAt: "x", readyAt: "y" }],
  });
  const loader = new KernelLoader(kernel, files, quiet);
  broker = new Broker({ kernel, log: quiet, nextKernel: () => null });
  dispatcher = new Dispatcher({ broker, loader, restored, log: quiet, luodStatus: () => ({}), statusExtra: () => ({}) });
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function call(peer: Conn, req: Request): Record<string, unknown> {
  dispatcher.dispatch(peer, req, []);
  return peer.sent.at(-1)!.msg;
}

describe("STATUS during an update", () => {
  test("a client sees only its own uid's ids among those not READY; an admin and root see every id", async () => {
    const mine = new Conn(1000), theirs = new Conn(1001), admin = new Conn(1002, { admin: true, client: false }), root = new Conn(0, { admin: true, client: true });
    call(mine, { cmd: "SUBSCRIBE", id: "vm-1" });
    call(theirs, { cmd: "SUBSCRIBE", id: "vm-secret" });
    const run = broker.kexec(null, { timeoutMs: 5000, dryRun: true });
    const update = (p: Conn) => (call(p, { cmd: "STATUS" }) as { update: { waiting: string[]; total: number } }).update;
    expect(update(mine)).toMatchObject({ waiting: ["vm-1"], total: 2 });
    expect(update(theirs)).toMatchObject({ waiting: ["vm-secret"], total: 2 });
    expect(update(admin).waiting).toEqual(["vm-1", "vm-secret"]);
    expect(update(root).waiting).toEqual(["vm-1", "vm-secret"]);
    expect(JSON.stringify(call(mine, { cmd: "STATUS" }))).not.toContain("vm-secret");
    broker.abortByAdmin("test");
    await run;
  });
});

describe("SUBSCRIBE of a held id", () => {
  test("held for another uid's restored session: EEXIST 'taken', the same answer as for an id another connection holds, no owner named", () => {
    const other = new Conn(1001);
    const reserved = thrown(() => dispatcher.dispatch(other, { cmd: "SUBSCRIBE", id: "vm-owned" }, []), ProtocolError);
    call(new Conn(1002), { cmd: "SUBSCRIBE", id: "vm-live" });
    const held = thrown(() => dispatcher.dispatch(other, { cmd: "SUBSCRIBE", id: "vm-live" }, []), ProtocolError);
    expect([reserved.code, reserved.message]).toEqual(["EEXIST", "id vm-owned is taken"]);
    expect([held.code, held.message]).toEqual(["EEXIST", "id vm-live is taken"]);
    // the owner (and root) may subscribe under it
    expect(call(new Conn(1000), { cmd: "SUBSCRIBE", id: "vm-owned" })).toMatchObject({ ok: true, restored: true });
  });

  test("held by the caller's own uid: the holder's pid is named (it is the caller's own process)", () => {
    call(new Conn(1000), { cmd: "SUBSCRIBE", id: "vm-1" });
    expect(thrown(() => dispatcher.dispatch(new Conn(1000), { cmd: "SUBSCRIBE", id: "vm-1" }, []), ProtocolError).message).toBe("id vm-1 is taken (subscribed by pid 6000)");
  });
});

describe("ABORTED during an update", () => {
  test("a client of another uid is not told who failed, disconnected or was late, nor the reason it gave; the same uid and root are, and the admin's outcome keeps it all", async () => {
    const failing = new Conn(1000), sameUid = new Conn(1000), other = new Conn(1001), root = new Conn(0, { admin: true, client: true });
    call(failing, { cmd: "SUBSCRIBE", id: "vm-1" });
    call(sameUid, { cmd: "SUBSCRIBE", id: "vm-2" });
    call(other, { cmd: "SUBSCRIBE", id: "vm-secret" });
    call(root, { cmd: "SUBSCRIBE", id: "vm-root" });
    const run = broker.kexec(null, { timeoutMs: 5000, dryRun: true });
    broker.fail(failing, "disk full on host-7");
    const full = "client vm-1 sent FAIL: disk full on host-7";
    expect(await run).toMatchObject({ ok: false, message: full });
    const reason = (p: Conn) => p.events("ABORTED").at(-1)!.msg.reason;
    expect(reason(failing)).toBe(full);
    expect(reason(sameUid)).toBe(full);
    expect(reason(root)).toBe(full);
    expect(reason(other)).toBe("another client sent FAIL");
  });

  test("the READY deadline names the late clients only to their own uid", async () => {
    const late = new Conn(1000), other = new Conn(1001);
    call(late, { cmd: "SUBSCRIBE", id: "vm-late" });
    call(other, { cmd: "SUBSCRIBE", id: "vm-quick" });
    const run = broker.kexec(null, { timeoutMs: 100, dryRun: true });
    broker.ready(other);
    expect(await run).toMatchObject({ ok: false, code: "ETIMEDOUT", message: "READY deadline of 100 ms passed; not ready: vm-late" });
    expect(late.events("ABORTED")[0]!.msg.reason).toBe("READY deadline of 100 ms passed; not ready: vm-late");
    expect(other.events("ABORTED")[0]!.msg.reason).toBe("READY deadline of 100 ms passed; not every client was READY");
  });
});

// Restored sessions after a live-update boot: claim, finish, discard, and survival of a luod
// restart (the state file), against the fake kernel.
import { describe, expect, test, beforeEach, afterEach } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RestoredSessions, SAVE_INTERVAL_MS } from "../../src/daemon/restored";
import { StateFiles } from "../../src/daemon/state-files";
import { createLogger } from "../../src/daemon/log";
import type { Manifest } from "../../src/daemon/manifest";
import { FakeKernel } from "../../src/daemon/fake-kernel";
import { ProtocolError } from "../../src/wire/errors";
import { thrown } from "../support/thrown";

const quiet = createLogger({ write: () => {} });
let dir: string;
let kernel: FakeKernel;
let files: StateFiles;

const manifest: Manifest = {
  format: "luod-manifest", version: 1, luod: "0.1.0", attempt: 7, createdAt: "2026-11-22T00:00:00.000Z",
  kernel: { from: "7.2.13", next: null }, timings: { all_ready_ms: 3 },
  entries: [
    { id: "vm-a", session: "luod:vm-a/7", uid: 1000, gid: 1000, pid: 10, unit: null, subscribedAt: "x", readyAt: "y" },
    { id: "vm-b", session: "luod:vm-b/7", uid: 1001, gid: 1001, pid: 11, unit: null, subscribedAt: "x", readyAt: "y" },
  ],
};

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "luod-restored-"));
  kernel = new FakeKernel();
  for (const e of manifest.entries) kernel.incoming.set(e.session, { retrieved: false });
  files = new StateFiles(dir);
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function adopted(): RestoredSessions {
  const r = new RestoredSessions(kernel, files, quiet);
  r.adoptManifest(manifest);
  return r;
}

describe("restored sessions", () => {
  test("start unclaimed, one per manifest entry", () => {
    expect(adopted().unclaimed().map((s) => s.id)).toEqual(["vm-a", "vm-b"]);
  });

  test("CLAIM retrieves the session only then and hands out luod's copy", () => {
    const r = adopted();
    expect(kernel.incoming.get("luod:vm-a/7")!.retrieved).toBe(false);
    const got = r.claim("vm-a", { uid: 1000, pid: 20 });
    expect(got.session).toBe("luod:vm-a/7");
    expect(kernel.incoming.get("luod:vm-a/7")!.retrieved).toBe(true);
    expect(r.unclaimed().map((s) => s.id)).toEqual(["vm-b"]);
  });

  test("a second CLAIM before FINISHED gets the same held session (a crashed client comes back)", () => {
    const r = adopted();
    const first = r.claim("vm-a", { uid: 1000, pid: 20 });
    const again = r.claim("vm-a", { uid: 1000, pid: 21 });
    expect(again.fd).toBe(first.fd);
  });

  test("CLAIM by another uid is refused exactly as CLAIM of an id with no session; by root it is allowed", () => {
    const r = adopted();
    const foreign = thrown(() => r.claim("vm-a", { uid: 1001, pid: 20 }), ProtocolError);
    const none = thrown(() => r.claim("vm-none", { uid: 1001, pid: 20 }), ProtocolError);
    expect([foreign.code, foreign.message]).toEqual(["ENOENT", "nothing to claim for vm-a"]);
    expect([none.code, none.message]).toEqual(["ENOENT", "nothing to claim for vm-none"]);
    expect(foreign.message).not.toContain("1000");
    // not even the state of another uid's session: finished or claimed, the same answer
    r.claim("vm-a", { uid: 1000, pid: 21 });
    expect(thrown(() => r.claim("vm-a", { uid: 1001, pid: 20 }), ProtocolError).message).toBe("nothing to claim for vm-a");
    const fin = thrown(() => r.finished("vm-a", { uid: 1001 }), ProtocolError);
    expect([fin.code, fin.message]).toEqual(["ENOENT", "vm-a is not claimed"]);
    r.finished("vm-a", { uid: 1000 });
    expect(thrown(() => r.claim("vm-a", { uid: 1001, pid: 20 }), ProtocolError).message).toBe("nothing to claim for vm-a");
    expect(r.claim("vm-b", { uid: 0, pid: 1 }).session).toBe("luod:vm-b/7");
  });

  test("CLAIM of an unknown id is ENOENT", () => {
    expect(() => adopted().claim("nope", { uid: 0, pid: 1 })).toThrow(expect.objectContaining({ code: "ENOENT" }));
  });

  test("FINISHED drops luod's copy; a later CLAIM is ENOENT", () => {
    const r = adopted();
    r.claim("vm-a", { uid: 1000, pid: 20 });
    r.finished("vm-a", { uid: 1000 });
    expect(r.list().find((s) => s.id === "vm-a")!.state).toBe("finished");
    expect(() => r.claim("vm-a", { uid: 1000, pid: 20 })).toThrow(expect.objectContaining({ code: "ENOENT" }));
  });

  test("DISCARD of an unclaimed session retrieves and FINISHes it in the kernel", () => {
    const r = adopted();
    r.discard("vm-b");
    expect(kernel.finished).toEqual(["luod:vm-b/7"]);
    expect(r.unclaimed().map((s) => s.id)).toEqual(["vm-a"]);
  });

  test("DISCARD of a claimed session is EBUSY", () => {
    const r = adopted();
    r.claim("vm-a", { uid: 1000, pid: 20 });
    expect(() => r.discard("vm-a")).toThrow(expect.objectContaining({ code: "EBUSY" }));
  });

  test("a luod restarted in the same boot still knows every unclaimed session", async () => {
    const r = adopted();
    r.claim("vm-a", { uid: 1000, pid: 20 });
    await Bun.sleep(SAVE_INTERVAL_MS + 20); // the state file is written at most every SAVE_INTERVAL_MS
    const after = new RestoredSessions(kernel, new StateFiles(dir), quiet);
    expect(after.loadFromState()).toBe(true);
    expect(after.unclaimed().map((s) => s.id)).toEqual(["vm-b"]);
    expect(after.claim("vm-b", { uid: 1001, pid: 30 }).session).toBe("luod:vm-b/7");
    expect(after.previous?.attempt).toBe(7);
  });
});

describe("a luod restarted after a CLAIM, before FINISHED", () => {
  async function restartedAfterClaim(): Promise<RestoredSessions> {
    adopted().claim("vm-a", { uid: 1000, pid: 20 });
    await Bun.sleep(SAVE_INTERVAL_MS + 20);
    return new RestoredSessions(kernel, new StateFiles(dir), quiet);
  }

  test("holds the session again when the kernel port still has a copy (the fd store): the client may CLAIM again", async () => {
    const after = await restartedAfterClaim();
    kernel.incoming.get("luod:vm-a/7")!.retrieved = false; // as the systemd port hands out a dup of the stored fd
    after.loadFromState();
    expect(kernel.incoming.get("luod:vm-a/7")!.retrieved).toBe(true);
    const again = after.claim("vm-a", { uid: 1000, pid: 21 });
    expect(again.session).toBe("luod:vm-a/7");
    after.finished("vm-a", { uid: 1000 });
    expect(after.list().find((s) => s.id === "vm-a")!.state).toBe("finished");
  });

  test("without a copy (the client holds the only one), CLAIM is EBUSY and the record stays claimed", async () => {
    const after = await restartedAfterClaim();
    after.loadFromState(); // RETRIEVE_SESSION: EINVAL, retrieved and still open
    expect(() => after.claim("vm-a", { uid: 1000, pid: 21 })).toThrow(expect.objectContaining({ code: "EBUSY" }));
    expect(after.list().find((s) => s.id === "vm-a")!.state).toBe("claimed");
  });

  test("a session its client has closed since is gone: the record says finished, CLAIM is ENOENT", async () => {
    const after = await restartedAfterClaim();
    kernel.incoming.delete("luod:vm-a/7"); // RETRIEVE_SESSION: ENOENT
    after.loadFromState();
    expect(after.list().find((s) => s.id === "vm-a")!.state).toBe("finished");
    expect(() => after.claim("vm-a", { uid: 1000, pid: 21 })).toThrow(expect.objectContaining({ code: "ENOENT" }));
    expect(after.unclaimed().map((s) => s.id)).toEqual(["vm-b"]);
  });
});

describe("claim by unit", () => {
  test("a non-root claimer from another systemd unit is EPERM, even with the right uid", () => {
    const r = new RestoredSessions(kernel, files, quiet);
    r.adoptManifest({ ...manifest, entries: [{ ...manifest.entries[0], unit: "vm-a.service" }] });
    expect(() => r.claim("vm-a", { uid: 1000, pid: 20, unit: "other.service" })).toThrow(expect.objectContaining({ code: "EPERM" }));
    expect(r.claim("vm-a", { uid: 1000, pid: 20, unit: "vm-a.service" }).session).toBe("luod:vm-a/7");
  });
});

describe("the state file", () => {
  test("a burst of claims writes it once, SAVE_INTERVAL_MS later; a restart one step behind gets EBUSY, not a crash", async () => {
    let writes = 0;
    const counting = new StateFiles(dir);
    const write = counting.write.bind(counting);
    counting.write = (name, data) => {
      writes++;
      write(name, data);
    };
    const r = new RestoredSessions(kernel, counting, quiet);
    r.adoptManifest(manifest);
    writes = 0;
    r.claim("vm-a", { uid: 1000, pid: 20 });
    r.claim("vm-b", { uid: 1001, pid: 21 });
    expect(writes).toBe(0);
    // luod killed now: the file still says unclaimed, the kernel says retrieved (EINVAL)
    const after = new RestoredSessions(kernel, new StateFiles(dir), quiet);
    after.loadFromState();
    expect(() => after.claim("vm-a", { uid: 1000, pid: 22 })).toThrow(expect.objectContaining({ code: "EBUSY" }));
    await Bun.sleep(SAVE_INTERVAL_MS + 20);
    expect(writes).toBe(1);
  });
});

// luod in this test process, against the fake kernel, with a real LuoClient on a real unix socket:
// set a breakpoint in src/daemon/dispatch.ts (Dispatcher.dispatch, case "CLAIM") or in
// src/daemon/broker.ts (Broker.kexec) and step through a request without a VM.
// docs/daemon.md, "Code map" lists where each request goes.
//
// One scenario per test, its stages in order (like the kernel's selftests in
// tools/testing/selftests/liveupdate). With the fake kernel (src/daemon/fake-kernel.ts) a LUO
// session is a plain memfd: PRESERVE_FD and RETRIEVE_FD are ioctls of /dev/liveupdate, proven in
// tests/vm. Here the memfd a client preserves is modelled as the content of its session fd: the
// client writes its state into the session fd luod sent, and reads it back from the one CLAIM
// returns; the test checks that content, so a wrong or swapped fd fails.
import { afterEach, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { LuoClient, LuoError, closeFd, fileSize, readFull, writeFull } from "../../src/client";
import { FakeKernel } from "../../src/daemon/fake-kernel";
import type { KernelPort, RetrievedSession } from "../../src/daemon/kernel-port";
import type { LoadedKernel } from "../../src/daemon/loader";
import { startInProcessLuod, type InProcessLuod } from "../support/in-process-luod";
import { StateFiles } from "../../src/daemon/state-files";
import { createLogger } from "../../src/daemon/log";
import { decodeManifest, encodeManifest, MANIFEST_FORMAT, MANIFEST_VERSION } from "../../src/daemon/manifest";
import { INTERNAL_SESSION } from "../../src/wire/ids";
import { fdsOpenedSince, openFds } from "../support/open-fds";

const uid = process.getuid?.() ?? 0;
const gid = process.getgid?.() ?? 0;

// ---- the helpers: luod in this process (tests/support/in-process-luod.ts), the fake kernel after a boot

/** The fake kernel after a live-update boot: an incoming session's memfd carries what its client preserved. */
class KernelAfterBoot extends FakeKernel {
  readonly preserved = new Map<string, string>();
  override retrieveSession(name: string): RetrievedSession {
    const r = super.retrieveSession(name);
    if (r.kind === "retrieved") writeFull(r.fd, new TextEncoder().encode(this.preserved.get(name) ?? ""), 0);
    return r;
  }
}

type Luod = InProcessLuod;

/** What each test opened, closed after it; `fds`: this process's open fds before luod started. */
const opened: { luod: Luod; dir: string; clients: LuoClient[]; fds: Map<number, string> }[] = [];

/** luod on a socket in a fresh temp dir. `seed` runs on the state dir before the parts read it. */
function startLuod(kernel: KernelPort, seed: (files: StateFiles) => void = () => {}): Luod {
  const fds = openFds();
  // createLogger({ verbose: true }) to watch luod's log
  const luod = startInProcessLuod({ kernel, log: createLogger({ write: () => {} }), seed, maxConnections: 16, name: "luod-in-process" });
  opened.push({ luod, dir: luod.dir, clients: [], fds });
  return luod;
}

/** A LuoClient connected to `luod`; closed after the test. */
async function connect(luod: Luod): Promise<LuoClient> {
  const client = await LuoClient.connect(luod.socket);
  opened.find((o) => o.luod === luod)!.clients.push(client);
  return client;
}

function readText(fd: number): string {
  const buf = new Uint8Array(fileSize(fd));
  readFull(fd, buf, 0);
  return new TextDecoder().decode(buf);
}

afterEach(async () => {
  for (const { luod, dir, clients, fds } of opened.splice(0)) {
    for (const c of clients) c.close();
    luod.stop();
    await luod.closed;
    rmSync(dir, { recursive: true, force: true });
    // every session fd, socket and event loop fd is gone (the clients' loops stop a moment later)
    for (let i = 0; i < 100 && fdsOpenedSince(fds).length > 0; i++) await Bun.sleep(10);
    expect(fdsOpenedSince(fds)).toEqual([]);
  }
});

// ---- scenarios ------------------------------------------------------------------------------

test("after a live-update boot a client CLAIMs its session, reads its memfd back and FINISHes", async () => {
  // 1. the previous kernel's luod preserved vm-1's session and a manifest naming it
  const kernel = new KernelAfterBoot();
  const at = new Date().toISOString();
  kernel.incoming.set("luod:vm-1/7", { retrieved: false });
  kernel.preserved.set("luod:vm-1/7", "vm-1 guest memory, before the jump");
  kernel.incoming.set(INTERNAL_SESSION, {
    retrieved: false,
    blob: encodeManifest({
      format: MANIFEST_FORMAT, version: MANIFEST_VERSION, luod: "test", attempt: 7, createdAt: at,
      kernel: { from: "7.2.12", next: null }, timings: {},
      entries: [{ id: "vm-1", session: "luod:vm-1/7", uid, gid, pid: 4242, unit: null, subscribedAt: at, readyAt: at }],
    }),
  });

  // 2. luod starts: it takes the manifest out of its session
  const luod = startLuod(kernel);
  expect(kernel.incoming.has(INTERNAL_SESSION)).toBe(false);
  expect(luod.restored.unclaimed().map((s) => s.id)).toEqual(["vm-1"]);

  // 3. SUBSCRIBE says a restored session waits
  const client = await connect(luod);
  expect(await client.subscribe("vm-1")).toMatchObject({ reply: "SUBSCRIBE", ok: true, id: "vm-1", restored: true });

  // 4. CLAIM (what client.claim() sends): CLAIMED with the session fd; the client reads what it
  //    preserved before the jump
  const { msg: claimed, fds: [sessionFd, ...extra] } = await client.call({ cmd: "CLAIM", id: "vm-1" });
  expect(claimed).toMatchObject({ event: "CLAIMED", reply: "CLAIM", ok: true, id: "vm-1", session: "luod:vm-1/7", fds: 1 });
  expect(extra).toEqual([]);
  expect(readText(sessionFd!)).toBe("vm-1 guest memory, before the jump");
  expect(kernel.incoming.get("luod:vm-1/7")!.retrieved).toBe(true);
  closeFd(sessionFd!);

  // 5. FINISHED: luod drops its copy; STATUS shows the session finished
  expect(await client.finished("vm-1")).toMatchObject({ reply: "FINISHED", ok: true, id: "vm-1" });
  const status = await client.status();
  expect(status.restored).toEqual([expect.objectContaining({ id: "vm-1", session: "luod:vm-1/7", state: "finished" })]);
  expect(status).toMatchObject({ boot: "live-update boot", previous_update: { attempt: 7, from: "7.2.12" } });
});

test("an update: START_PRESERVATION brings a session fd, the client preserves, READY, the manifest names it", async () => {
  // 1. luod loaded a kernel earlier in this boot (the record LOAD leaves in the state dir); the
  //    fake kernel's jump "works"
  const kernel = new FakeKernel();
  kernel.loaded = true;
  kernel.rebootError = null; // jump() returns "jumped"
  const next: LoadedKernel = {
    version: "7.2.14", sha256: "ab".repeat(32), cmdline: "console=ttyS0 liveupdate=on",
    size: 1 << 20, initrdSize: null, loadedAt: new Date().toISOString(),
  };
  const luod = startLuod(kernel, (files) => files.write("loaded", next));

  // 2. a client subscribes
  const client = await connect(luod);
  expect(await client.subscribe("vm-1")).toMatchObject({ ok: true, id: "vm-1", restored: false });

  // 3. an admin starts the update
  const admin = await connect(luod);
  let onRebooting!: (ev: Record<string, unknown>) => void;
  const rebooting = new Promise<Record<string, unknown>>((resolve) => (onRebooting = resolve));
  const kexec = admin.kexec({ timeoutMs: 10_000, onRebooting }).catch((e: unknown) => e);

  // 4. the client gets its session fd and preserves its state into it
  const p = await client.waitForSession({ timeoutMs: 5000 });
  expect(p).toMatchObject({ id: "vm-1", prepared: false });
  expect(p.session).toMatch(/^luod:vm-1\/\d+$/);
  writeFull(p.sessionFd, new TextEncoder().encode("vm-1 state to keep"), 0);

  // 5. READY: every client is ready, luod preserves the manifest and jumps
  expect(await client.ready()).toMatchObject({ reply: "READY", ok: true, id: "vm-1" });
  expect(await rebooting).toMatchObject({ event: "REBOOTING" });
  expect(kernel.reboots).toBe(1);
  expect(luod.broker.phase).toBe("committing");

  // 6. in the fake kernel: the manifest names vm-1's session, and that session holds what it preserved
  const manifest = decodeManifest(kernel.blobs.get(INTERNAL_SESSION)!);
  expect(manifest.kernel.next).toMatchObject({ version: "7.2.14" });
  expect(manifest.entries).toEqual([expect.objectContaining({ id: "vm-1", session: p.session, uid, gid })]);
  expect(readText(kernel.outgoing.get(p.session)!)).toBe("vm-1 state to keep");
  closeFd(p.sessionFd);

  // 7. a real jump never comes back; here luod stops: the admin's connection goes after REBOOTING,
  //    which LuoClient.kexec() reports as the jump
  luod.stop();
  expect(await kexec).toMatchObject({ rebooting: true, event: { event: "REBOOTING" } });
});

test("CLAIM of an id with no restored session is refused with ENOENT", async () => {
  // 1. a cold boot: the fake kernel has no manifest
  const luod = startLuod(new FakeKernel());
  const client = await connect(luod);

  // 2. CLAIM: nothing to claim
  const refused = await client.claim("vm-1").then(() => null, (e: unknown) => e);
  expect(refused).toBeInstanceOf(LuoError);
  expect((refused as LuoError).code).toBe("ENOENT");
  expect((refused as LuoError).message).toContain("nothing to claim for vm-1");

  // 3. the connection still serves
  expect(await client.status()).toMatchObject({ reply: "STATUS", ok: true, boot: "cold boot", restored: [] });
});

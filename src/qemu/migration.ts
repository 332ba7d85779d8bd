// Saving and loading a paused guest's device state with QEMU's own migration, RAM left out
// (`x-ignore-shared`: the RAM is a share=on memory backend, so it stays where it is and only the
// device state and QEMU's private RAM blocks — ROMs, video memory — are moved).
//
// Save: QEMU migrates to a unix socket luo-qemu listens on in its run directory, and luo-qemu
// writes the stream into a memfd (QEMU never needs to exec: `-sandbox …,spawn=deny` holds).
// Load: the memfd is QEMU's inherited STATE_FD, read with `migrate-incoming file:/proc/self/fd/4`
// (QEMU 8.2 and later; `fd:4` before: incomingStateUri).
import { createServer, type Server, type Socket } from "node:net";
import { rmSync } from "node:fs";
import { createMemfd, closeFd, writeFull, addSeals, F_SEAL_SEAL, F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_WRITE } from "../client/memfd";
import type { Qmp } from "./qmp";
import { incomingStateUri } from "./vm-config";

/** A device state bigger than this is refused (a VM's is a few MiB; video memory counts). */
export const MAX_STATE_BYTES = 1024 * 1024 * 1024;
const MIGRATION_TIMEOUT_MS = 120_000;

const IGNORE_SHARED = { capabilities: [{ capability: "x-ignore-shared", state: true }] };

export interface SavedState {
  /** A sealed memfd holding the migration stream. */
  fd: number;
  bytes: number;
  /** query-migrate's ram.transferred: what QEMU moved of RAM it did not skip. */
  ramTransferred: number;
}

type MigrateInfo = { status?: string; "error-desc"?: string; ram?: { transferred?: number } };

/** Polls query-migrate until the migration ends; returns the final info or throws its error. */
async function migrationDone(qmp: Qmp, what: string): Promise<MigrateInfo> {
  const until = Date.now() + MIGRATION_TIMEOUT_MS;
  for (;;) {
    const info = await qmp.execute<MigrateInfo>("query-migrate");
    if (info.status === "completed") return info;
    if (info.status === "failed" || info.status === "cancelled")
      throw new Error(`${what} ${info.status}${info["error-desc"] ? `: ${info["error-desc"]}` : ""}`);
    if (Date.now() > until) throw new Error(`${what} did not complete within ${MIGRATION_TIMEOUT_MS / 1000} s (status ${info.status ?? "none"})`);
    await Bun.sleep(10);
  }
}

/**
 * Saves the device state of a guest already stopped (QMP `stop`) into a new sealed memfd named
 * `name`, through a socket at `socketPath`. The guest stays stopped.
 */
export async function saveDeviceState(qmp: Qmp, socketPath: string, name: string): Promise<SavedState> {
  const fd = createMemfd(name);
  rmSync(socketPath, { force: true });
  let server: Server | null = null;
  try {
    let bytes = 0;
    let failure: Error | null = null;
    server = createServer({ allowHalfOpen: false });
    const received = new Promise<void>((resolve, reject) => {
      server!.once("connection", (sock: Socket) => {
        server!.close(); // one stream only
        sock.on("data", (chunk: Buffer) => {
          if (failure) return;
          const at = bytes;
          bytes += chunk.length;
          if (bytes > MAX_STATE_BYTES) {
            failure = new Error(`the device state is over ${MAX_STATE_BYTES} bytes`);
            sock.destroy();
            return reject(failure);
          }
          try {
            writeFull(fd, chunk, at); // pwrite: the file offset stays 0 for whoever reads it next
          } catch (e) {
            failure = e as Error;
            sock.destroy();
            reject(failure);
          }
        });
        sock.once("end", () => resolve());
        sock.once("error", (e) => reject(e));
      });
    });
    received.catch(() => {}); // awaited below; a failure before then must not be an unhandled rejection
    await new Promise<void>((resolve, reject) => {
      server!.once("error", reject);
      server!.listen(socketPath, () => resolve());
    });
    await qmp.execute("migrate-set-capabilities", IGNORE_SHARED);
    await qmp.execute("migrate", { uri: `unix:${socketPath}` });
    const info = await migrationDone(qmp, "saving the device state");
    await Promise.race([received, Bun.sleep(10_000).then(() => Promise.reject(new Error("the device state stream did not end")))]);
    addSeals(fd, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE);
    const moved = info.ram?.transferred;
    return { fd, bytes, ramTransferred: typeof moved === "number" && Number.isSafeInteger(moved) && moved >= 0 ? moved : 0 };
  } catch (e) {
    closeFd(fd);
    throw e;
  } finally {
    server?.close();
    rmSync(socketPath, { force: true });
  }
}

/**
 * Loads the device state QEMU (started with `-incoming defer`) inherited on STATE_FD. Resolves
 * once QEMU left the `inmigrate` state; the guest is then paused (the state was saved from a
 * paused guest), ready for `cont`. A state QEMU cannot load makes QEMU exit ("load of migration
 * failed"): the QMP connection closes and this rejects.
 */
export async function loadDeviceState(qmp: Qmp, qemuVersion: string): Promise<string> {
  await qmp.execute("migrate-set-capabilities", IGNORE_SHARED);
  await qmp.execute("migrate-incoming", { uri: incomingStateUri(qemuVersion) });
  const until = Date.now() + MIGRATION_TIMEOUT_MS;
  for (;;) {
    const { status } = await qmp.execute<{ status: string }>("query-status");
    if (status !== "inmigrate") return status;
    const info = await qmp.execute<MigrateInfo>("query-migrate");
    if (info.status === "failed" || info.status === "cancelled")
      throw new Error(`loading the device state ${info.status}${info["error-desc"] ? `: ${info["error-desc"]}` : ""}`);
    if (Date.now() > until) throw new Error(`loading the device state did not complete within ${MIGRATION_TIMEOUT_MS / 1000} s`);
    await Bun.sleep(10);
  }
}

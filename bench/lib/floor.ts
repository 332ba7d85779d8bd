// The no-broker floor: the same LUO ioctls luod and its clients make, done by one minimal
// program with src/kernel directly — no sockets, no JSON protocol, no second process.
//
// barrier: open /dev/liveupdate, CREATE_SESSION ×N, close it; PRESERVE_FD ×N (of memfds the caller
//          made up front and may reuse across runs, as the bench clients reuse theirs); a
//          manifest-like session: a sealed memfd holding N JSON entries the size of luod's, its
//          own CREATE_SESSION + PRESERVE_FD;
//          sync() (reported apart: luod stamps reboot_called_ms before its sync()).
// restore: RETRIEVE_SESSION + read + FINISH of the manifest session; open the device,
//          RETRIEVE_SESSION ×N, close it; RETRIEVE_FD ×N. FINISH + close afterwards (reported apart).
import { openLiveupdateDevice, createSession, retrieveSession, preserveFd, retrieveFd, finishSession, withLiveupdateDevice } from "../../src/kernel/liveupdate";
import { memfdCreate, addSeals, F_SEAL_SEAL, F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_WRITE } from "../../src/kernel/memfd";
import { closeFd, writeFull, readFull, fileSize } from "../../src/kernel/fd";
import { syncFilesystems } from "../../src/kernel/kexec";
import { makeMemfd, checkStamp, TOKEN } from "./swarm";

export const FLOOR_MANIFEST = "floor";

export interface FloorBarrier {
  n: number;
  sessions_created_ms: number;
  preserved_ms: number;
  manifest_preserved_ms: number;
  sync_ms: number;
  /** Closing every session again (what a dry-run abort does). */
  release_ms: number;
}

export const floorName = (tag: string, i: number) => `floor:${tag}/${i}`;
export const floorId = (i: number) => `f-${i}`;

/** A manifest body of the size luod writes for n clients (same fields, made-up values). */
function manifestLike(names: string[]): Uint8Array {
  const at = new Date().toISOString();
  return new TextEncoder().encode(JSON.stringify({
    format: "luod-manifest", version: 1, luod: "floor", attempt: Date.now(), createdAt: at,
    kernel: { from: "7.2.13", next: { version: "7.2.13", sha256: "0".repeat(64), cmdline: "console=ttyS0 liveupdate=on" } },
    timings: { sessions_created_ms: 0, fds_sent_ms: 0, all_ready_ms: 0, manifest_ms: 0 },
    entries: names.map((s, i) => ({ id: floorId(i), session: s, uid: 0, gid: 0, pid: 1000 + i, unit: null, subscribedAt: at, readyAt: at })),
  }));
}

/**
 * One barrier. With `hold` the sessions stay open (for a real kexec: the restore floor of the next
 * boot) and are returned; otherwise they are closed again (the time for that is release_ms).
 */
export function floorBarrier(memfds: readonly number[], tag: string, hold = false): { result: FloorBarrier; held: number[] } {
  const n = memfds.length;
  const names = Array.from({ length: n }, (_, i) => floorName(tag, i));
  const manifestName = hold ? FLOOR_MANIFEST : `${FLOOR_MANIFEST}:${tag}`;

  const t0 = performance.now();
  const dev = openLiveupdateDevice();
  let sessions: number[];
  try {
    sessions = names.map((name) => createSession(dev, name));
  } finally {
    closeFd(dev);
  }
  const t1 = performance.now();
  for (let i = 0; i < n; i++) preserveFd(sessions[i]!, memfds[i]!, TOKEN);
  const t2 = performance.now();
  const blob = manifestLike(names);
  const mfd = memfdCreate(manifestName);
  writeFull(mfd, blob, 0);
  addSeals(mfd, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
  const manifestSession = withLiveupdateDevice((d) => createSession(d, manifestName));
  preserveFd(manifestSession, mfd, 0n);
  closeFd(mfd);
  const t3 = performance.now();
  syncFilesystems();
  const t4 = performance.now();
  let release = 0;
  if (!hold) {
    const t5 = performance.now();
    for (const fd of sessions) closeFd(fd);
    closeFd(manifestSession);
    release = performance.now() - t5;
  }
  return {
    result: {
      n,
      sessions_created_ms: t1 - t0,
      preserved_ms: t2 - t0,
      manifest_preserved_ms: t3 - t0,
      sync_ms: t4 - t3,
      release_ms: release,
    },
    held: hold ? [...sessions, manifestSession] : [],
  };
}

export interface FloorRestore {
  n: number;
  manifest_read_ms: number;
  sessions_retrieved_ms: number;
  /** Every memfd retrieved: the number to compare with luod's "every client holds its memfd". */
  fds_retrieved_ms: number;
  finish_ms: number;
  verified: number;
}

/**
 * The floor's memfds for n sessions (makeMemfd: every page written), made untimed, like the
 * clients'. The first PRESERVE_FD of a memfd costs more than later ones (its pages may be migrated
 * out of CMA, docs/kernel.md#memfd-preservation), so the sweep reuses one set across its runs, as its clients
 * reuse theirs, and a real kexec makes fresh ones on both sides.
 */
export function floorMemfds(n: number, bytes: number): number[] {
  return Array.from({ length: n }, (_, i) => makeMemfd(floorId(i), bytes));
}

/** After a live-update boot: get back what floorBarrier(…, hold=true) preserved. */
export function floorRestore(): FloorRestore | null {
  const t0 = performance.now();
  let manifestSession: number;
  try {
    manifestSession = withLiveupdateDevice((d) => retrieveSession(d, FLOOR_MANIFEST));
  } catch {
    return null;
  }
  const mfd = retrieveFd(manifestSession, 0n);
  const blob = new Uint8Array(new ArrayBuffer(fileSize(mfd)));
  readFull(mfd, blob, 0);
  closeFd(mfd);
  finishSession(manifestSession);
  closeFd(manifestSession);
  const entries = (JSON.parse(new TextDecoder().decode(blob)) as { entries: { session: string; id: string }[] }).entries;
  const t1 = performance.now();
  const dev = openLiveupdateDevice();
  let sessions: number[];
  try {
    sessions = entries.map((e) => retrieveSession(dev, e.session));
  } finally {
    closeFd(dev);
  }
  const t2 = performance.now();
  const memfds = sessions.map((s) => retrieveFd(s, TOKEN));
  const t3 = performance.now();
  let verified = 0;
  memfds.forEach((fd, i) => {
    if (checkStamp(fd, entries[i]!.id)) verified++;
  });
  const t4 = performance.now();
  for (const s of sessions) {
    finishSession(s);
    closeFd(s);
  }
  for (const fd of memfds) closeFd(fd);
  const t5 = performance.now();
  return {
    n: entries.length,
    manifest_read_ms: t1 - t0,
    sessions_retrieved_ms: t2 - t0,
    fds_retrieved_ms: t3 - t0,
    finish_ms: t5 - t4,
    verified,
  };
}

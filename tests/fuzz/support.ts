// Shared by the fuzz files: the seed (printed, replayable), the fds of every kind a peer can send
// as payload, and the check of luod's log lines.
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { addSeals, F_SEAL_GROW, F_SEAL_SHRINK, F_SEAL_WRITE, memfdCreate } from "../../src/kernel/memfd";
import { openFile, writeFull, O_RDONLY, O_RDWR, O_NONBLOCK, O_CLOEXEC } from "../../src/kernel/fd";
import { socketPair, unixConnect } from "../../src/kernel/unix";
import { closeFd } from "../../src/kernel/fd";
import type { FdKind } from "./generate";
import { RawPeer } from "../integration/raw-peer";
import { openFdCount, type Daemon } from "../support/binary";

/** The seed of a fuzz file: LUO_FUZZ_SEED replays a run; printed by the caller. */
export function fuzzSeed(): number {
  return process.env.LUO_FUZZ_SEED !== undefined ? Number(process.env.LUO_FUZZ_SEED) >>> 0 : (Math.random() * 2 ** 32) >>> 0;
}

const O_DIRECTORY = 0o200000;
const O_PATH = 0o10000000;

export { FD_KINDS, type FdKind } from "./generate";

/** Where the FIFO and the directory live, and luod's socket. */
export interface FdPlace {
  dir: string;
  fifo: string;
  socket: string;
}

export function fdPlace(socket: string, dir = mkdtempSync(join(tmpdir(), "luo-fuzz-fds-"))): FdPlace {
  const fifo = join(dir, "fifo");
  if (!existsSync(fifo)) spawnSync("mkfifo", [fifo]);
  return { dir, fifo, socket };
}

/** Opens one fd of `kind`; the caller closes it (luod must have closed its copy). */
export function makeFd(kind: FdKind, place: FdPlace): number {
  switch (kind) {
    case "luod-socket":
      return unixConnect(place.socket, { nonblock: true });
    case "socketpair": {
      const [a, b] = socketPair({ nonblock: true });
      closeFd(b);
      return a;
    }
    case "dir":
      return openFile(place.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    case "fifo":
      return openFile(place.fifo, O_RDWR | O_NONBLOCK | O_CLOEXEC); // O_RDWR: opens without a reader
    case "opath":
      return openFile(place.fifo, O_PATH | O_CLOEXEC);
    case "memfd": {
      const fd = memfdCreate("luo-fuzz");
      writeFull(fd, new TextEncoder().encode("not a kernel image\n"), 0);
      // sealed, so that a LOAD carrying it gets as far as the image checks (unsealed: EACCES)
      addSeals(fd, F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW);
      return fd;
    }
    case "devnull":
      return openFile("/dev/null", O_RDONLY | O_CLOEXEC);
  }
}

/** A control character luod must never write: C0 except TAB and LF, and DEL. */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f]/;

/**
 * luod's stderr when it is not a terminal: every line starts with exactly one `<N>` (a syslog
 * priority journald reads) and holds no control character. Returns the bad lines, escaped.
 */
export function badLogLines(log: string): string[] {
  const lines = log.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  return lines.filter((l) => !/^<[0-7]>/.test(l) || /^<[0-7]><[0-7]>/.test(l) || CONTROL.test(l)).map((l) => JSON.stringify(l.slice(0, 300)));
}

/** A reason or id with the characters a hostile client would put in it (NUL, ESC, BEL, CR, C1). */
export function evilText(pick: (n: number) => number): string {
  const parts = ["a\u0000b", "\u001b[2J", "\u0007", "\r\n<0>forged", "\u009b31m", "\u007f", "\t", "é", "\u2028"];
  let s = "";
  for (let i = 1 + pick(4); i > 0; i--) s += parts[pick(parts.length)]!;
  return s;
}

/**
 * An admin EVICTs (force) every id LIST shows, so that a round's end does not depend on whether
 * a subscription outlives its connection (issue 14, hole 14: it stays expected until UNSUBSCRIBE
 * or EVICT). Run before a baseline check, once the round's connections are closed. Returns how
 * many ids it evicted.
 */
export async function evictAll(socket: string): Promise<number> {
  const { RawPeer } = await import("../integration/raw-peer");
  const admin = RawPeer.connect(socket);
  try {
    const list = await admin.request({ cmd: "LIST" }, [], 5000);
    const ids = ((list?.clients ?? []) as { id: string }[]).map((c) => c.id);
    for (const id of ids) await admin.request({ cmd: "EVICT", id, force: true, reason: "fuzz round cleanup" }, [], 5000);
    return ids.length;
  } finally {
    admin.close();
  }
}

/**
 * luod's fds and its own account of its connections, taken together while one probe connection
 * is open: STATUS says the probe is the only connection, and the count is read before the probe
 * closes, so a connection luod has not yet seen close (or one it is still closing) never makes
 * the count differ from a baseline taken the same way. Exact, not lucky. On the way out it waits
 * until luod has closed the probe, before anything else connects (a flood counts its refusals).
 */
export async function probeFds(luod: Daemon): Promise<{ fds: number; status: Record<string, unknown> | null }> {
  const p = RawPeer.connect(luod.socket);
  let fds = -1;
  try {
    const status = await p.request({ cmd: "STATUS" }, [], 5000);
    fds = openFdCount(luod.proc.pid);
    return { fds, status };
  } finally {
    p.close();
    const until = Date.now() + 5000;
    while (fds > 0 && openFdCount(luod.proc.pid) >= fds && Date.now() < until) await Bun.sleep(5);
  }
}

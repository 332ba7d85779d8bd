// This process's open fds as (number, what it refers to), so a test can ask "what did I leave
// open?" exactly: fds that another test file's teardown closes meanwhile (an event loop's worker
// thread ends after its file is done) make a plain count differ without any leak here.
import { readdirSync, readlinkSync } from "node:fs";

/** fd number → its /proc target (`socket:[123]`, `/memfd:x (deleted)`, …). */
export function openFds(): Map<number, string> {
  const out = new Map<number, string>();
  for (const name of readdirSync("/proc/self/fd")) {
    try {
      out.set(Number(name), readlinkSync(`/proc/self/fd/${name}`));
    } catch {
      // closed between the readdir and the readlink (the readdir's own fd, or another thread's)
    }
  }
  return out;
}

/** The fds open now that were not open before (same number and target), as "fd → target". */
export function fdsOpenedSince(before: ReadonlyMap<number, string>): string[] {
  const now = openFds();
  return [...now].filter(([fd, target]) => before.get(fd) !== target).map(([fd, target]) => `${fd} → ${target}`);
}

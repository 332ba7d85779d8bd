// What luo-qemu keeps in its run directory (/run/luo-qemu/ID, 0700) so that a luo-qemu started
// again while its QEMU still runs (the old one crashed or was killed) takes that QEMU over instead
// of starting a second guest: qemu.json says which process is QEMU (pid + its start time, so a
// reused pid is never mistaken for it), with what configuration, and whether luo-qemu had paused
// the guest for an update. Versioned like every state file (N reads what N−1 wrote).
import { lstatSync, mkdirSync, readFileSync, readlinkSync, realpathSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as v from "valibot";
import { BinaryIdentitySchema } from "./record";

export const STATE_FORMAT = "luo-qemu-state";
export const STATE_VERSION = 1;

const StateSchema = v.object({
  format: v.literal(STATE_FORMAT),
  version: v.literal(STATE_VERSION),
  id: v.string(),
  pid: v.pipe(v.number(), v.integer(), v.minValue(1)),
  /** /proc/PID/stat's starttime (clock ticks since boot): the pid is QEMU only while it matches. */
  start_time: v.string(),
  /** binary: the file at path when it was probed (record.ts); optional, as in the start record. */
  qemu: v.object({ path: v.string(), version: v.string(), binary: v.optional(BinaryIdentitySchema) }),
  machine: v.object({ type: v.string(), props: v.array(v.string()) }),
  memory_bytes: v.pipe(v.number(), v.integer(), v.minValue(1)),
  args: v.array(v.string()),
  sandbox: v.boolean(),
  /** luo-qemu stopped the guest for an update (saving, or READY): whoever takes over continues it. */
  paused_for_update: v.boolean(),
});

export type QemuState = v.InferOutput<typeof StateSchema>;

export const statePath = (runDir: string) => join(runDir, "qemu.json");

/**
 * Creates the run directory (0700) or checks the one that is there: a directory of this uid that
 * nobody else may write. What is in it decides which process luo-qemu takes over and which socket
 * it trusts as QEMU's monitor, so a directory another user could plant files in is refused.
 * Returns a one-line problem, or null.
 */
export function prepareRunDir(dir: string, uid = process.getuid?.() ?? 0): string | null {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const st = lstatSync(dir);
    if (!st.isDirectory()) return `the run directory ${dir} is not a directory`;
    if (st.uid !== uid) return `the run directory ${dir} belongs to uid ${st.uid}, not to this luo-qemu (uid ${uid})`;
    if ((st.mode & 0o077) !== 0) return `the run directory ${dir} is open to others (mode ${(st.mode & 0o777).toString(8)}; it must be 0700)`;
    return null;
  } catch (e) {
    return `cannot create the run directory ${dir}: ${(e as Error).message}`;
  }
}

/** Writes qemu.json atomically (a reader never sees half of it). */
export function writeQemuState(runDir: string, state: QemuState): void {
  const path = statePath(runDir);
  writeFileSync(`${path}.tmp`, JSON.stringify(state) + "\n", { mode: 0o600 });
  renameSync(`${path}.tmp`, path);
}

/** The starttime field of /proc/PID/stat, or null when there is no such process. */
export function processStartTime(pid: number, proc = "/proc"): string | null {
  let stat: string;
  try {
    stat = readFileSync(`${proc}/${pid}/stat`, "utf8");
  } catch {
    return null;
  }
  // "pid (comm) state ppid …": comm may hold blanks and parentheses; fields restart after the last ")"
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return fields[19] ?? null; // field 22 of proc(5), the 20th after comm
}

/**
 * The QEMU a previous luo-qemu of `id` left running; null when there is none (no state file,
 * another id, a state file that is not ours, a process that is gone or is another process now);
 * `{conflict}` when that very process (pid and start time) runs another binary than the state
 * names, or is named by a state of a newer version (a newer luo-qemu's, which this one cannot
 * read): luo-qemu then starts nothing rather than a second guest.
 */
export function findRunningQemu(runDir: string, id: string, proc = "/proc"): QemuState | { conflict: string } | null {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(statePath(runDir), "utf8"));
  } catch {
    return null;
  }
  const newer = newerStateStillRunning(raw, id, proc);
  if (newer) return { conflict: `${statePath(runDir)} is version ${newer.version}, written by a newer luo-qemu (this one reads version ${STATE_VERSION}), and names process ${newer.pid}, which still runs: use the luo-qemu that wrote it` };
  const r = v.safeParse(StateSchema, raw);
  if (!r.success || r.output.id !== id) return null;
  const { pid, qemu } = r.output;
  if (processStartTime(pid, proc) !== r.output.start_time) return null;
  // the process must run the QEMU binary the state names; " (deleted)": the package was upgraded since
  let exe = "";
  try {
    exe = readlinkSync(`${proc}/${pid}/exe`);
  } catch {
    /* not ours to read: a conflict below */
  }
  let binary = qemu.path;
  try {
    binary = realpathSync(qemu.path);
  } catch {
    /* removed since: only its " (deleted)" form can match */
  }
  if (exe === binary || exe === `${binary} (deleted)` || exe === `${qemu.path} (deleted)`) return r.output;
  return { conflict: `process ${pid}, recorded as this VM's QEMU in ${statePath(runDir)}, runs ${exe === "" ? "a binary luo-qemu cannot see" : exe}, not ${qemu.path}` };
}

/** A state of this id whose version is newer than this luo-qemu reads, and whose process (pid and start time) still runs. */
function newerStateStillRunning(raw: unknown, id: string, proc: string): { version: number; pid: number } | null {
  if (typeof raw !== "object" || raw === null) return null;
  const o = raw as Record<string, unknown>;
  if (o.format !== STATE_FORMAT || typeof o.version !== "number" || o.version <= STATE_VERSION || o.id !== id) return null;
  if (typeof o.pid !== "number" || !Number.isSafeInteger(o.pid) || o.pid < 1 || typeof o.start_time !== "string") return null;
  return processStartTime(o.pid, proc) === o.start_time ? { version: o.version, pid: o.pid } : null;
}

// Small JSON records under luod's state directory (default /run/luod, a tmpfs): what must outlive
// a luod restart within one boot, never across boots. Each record carries the kernel's boot_id,
// so a record left by an earlier boot (a state dir that is not on tmpfs) is ignored.
//
// Each record says the version of its format (`version` next to `bootId`; a record without one is
// version 1, as luod wrote them up to a93c5de). A luod reads its own version and every earlier one,
// and tolerates fields it does not know (a newer luod added them); a record of a newer version is
// set aside like a bad one, never guessed at (docs/protocol.md#compatibility).
//
// Every record is checked against its schema when read. One that cannot be read or does not fit
// (a crash mid-write on a disk that is not tmpfs, a hand edit, a bug) is reported in one warning
// line and set aside as `<name>.json.bad-<time>`: never deleted, never fatal
// (docs/daemon.md#files-under-the-state-dir-default-runluod). Writes go to a fresh temp file
// created exclusively, never through a symlink, then renamed into place.
import { closeSync, constants, fstatSync, lstatSync, openSync, readFileSync, renameSync, mkdirSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import * as v from "valibot";
import { ManifestEntrySchema } from "./manifest";
import { oneLine } from "../wire/errors";
import { isValidId } from "../wire/ids";
import type { Logger } from "./log";

/** A record larger than this is not read (restored.json of 1000 sessions is about 300 KiB). */
export const STATE_FILE_MAX_BYTES = 64 * 1024 * 1024;

const Text = v.string();
const Count = v.pipe(v.number(), v.safeInteger(), v.minValue(0));

/** The schema of each record. Unknown fields are kept: a newer luod may have added some. */
export const STATE_SCHEMAS = {
  attempt: v.looseObject({ last: Count }),
  loaded: v.looseObject({
    version: Text, sha256: Text, cmdline: Text, size: v.number(), initrdSize: v.nullable(v.number()), loadedAt: Text,
  }),
  restored: v.looseObject({
    // the time in either spelling: createdAt, as luod writes it, or created_at (restored.ts)
    previous: v.nullable(v.pipe(
      v.looseObject({ attempt: v.number(), createdAt: v.optional(Text), created_at: v.optional(Text), from: Text, timings: v.record(v.string(), v.number()) }),
      v.check((p) => p.createdAt !== undefined || p.created_at !== undefined, "createdAt is missing"),
    )),
    sessions: v.array(v.looseObject({
      id: Text, session: Text, uid: v.number(), gid: v.number(), unit: v.nullable(Text),
      state: v.picklist(["unclaimed", "claimed", "finished", "discarded"]),
      restoredAt: Text, changedAt: Text, claimedByPid: v.nullable(v.number()),
    })),
  }),
  // the subscriptions luod expects back after a disconnect or a restart (broker.ts, expected.ts)
  subscriptions: v.looseObject({
    version: v.literal(1),
    clients: v.array(v.looseObject({
      // an id becomes a session name: only what SUBSCRIBE accepts
      id: v.pipe(Text, v.check((s: string) => isValidId(s), "not a valid client id")), uid: Count, gid: Count, pid: Count, unit: v.nullable(Text), since: Text,
    })),
  }),
  // what the previous luod recorded about the image it jumped into (abi-gate.ts)
  "running-abi": v.looseObject({
    banner: Text, source: Text,
    abi: v.looseObject({ luo: v.nullable(Text), memfd: v.nullable(Text), kho: v.nullable(Text) }),
  }),
  fdstore: v.looseObject({
    jumpRequested: v.boolean(),
    outgoing: v.array(v.looseObject({ fdname: Text, session: Text, entry: v.nullable(ManifestEntrySchema) })),
  }),
} as const;
export type StateName = keyof typeof STATE_SCHEMAS;

/**
 * The version of each record's format that this luod writes, and the newest it reads. Raise one
 * only for a change of meaning or a removed field (an added field needs none), and keep reading
 * the versions before it.
 */
export const STATE_VERSIONS: Readonly<Record<StateName, number>> = {
  attempt: 1, loaded: 1, restored: 1, subscriptions: 1, "running-abi": 1, fdstore: 1,
};

/** What a read found: a record of this boot, none (absent, or of another boot), or a bad one (set aside). */
export type StateRead<T> = { kind: "ok"; data: T } | { kind: "absent" } | { kind: "invalid"; problem: string };

function currentBootId(): string {
  try {
    return readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
  } catch {
    return "unknown";
  }
}

// version: absent in the records of luod up to a93c5de, which are version 1
const Envelope = v.object({ bootId: v.string(), version: v.optional(v.pipe(v.number(), v.safeInteger(), v.minValue(1)), 1), data: v.unknown() });

export class StateFiles {
  private readonly bootId = currentBootId();
  private tmpSerial = 0;
  constructor(
    readonly dir: string,
    private readonly log: Pick<Logger, "warning"> | null = null,
  ) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  read<T>(name: StateName): T | null {
    const r = this.readChecked<T>(name);
    return r.kind === "ok" ? r.data : null;
  }

  /** Reads and checks a record; a bad one is reported and set aside. */
  readChecked<T>(name: StateName): StateRead<T> {
    const path = this.path(name);
    let text: string;
    try {
      text = readRegular(path);
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code === "ENOENT") return { kind: "absent" };
      return this.setAside(name, code === "ELOOP" ? "it is a symlink" : oneLine((e as Error).message));
    }
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (e) {
      return this.setAside(name, `not JSON (${oneLine((e as Error).message, 120)})`);
    }
    const env = v.safeParse(Envelope, raw);
    if (!env.success) return this.setAside(name, `not a state record (${describe(env.issues)})`);
    if (env.output.bootId !== this.bootId) return { kind: "absent" }; // another boot's: ignored
    if (env.output.version > STATE_VERSIONS[name])
      return this.setAside(name, `it is version ${env.output.version}, newer than this luod reads (${STATE_VERSIONS[name]}): written by a newer luod`);
    const data = v.safeParse(STATE_SCHEMAS[name], env.output.data);
    if (!data.success) return this.setAside(name, describe(data.issues));
    return { kind: "ok", data: data.output as T };
  }

  /** Atomic replace: a fresh temp file (O_EXCL|O_NOFOLLOW), then rename; a crash mid-write leaves the previous record. */
  write<T>(name: StateName, data: T): void {
    const bytes = Buffer.from(JSON.stringify({ bootId: this.bootId, version: STATE_VERSIONS[name], data }));
    const { fd, tmp } = this.createTemp(name);
    try {
      for (let off = 0; off < bytes.length; ) off += writeSync(fd, bytes, off, bytes.length - off);
    } catch (e) {
      closeSync(fd);
      rmSync(tmp, { force: true });
      throw e;
    }
    closeSync(fd);
    renameSync(tmp, this.path(name));
  }

  remove(name: StateName): void {
    rmSync(this.path(name), { force: true });
  }

  private path(name: StateName): string {
    return join(this.dir, `${name}.json`);
  }

  /** A temp file nobody else made: a new name each time, created exclusively, never through a symlink. */
  private createTemp(name: StateName): { fd: number; tmp: string } {
    const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
    for (;;) {
      const tmp = `${this.path(name)}.${process.pid}.${++this.tmpSerial}.tmp`;
      try {
        return { fd: openSync(tmp, flags, 0o600), tmp };
      } catch (e) {
        // something is at that name (left by a crashed luod of the same pid, or planted): next name
        if ((e as { code?: string }).code !== "EEXIST" || this.tmpSerial % 1000 === 0) throw e;
      }
    }
  }

  private setAside(name: StateName, problem: string): StateRead<never> {
    const path = this.path(name);
    const stamp = `${path}.bad-${new Date().toISOString().replace(/[:.]/g, "-")}`;
    let aside = stamp;
    // never over an earlier one, a set-aside symlink included (existsSync follows it: a dangling one looked free)
    for (let i = 2; lexists(aside); i++) aside = `${stamp}-${i}`;
    let where: string;
    try {
      renameSync(path, aside);
      where = `set aside as ${aside}`;
    } catch (e) {
      where = `could not be set aside (${oneLine((e as Error).message)})`;
    }
    this.log?.warning(`state file ${path} is unusable: ${escapeControls(problem)}; ${where}; luod goes on without it`);
    return { kind: "invalid", problem };
  }
}

/** The content of a regular file of luod's that only luod may write, opened without following a symlink or blocking on a FIFO. */
/** Whether a directory entry exists at `path` (a dangling symlink counts). */
function lexists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

function readRegular(path: string): string {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new Error("it is not a regular file");
    // luod writes them 0600 as itself: anything else was not written by luod
    const euid = process.geteuid?.() ?? 0;
    if (st.uid !== euid && st.uid !== 0) throw new Error(`it belongs to uid ${st.uid}, not luod's`);
    if ((st.mode & 0o022) !== 0) throw new Error(`it is writable by group or others (mode 0${(st.mode & 0o777).toString(8)})`);
    if (st.size > STATE_FILE_MAX_BYTES) throw new Error(`it is ${st.size} bytes, more than ${STATE_FILE_MAX_BYTES}`);
    return readFileSync(fd, "utf8");
  } finally {
    closeSync(fd);
  }
}

/** The first issue of a failed check, e.g. `data.sessions.0.uid: Invalid type: Expected number but received "x"`. */
function describe(issues: readonly v.BaseIssue<unknown>[]): string {
  const issue = issues[0]!;
  const at = v.getDotPath(issue);
  return oneLine(`${at ? `${at}: ` : ""}${issue.message}`, 200);
}

/** Control characters as \xNN: a problem may quote the file's bytes, and a log line must stay one plain line. */
export function escapeControls(text: string): string {
  return text.replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}

/**
 * A state file rewritten whole after changes, at most once per `intervalMs` (the first change
 * after a quiet spell is written on the next turn): a burst of 1000 changes is a few writes, not
 * 1000 (each rewrites the whole file: quadratic). A failed write is reported, never thrown: a full
 * or vanished state dir must not take luod down. A luod killed before a pending write leaves the
 * file one step behind.
 */
export class ThrottledWrite {
  private timer: ReturnType<typeof setTimeout> | null = null;
  private lastWriteAt = 0;

  constructor(
    private readonly intervalMs: number,
    private readonly write: () => void,
    private readonly onError: (e: Error) => void,
  ) {}

  /** A write is scheduled and not yet done. */
  get pending(): boolean {
    return this.timer !== null;
  }

  schedule(): void {
    if (this.timer !== null) return;
    const wait = Math.max(0, this.lastWriteAt + this.intervalMs - Date.now());
    this.timer = setTimeout(() => {
      try {
        this.writeNow();
      } catch (e) {
        this.onError(e as Error);
      }
    }, wait);
  }

  /** Writes now (the scheduled write, if any, is done by this one); a failure throws. */
  writeNow(): void {
    this.cancel();
    this.lastWriteAt = Date.now();
    this.write();
  }

  /** Drops a scheduled write. */
  cancel(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }
}

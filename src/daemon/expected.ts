// The subscriptions luod expects: a subscription outlives its connection and a luod restart
// within one boot, until UNSUBSCRIBE or EVICT, so that an update never leaves a tenant behind
// silently (a supervisor restarting, or a luod restarted before its clients reconnected).
// Mirrored to `<state-dir>/subscriptions.json` (docs/daemon.md#files-under-the-state-dir-default-runluod).
import type { StateFiles } from "./state-files";
import type { Logger } from "./log";

/** One expected client as the state file keeps it. */
export interface ExpectedEntry {
  id: string;
  uid: number;
  gid: number;
  /** The pid of its last connection (LIST shows it). */
  pid: number;
  unit: string | null;
  /** ISO 8601: when it first subscribed. */
  since: string;
}

export interface SubscriptionsFile {
  version: 1;
  clients: ExpectedEntry[];
}

/** Rewritten whole; under a burst of SUBSCRIBEs, at most this often (the first change of a quiet spell on the next turn). */
export const EXPECTED_SAVE_INTERVAL_MS = 100;

export class ExpectedRecord {
  private saveTimer: ReturnType<typeof setTimeout> | null = null;
  private lastWriteAt = 0;

  constructor(
    private readonly files: StateFiles,
    private readonly log: Logger,
    private readonly current: () => ExpectedEntry[],
  ) {}

  /** The record of this boot (a bad one is set aside by StateFiles and counts as none). */
  load(): ExpectedEntry[] {
    return this.files.read<SubscriptionsFile>("subscriptions")?.clients ?? [];
  }

  /** Schedules a write: a burst of 1000 SUBSCRIBEs writes the file a few times, not 1000. */
  save(): void {
    if (this.saveTimer !== null) return;
    const wait = Math.max(0, this.lastWriteAt + EXPECTED_SAVE_INTERVAL_MS - Date.now());
    this.saveTimer = setTimeout(() => {
      try {
        this.flush();
      } catch (e) {
        // a full or vanished state dir must not take luod down
        this.log.error(`writing the subscription record: ${(e as Error).message}`);
      }
    }, wait);
  }

  /** Writes the file now (at shutdown, and by tests). */
  flush(): void {
    if (this.saveTimer !== null) clearTimeout(this.saveTimer);
    this.saveTimer = null;
    this.lastWriteAt = Date.now();
    this.files.write<SubscriptionsFile>("subscriptions", { version: 1, clients: this.current() });
  }

  /** Stops a pending write (shutdown writes with flush() first). */
  cancel(): void {
    if (this.saveTimer !== null) clearTimeout(this.saveTimer);
    this.saveTimer = null;
  }
}

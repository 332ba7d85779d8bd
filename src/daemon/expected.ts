// The subscriptions luod expects: a subscription outlives its connection and a luod restart
// within one boot, until UNSUBSCRIBE or EVICT, so that an update never leaves a tenant behind
// silently (a supervisor restarting, or a luod restarted before its clients reconnected).
// Mirrored to `<state-dir>/subscriptions.json` (docs/daemon.md#files-under-the-state-dir-default-runluod).
import { ThrottledWrite, type StateFiles } from "./state-files";
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
  private readonly writer: ThrottledWrite;

  constructor(
    private readonly files: StateFiles,
    log: Logger,
    private readonly current: () => ExpectedEntry[],
  ) {
    this.writer = new ThrottledWrite(
      EXPECTED_SAVE_INTERVAL_MS,
      () => this.files.write<SubscriptionsFile>("subscriptions", { version: 1, clients: this.current() }),
      (e) => log.error(`writing the subscription record: ${e.message}`),
    );
  }

  /** The record of this boot (a bad one is set aside by StateFiles and counts as none). */
  load(): ExpectedEntry[] {
    return this.files.read<SubscriptionsFile>("subscriptions")?.clients ?? [];
  }

  /** Schedules a write: a burst of 1000 SUBSCRIBEs writes the file a few times, not 1000. */
  save(): void {
    this.writer.schedule();
  }

  /** Writes the file now (at shutdown, and by tests). */
  flush(): void {
    this.writer.writeNow();
  }

  /** Stops a pending write (shutdown writes with flush() first). */
  cancel(): void {
    this.writer.cancel();
  }
}

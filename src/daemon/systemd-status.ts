// The STATUS= line systemd shows for luod (`systemctl status luod`): what it is doing, refreshed
// once a second by systemd-handoff.ts, sent only when it changed.
import type { Logger } from "./log";
import type { SystemdOps } from "./service-manager";
import type { Broker, NextKernel } from "./broker";
import type { RestoredSession } from "./restored";

export class StatusNotifier {
  private last = "";
  /** `enabled`: $NOTIFY_SOCKET is set. */
  constructor(
    private readonly ops: Pick<SystemdOps, "notify">,
    private readonly log: Logger,
    private readonly enabled: boolean,
  ) {}

  /** STATUS=line, unless it is the line sent last; a failure is a warning. */
  set(line: string): void {
    if (line === this.last || !this.enabled) return;
    this.last = line;
    try {
      this.ops.notify(`STATUS=${line}`);
    } catch (e) {
      this.log.warning(`sd_notify STATUS: ${(e as Error).message}`);
    }
  }

  /** Someone else sent a STATUS= (main.ts, with READY=1): the next set() sends even an unchanged line. */
  forget(): void {
    this.last = "";
  }
}

/** What the STATUS= line reads (systemd-handoff.ts's DaemonParts has it). */
export interface StatusSources {
  broker: Pick<Broker, "summary">;
  restored: { list(): RestoredSession[] };
  loader: { loaded(): NextKernel | null };
  boot: { kind: string };
}

/** The STATUS= line while luod is not jumping. */
export function statusLine(mode: string, parts: StatusSources, counts: { incoming: number; staged: number; carried: number }): string {
  const s = parts.broker.summary();
  const u = s.update;
  const store = counts.staged + counts.carried ? `; ${counts.staged + counts.carried} session(s) in the fd store` : "";
  if (u && s.phase === "preparing") return `update ${u.attempt}${u.dry_run ? " (dry run)" : ""}: ${u.ready}/${u.total} client(s) READY${store}`;
  if (u) return `update ${u.attempt}${u.dry_run ? " (dry run)" : ""}: all ${u.total} client(s) READY, committing${store}`;
  const unclaimed = parts.restored.list().filter((r) => r.state === "unclaimed").length;
  const k = parts.loader.loaded();
  return (
    `idle, ${mode} mode, ${parts.boot.kind}: ${s.clients.subscribed} client(s) subscribed, ${unclaimed} restored session(s) to claim` +
    `${counts.carried ? `, ${counts.carried} carried session(s)` : ""}, ${k ? `next kernel ${k.version.split(" ")[0]} loaded` : "no kernel loaded"}`
  );
}

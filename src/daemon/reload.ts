// SIGHUP: luod reads its config file again (with the same command-line flags on top) and applies
// what can change while it runs; what cannot is named in the log, for the next restart. A bad
// config keeps the old settings (an error line, never an exit). During an update the reload waits
// until the update has ended: nothing about the running update changes under it.
// (docs/daemon.md, "Reloading the configuration"; docs/systemd.md for ExecReload=.)
import type { DaemonConfig } from "./config";
import type { Logger } from "./log";
import { oneLine } from "../wire/errors";


/** Settings a running luod takes over at a reload, by their config-file names. */
const RELOADABLE = {
  adminGid: "admin-group",
  clientGid: "client-group",
  maxConnections: "max-connections",
  maxConnectionsPerUid: "max-connections-per-uid",
  firstRequestTimeoutMs: "first-request-timeout",
  commitDelayMs: "commit-delay",
  verbose: "verbose",
} as const satisfies Partial<Record<keyof DaemonConfig, string>>;

/** Settings that only a restart changes (the socket is bound, the state dir and device in use). */
const RESTART_ONLY = {
  socket: "socket",
  stateDir: "state-dir",
  device: "device",
  socketGid: "socket-group",
  socketMode: "socket-mode",
  kexecMode: "kexec-mode",
  runningImage: "running-image",
  metricsFile: "metrics-file",
} as const satisfies Partial<Record<keyof DaemonConfig, string>>;

export type ReloadableSettings = Pick<DaemonConfig, keyof typeof RELOADABLE>;

function show(key: keyof DaemonConfig, v: unknown): string {
  if (v === null || v === undefined) return key === "adminGid" || key === "clientGid" || key === "socketGid" ? "none (root only)" : key === "metricsFile" ? "none" : "default";
  if (key === "socketMode" && typeof v === "number") return `0${v.toString(8)}`;
  if (key === "firstRequestTimeoutMs" || key === "commitDelayMs") return `${v as number} ms`;
  return String(v);
}

/** What differs between two configs: the changes a reload applies, and those it cannot. */
export function configChanges(from: DaemonConfig, to: DaemonConfig): { applied: string[]; needRestart: string[] } {
  const diff = (names: Record<string, string>) =>
    Object.entries(names)
      .filter(([k]) => from[k as keyof DaemonConfig] !== to[k as keyof DaemonConfig])
      .map(([k, name]) => `${name} ${show(k as keyof DaemonConfig, from[k as keyof DaemonConfig])} → ${show(k as keyof DaemonConfig, to[k as keyof DaemonConfig])}`);
  return { applied: diff(RELOADABLE), needRestart: diff(RESTART_ONLY) };
}

export interface ReloaderOptions {
  /** The config luod runs with; updated by each reload with the parts it applied. */
  current: DaemonConfig;
  /** Reads the config file again and merges the flags (throws a one-line error when it is bad). */
  read: () => DaemonConfig;
  /** Takes over the reloadable settings. */
  apply: (next: ReloadableSettings) => void;
  /** An update is running: the reload waits. */
  busy: () => boolean;
  log: Logger;
  /** sd_notify: RELOADING=1 before, READY=1 after (Type=notify-reload, or any notify service). */
  notify: (state: string) => void;
  /** How often a reload waiting for an update checks again (ms). */
  pollMs?: number;
}

export class Reloader {
  private waiting: ReturnType<typeof setInterval> | null = null;

  constructor(private readonly o: ReloaderOptions) {}

  /** SIGHUP. */
  request(): void {
    if (this.o.busy()) {
      if (this.waiting) return; // one reload after the update covers every SIGHUP meanwhile
      this.o.log.notice("SIGHUP during an update: the config file is reloaded once the update has ended");
      this.waiting = setInterval(() => {
        if (this.o.busy()) return;
        this.cancel();
        this.reload();
      }, this.o.pollMs ?? 200);
      return;
    }
    this.reload();
  }

  cancel(): void {
    if (this.waiting) clearInterval(this.waiting);
    this.waiting = null;
  }

  private reload(): void {
    const { log } = this.o;
    this.o.notify(`RELOADING=1\nMONOTONIC_USEC=${process.hrtime.bigint() / 1000n}`);
    try {
      let next: DaemonConfig;
      try {
        next = this.o.read();
      } catch (e) {
        log.error(`SIGHUP: the config is not reloaded, luod keeps its settings: ${oneLine((e as Error).message)}`);
        return;
      }
      const { applied, needRestart } = configChanges(this.o.current, next);
      const taken: ReloadableSettings = {
        adminGid: next.adminGid, clientGid: next.clientGid, maxConnections: next.maxConnections, maxConnectionsPerUid: next.maxConnectionsPerUid,
        firstRequestTimeoutMs: next.firstRequestTimeoutMs, commitDelayMs: next.commitDelayMs, verbose: next.verbose,
      };
      this.o.apply(taken);
      Object.assign(this.o.current, taken);
      const parts = [applied.length ? `changed: ${applied.join(", ")}` : "nothing to change"];
      if (needRestart.length) parts.push(`needs a restart to change (kept as they are): ${needRestart.join(", ")}`);
      log.notice(`SIGHUP: config reloaded; ${parts.join("; ")}`);
    } finally {
      this.o.notify("READY=1");
    }
  }
}

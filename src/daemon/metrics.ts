// luod's metrics in Prometheus's text format, for node_exporter's textfile collector
// (docs/daemon.md, "Metrics"): what luod counts (updates, requests), the state it reports (phase,
// clients, restored sessions, connections) and the formatting. Pure: metrics-file.ts writes the
// text, main.ts wires both. Every label value comes from a fixed set (a phase, an abort reason, a
// command), never from a client: the series stay few and a client cannot write into the file.
import type { AbortReason, Phase, UpdateEvent } from "./update";
import { ABORT_REASONS } from "./update";
import type { RestoredSession, RestoredState } from "./restored";
import { COMMANDS, isCommand, type Command } from "../wire/requests";
import type { RequestObserver } from "./peers";

export type MetricType = "gauge" | "counter";

export interface MetricSample {
  labels?: Readonly<Record<string, string>>;
  value: number;
}

/** One metric: its HELP and TYPE lines and its samples (none: not known yet, the lines alone). */
export interface MetricFamily {
  name: string;
  type: MetricType;
  help: string;
  samples: readonly MetricSample[];
}

/** The phases a metrics file shows: luod's, and "stopped", its last word at a clean stop. */
export type MetricsPhase = Phase | "stopped";
const PHASES = Object.keys({ idle: 0, preparing: 0, committing: 0, stopped: 0 } satisfies Record<MetricsPhase, 0>) as MetricsPhase[];
const RESTORED_STATES = Object.keys({ unclaimed: 0, claimed: 0, finished: 0, discarded: 0 } satisfies Record<RestoredState, 0>) as RestoredState[];
/** The `request` label of an invalid request whose command is not one luod knows (or absent). */
const UNKNOWN_REQUEST = "unknown";

/** What luod is now, read from its parts when the file is written (main.ts). */
export interface MetricsState {
  phase: MetricsPhase;
  clients: { subscribed: number; disconnected: number; prepared: number; ready: number };
  restored: readonly Pick<RestoredSession, "state" | "restoredAt" | "changedAt">[];
  /** The update that brought this boot (the manifest's record), if it was a live-update boot. */
  previous: { timings: Readonly<Record<string, number>> } | null;
  connections: { open: number; accepted: number; refused: number };
}

/**
 * The counters luod keeps for its metrics: updates by outcome and requests by command. They live
 * as long as this luod (a restart starts them at 0, which Prometheus's rate() and increase() take
 * as a counter reset). `onChange` is told of every change; `urgent` when the phase changed.
 */
export class LuodMetrics implements RequestObserver {
  private started = 0;
  private completed = 0;
  private readonly aborted = zeroes<AbortReason>(ABORT_REASONS);
  private lastBarrierMs: number | null = null;
  private readonly received_ = zeroes<Command>(COMMANDS);
  private readonly refused_ = zeroes<Command>(COMMANDS);
  private readonly invalid_ = zeroes<Command | typeof UNKNOWN_REQUEST>([...COMMANDS, UNKNOWN_REQUEST]);
  onChange: (urgent: boolean) => void = () => {};

  constructor(private readonly build: { version: string; startedAtMs: number }) {}

  /** An update's step (update.ts's onEvent): each one is a phase change. */
  update(e: UpdateEvent): void {
    switch (e.kind) {
      case "started": this.started++; break;
      case "all-ready": this.lastBarrierMs = e.barrierMs; break;
      case "completed": this.completed++; break;
      case "aborted": this.aborted.set(e.reason, this.aborted.get(e.reason)! + 1); break;
    }
    this.onChange(true);
  }

  received(cmd: Command): void {
    bump(this.received_, cmd);
    this.onChange(false);
  }

  refused(cmd: Command): void {
    bump(this.refused_, cmd);
    this.onChange(false);
  }

  /** `cmd` is whatever the line said: only a known command becomes a label. */
  invalid(cmd: unknown): void {
    bump(this.invalid_, isCommand(cmd) ? cmd : UNKNOWN_REQUEST);
    this.onChange(false);
  }

  /** Connections, subscriptions, restored sessions: read from `MetricsState` when written. */
  changed(): void {
    this.onChange(false);
  }

  families(s: MetricsState): MetricFamily[] {
    const ms = (v: number | null | undefined): MetricSample[] => (v === null || v === undefined || !Number.isFinite(v) ? [] : [{ value: v / 1000 }]);
    const oldest = timeRange(s.restored.filter((r) => r.state === "unclaimed").map((r) => r.restoredAt))?.first;
    return [
      gauge("luod_build_info", "luod's version; always 1.", [{ labels: { version: this.build.version }, value: 1 }]),
      gauge("luod_start_time_seconds", "When this luod started, in seconds since the Unix epoch.", [{ value: this.build.startedAtMs / 1000 }]),
      gauge("luod_phase", 'The update phase: 1 for the current one, 0 for the others; "stopped": the last write of a luod that stopped cleanly.',
        PHASES.map((p) => ({ labels: { phase: p }, value: p === s.phase ? 1 : 0 }))),
      gauge("luod_clients_subscribed", "Subscribed clients, connected or expected back.", [{ value: s.clients.subscribed }]),
      gauge("luod_clients_disconnected", "Subscribed clients that are not connected: KEXEC is refused until they are back (or --force).", [{ value: s.clients.disconnected }]),
      gauge("luod_clients_prepared", "Clients with a session taken ahead with PREPARE.", [{ value: s.clients.prepared }]),
      gauge("luod_clients_ready", "Clients that answered READY in the running update.", [{ value: s.clients.ready }]),
      counter("luod_updates_started_total", "Updates started (KEXEC accepted, dry runs included).", [{ value: this.started }]),
      counter("luod_updates_completed_total", "Updates completed: dry runs finished, and jumps handed to systemd (a direct jump that works is never counted: the host is in the next kernel).", [{ value: this.completed }]),
      counter("luod_updates_aborted_total", "Updates aborted, by reason.", ABORT_REASONS.map((r) => ({ labels: { reason: r }, value: this.aborted.get(r)! }))),
      gauge("luod_last_barrier_duration_seconds", "From KEXEC to every client READY, in the last update that got there (after a live-update boot: the update that brought it).",
        ms(this.lastBarrierMs ?? s.previous?.timings.all_ready_ms)),
      gauge("luod_last_restore_duration_seconds", "From the sessions' return after the boot to the last one finished or discarded; absent while one is unclaimed or claimed.",
        ms(restoreDurationMs(s.restored))),
      gauge("luod_restored_sessions", "Sessions that came back from the previous kernel, by state.",
        RESTORED_STATES.map((st) => ({ labels: { state: st }, value: s.restored.filter((r) => r.state === st).length }))),
      gauge("luod_restored_oldest_unclaimed_timestamp_seconds", "When the oldest unclaimed restored session came back, in seconds since the Unix epoch; absent when none is unclaimed.",
        ms(oldest)),
      counter("luod_requests_total", "Well-formed requests received, by command.", samples("request", this.received_)),
      counter("luod_requests_refused_total", "Well-formed requests answered with an error (permission, state, kernel), by command.", samples("request", this.refused_)),
      counter("luod_requests_invalid_total", 'Requests that were not well-formed, by command ("unknown": none luod knows).', samples("request", this.invalid_)),
      counter("luod_connections_accepted_total", "Connections accepted.", [{ value: s.connections.accepted }]),
      counter("luod_connections_refused_total", "Connections closed at accept: over a connection limit, or credentials unreadable.", [{ value: s.connections.refused }]),
      gauge("luod_connections_open", "Connections open now.", [{ value: s.connections.open }]),
    ];
  }
}

/**
 * The restore's duration: from the sessions' return (restoredAt, the same for all) to the last
 * one finished or discarded (its changedAt). null while any is unclaimed or claimed, or none came.
 */
export function restoreDurationMs(sessions: MetricsState["restored"]): number | null {
  if (!sessions.length || sessions.some((s) => s.state === "unclaimed" || s.state === "claimed")) return null;
  const start = timeRange(sessions.map((s) => s.restoredAt));
  const end = timeRange(sessions.map((s) => s.changedAt));
  return start && end ? Math.max(0, end.last - start.first) : null;
}

/** The earliest and the latest of ISO times, in ms; null if none parses. */
function timeRange(times: readonly string[]): { first: number; last: number } | null {
  let r: { first: number; last: number } | null = null;
  for (const t of times) {
    const ms = Date.parse(t);
    if (!Number.isFinite(ms)) continue;
    r = r ? { first: Math.min(r.first, ms), last: Math.max(r.last, ms) } : { first: ms, last: ms };
  }
  return r;
}

/** The text exposition format: HELP and TYPE for every metric, then its samples. */
export function formatMetrics(families: readonly MetricFamily[]): string {
  const lines: string[] = [];
  for (const f of families) {
    lines.push(`# HELP ${f.name} ${escapeHelp(f.help)}`, `# TYPE ${f.name} ${f.type}`);
    for (const s of f.samples) {
      const labels = Object.entries(s.labels ?? {}).map(([k, v]) => `${k}="${escapeLabelValue(v)}"`);
      lines.push(`${f.name}${labels.length ? `{${labels.join(",")}}` : ""} ${formatValue(s.value)}`);
    }
  }
  return lines.join("\n") + "\n";
}

/** A label value: backslash, double quote and line feed escaped (the format's three). */
export function escapeLabelValue(v: string): string {
  return v.replace(/[\\"\n]/g, (c) => (c === "\n" ? "\\n" : `\\${c}`));
}

/** HELP text: backslash and line feed escaped. */
export function escapeHelp(v: string): string {
  return v.replace(/[\\\n]/g, (c) => (c === "\n" ? "\\n" : "\\\\"));
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (!Number.isFinite(v)) return v > 0 ? "+Inf" : "-Inf";
  return String(v);
}

const gauge = (name: string, help: string, samples: MetricSample[]): MetricFamily => ({ name, type: "gauge", help, samples });
const counter = (name: string, help: string, samples: MetricSample[]): MetricFamily => ({ name, type: "counter", help, samples });

function zeroes<K extends string>(keys: readonly K[]): Map<K, number> {
  return new Map(keys.map((k) => [k, 0]));
}

function bump<K>(m: Map<K, number>, k: K): void {
  m.set(k, (m.get(k) ?? 0) + 1);
}

function samples(label: string, m: ReadonlyMap<string, number>): MetricSample[] {
  return [...m].map(([k, value]) => ({ labels: { [label]: k }, value }));
}

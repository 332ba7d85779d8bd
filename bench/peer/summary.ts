// The peer benchmark's arithmetic (bench/peer.ts): from the guest's per-step JSON (bench/peer/peer-job.sh)
// to one row per step and kind, times from the new kernel's start of userspace (PID 1's
// UserspaceTimestampMonotonic) on CLOCK_MONOTONIC, which every service of one boot shares.

/** One service's report, as peer-job.sh writes it from luo-peer-client's result file. */
export interface PeerClient {
  kind: "fdstore" | "luod";
  id: string;
  held_ns: number;
  verified_ns: number;
  bytes: number;
  ok: boolean;
}

/** One step of PEER_PLAN, measured in the boot after its kexec. */
export interface PeerStep {
  step: string;
  n: number;
  mib: number;
  /** what luod's STATUS= said when the step was measured: "" while luod had not reported yet */
  luod_mode: string;
  /** the mode /etc/luod.conf asked for (absent in runs of 51b76ac) */
  kexec_mode?: string;
  userspace_us: number;
  luod_start_us: number;
  luod_ready_us: number;
  expected: number;
  /** when systemd started each service's process, by "<kind>-<id>" */
  started_us?: Record<string, number>;
  clients: PeerClient[];
}

export interface PeerRow {
  step: string;
  mode: string;
  n: number;
  kind: "fdstore" | "luod";
  /** services that reported, and how many of them found their memfd intact */
  got: number;
  intact: number;
  /** the last of the N services' processes started by systemd (null: not recorded) */
  last_started_ms: number | null;
  first_held_ms: number;
  median_held_ms: number;
  /** the moment the last of the N holds its memfd: the number the target compares */
  all_held_ms: number;
  all_verified_ms: number;
  /** luod's process start and its READY=1, same origin (null in a step without luod clients) */
  luod_start_ms: number | null;
  luod_ready_ms: number | null;
}

const r1 = (x: number) => Math.round(x * 10) / 10;

export function rows(steps: PeerStep[]): PeerRow[] {
  const out: PeerRow[] = [];
  for (const s of steps) {
    const origin = s.userspace_us / 1e3;
    for (const kind of ["fdstore", "luod"] as const) {
      const cs = s.clients.filter((c) => c.kind === kind);
      if (cs.length === 0) continue;
      const held = cs.map((c) => c.held_ns / 1e6 - origin).sort((a, b) => a - b);
      const verified = cs.map((c) => c.verified_ns / 1e6 - origin);
      const started = cs.map((c) => s.started_us?.[`${kind}-${c.id}`]).filter((t): t is number => t !== undefined);
      out.push({
        step: s.step,
        mode: s.luod_mode.replace(/ mode$/, "") || s.kexec_mode || "–",
        n: s.n,
        kind,
        got: cs.length,
        intact: cs.filter((c) => c.ok).length,
        last_started_ms: started.length === cs.length ? r1(Math.max(...started) / 1e3 - origin) : null,
        first_held_ms: r1(held[0]!),
        median_held_ms: r1(held[Math.floor(held.length / 2)]!),
        all_held_ms: r1(held[held.length - 1]!),
        all_verified_ms: r1(Math.max(...verified)),
        luod_start_ms: kind === "luod" ? r1(s.luod_start_us / 1e3 - origin) : null,
        luod_ready_ms: kind === "luod" ? r1(s.luod_ready_us / 1e3 - origin) : null,
      });
    }
  }
  return out;
}

/**
 * luod's N against systemd's N at the same N: in a systemd-mode step both rode the same kexec; for a
 * direct-mode step (no fd store crosses its jump) the peer is the fd-store-only step of the same N.
 */
export interface PeerRatio {
  n: number;
  mode: string;
  luod_step: string;
  peer_step: string;
  luod_all_held_ms: number;
  peer_all_held_ms: number;
  ratio: number;
}

export function ratios(rs: PeerRow[]): PeerRatio[] {
  const out: PeerRatio[] = [];
  for (const l of rs.filter((r) => r.kind === "luod")) {
    const peer =
      rs.find((r) => r.kind === "fdstore" && r.step === l.step) ??
      rs.find((r) => r.kind === "fdstore" && r.n === l.n && r.step.startsWith("p"));
    if (!peer) continue;
    out.push({
      n: l.n,
      mode: l.mode,
      luod_step: l.step,
      peer_step: peer.step,
      luod_all_held_ms: l.all_held_ms,
      peer_all_held_ms: peer.all_held_ms,
      ratio: Math.round((l.all_held_ms / peer.all_held_ms) * 100) / 100,
    });
  }
  return out;
}

export function markdown(steps: PeerStep[]): string {
  const rs = rows(steps);
  const out = [
    "| step | luod mode | N | kind | intact | luod started | luod ready | all N started | first holds | median | all N hold | all N verified |",
    "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
  ];
  const ms = (x: number | null) => (x === null ? "–" : `${x} ms`);
  for (const r of rs)
    out.push(
      `| ${r.step} | ${r.mode} | ${r.n} | ${r.kind} | ${r.intact}/${r.got} | ${ms(r.luod_start_ms)} | ${ms(r.luod_ready_ms)} | ` +
        `${ms(r.last_started_ms)} | ${ms(r.first_held_ms)} | ${ms(r.median_held_ms)} | ${ms(r.all_held_ms)} | ${ms(r.all_verified_ms)} |`,
    );
  out.push("", "| N | luod mode | luod's N all hold | systemd's N all hold | ratio (target ≤ 1.10 at N = 100) |", "|---:|---|---:|---:|---:|");
  for (const q of ratios(rs))
    out.push(
      `| ${q.n} | ${q.mode} | ${q.luod_all_held_ms} ms (${q.luod_step}) | ${q.peer_all_held_ms} ms (${q.peer_step}) | ${q.ratio.toFixed(2)}× |`,
    );
  return out.join("\n");
}

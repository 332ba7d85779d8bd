// The tenant's blackout (bench/blackout.ts): turns the console of a blackout run (its lines carry
// the harness's host timestamps, scripts/vm/run-vm.sh) and luod's status after each boot into each
// VM's downtime, QMP stop → cont, split into phases on one clock: the host's.
//
// Why the host's: each boot's wall clock starts from the RTC's second, so a phase that spans the
// kexec, measured with the guest's wall clock, is off by up to a second. The job prints the guest's
// wall clock and boot clock together a few times per boot (BLACKOUT: CLOCK); the host timestamp of
// such a line minus the guest time in it, at its smallest (the console only delays a line), maps
// that boot's clocks onto the host's. Within a boot the mapping changes nothing; across the kexec
// it replaces the RTC's second by the console's delay, which is the same in both boots.

export type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** luo-qemu's "resumed: blackout" line, its phases in ms (it prints them in 10 ms steps). */
export interface LuoQemuBlackout {
  total: number;
  pause_save: number;
  barrier: number;
  kernel_jump: number;
  kernel_to_luoqemu: number;
  luoqemu_to_claimed: number;
  /** of luoqemu_to_claimed, the round trips to luod (null from a luo-qemu that does not print them) */
  subscribe: number | null;
  claim: number | null;
  claimed_to_qemu: number;
  qemu_to_loaded: number;
  loaded_to_cont: number;
}

const SECONDS = (name: string) => `${name} (-?\\d+\\.\\d+) s`;
const LINE = new RegExp(
  [
    SECONDS("resumed: blackout"), SECONDS(" = pause \\+ state save"), SECONDS(", barrier \\(READY → luod's commit\\)"),
    SECONDS(", kernel jump \\(commit → new kernel\\)"), SECONDS(", kernel start → luo-qemu start"), SECONDS(", luo-qemu start → CLAIMED"),
    "(?: \\(of it connect \\+ SUBSCRIBE (\\d+\\.\\d+) s, CLAIM (\\d+\\.\\d+) s\\))?", SECONDS(", → QEMU start"), SECONDS(", QEMU start → incoming done"), SECONDS(", → cont"),
  ].join(""),
);

export function parseLuoQemuBlackout(line: string): LuoQemuBlackout | null {
  const m = LINE.exec(line);
  if (!m) return null;
  const [total, pause_save, barrier, kernel_jump, kernel_to_luoqemu, luoqemu_to_claimed, subscribe, claim, claimed_to_qemu, qemu_to_loaded, loaded_to_cont] = m
    .slice(1)
    .map((s) => (s === undefined ? null : Math.round(Number(s) * 1000)));
  return {
    total: total!, pause_save: pause_save!, barrier: barrier!, kernel_jump: kernel_jump!, kernel_to_luoqemu: kernel_to_luoqemu!,
    luoqemu_to_claimed: luoqemu_to_claimed!, subscribe: subscribe ?? null, claim: claim ?? null, claimed_to_qemu: claimed_to_qemu!, qemu_to_loaded: qemu_to_loaded!, loaded_to_cont: loaded_to_cont!,
  };
}

/** What one boot printed, its times in ms: host = the console's timestamp (since QEMU started). */
export interface Boot {
  boot: number;
  /** host − guest wall clock, and host − guest boot clock (smallest over the CLOCK samples). */
  wall_to_host: number | null;
  uptime_to_host: number | null;
  /** The kernel's "Run /init" (its own timestamp: boot clock) and "Starting new kernel" (host). */
  init_uptime: number | null;
  kexec_host: number | null;
  /** luoctl kexec --json's REBOOTING event in this boot, if the console got it out before the jump. */
  rebooting: Json | null;
  /** BLACKOUT: MARK NAME → boot clock. */
  marks: Record<string, number>;
  /** VM number → luo-qemu's blackout line. */
  vms: Record<number, LuoQemuBlackout>;
  checks: string[];
}

/** Splits the console (run-vm.sh's "[ host s] line") into boots, at each kernel's "Linux version". */
export function parseConsole(serial: string): Boot[] {
  const boots: Boot[] = [];
  let b: Boot | null = null;
  const clock: { host: number; wall: number; up: number }[][] = [];
  for (const raw of serial.split("\n")) {
    const m = /^\[\s*(\d+\.\d+)\] (.*)$/.exec(raw);
    if (!m) continue;
    const host = Math.round(Number(m[1]) * 1000);
    const line = m[2]!;
    if (/^\[\s*\d+\.\d+\] Linux version /.test(line)) {
      b = { boot: boots.length + 1, wall_to_host: null, uptime_to_host: null, init_uptime: null, kexec_host: null, rebooting: null, marks: {}, vms: {}, checks: [] };
      boots.push(b);
      clock.push([]);
      continue;
    }
    if (!b) continue;
    const init = /^\[\s*(\d+\.\d+)\] Run \/init as init process/.exec(line);
    if (init) b.init_uptime = Math.round(Number(init[1]) * 1000);
    if (/Starting new kernel/.test(line)) b.kexec_host = host;
    const c = /^BLACKOUT: CLOCK boot \d+ wall_ms (\d+) uptime_s (\d+\.\d+)$/.exec(line);
    if (c) clock[b.boot - 1]!.push({ host, wall: Number(c[1]), up: Math.round(Number(c[2]) * 1000) });
    const mark = /^BLACKOUT: MARK boot \d+ (\S+) uptime_s (\d+\.\d+)$/.exec(line);
    if (mark) b.marks[mark[1]!] = Math.round(Number(mark[2]) * 1000);
    const vm = /^BLACKOUT: VM (\d+) /.exec(line);
    if (vm) {
      const parsed = parseLuoQemuBlackout(line);
      if (parsed) b.vms[Number(vm[1])] = parsed;
    }
    if (line.startsWith("BLACKOUT: CHECK ")) b.checks.push(line.slice("BLACKOUT: CHECK ".length));
    const rebooting = /\{"ok":true,"event":"REBOOTING".*\}/.exec(line);
    if (rebooting) {
      try {
        b.rebooting = JSON.parse(rebooting[0]);
      } catch {
        // cut short by the jump
      }
    }
  }
  boots.forEach((boot, i) => {
    const samples = clock[i]!;
    if (samples.length === 0) return;
    boot.wall_to_host = Math.min(...samples.map((s) => s.host - s.wall));
    boot.uptime_to_host = Math.min(...samples.map((s) => s.host - s.up));
  });
  return boots;
}

/** One VM's blackout on the host clock, ms. The phases add up to `total`. */
export interface VmBlackout {
  vm: number;
  total: number;
  /** QMP stop → its READY (luo-qemu's record: saved_at). */
  pause_save: number;
  /** its READY → the last VM's READY: the other VMMs' saves, not luod's. */
  wait_others: number;
  /** the last READY → luod's reboot(): luod's barrier (commit: manifest preserved). */
  luod_barrier: number;
  /** reboot() → the new kernel runs /init. */
  kernel: number;
  /** /init → luod started: the test VM's init and job (systemd's boot, in production). */
  init_to_luod: number;
  /** luod started → listening (restored what the manifest lists). */
  luod_start: number;
  /** listening → luo-qemu's process start: the job starts the VMs, as systemd orders them. */
  listening_to_luoqemu: number;
  /** luo-qemu's start → CLAIMED: its own start, connect + SUBSCRIBE, luod's CLAIM (QEMU is probed,
   *  if at all, after CLAIMED since db61b47: in CLAIMED → cont). */
  luoqemu_to_claimed: number;
  /** of it, the round trips to luod: connect + SUBSCRIBE, CLAIM (0 when luo-qemu did not say). */
  luod_replies: number;
  /** CLAIMED → cont: retrieve, a QEMU probe when the binary changed, QEMU start, incoming state, cont. */
  claimed_to_cont: number;
  /** Of the boot-B span luod start → CLAIMED, and the brief's share. */
  luod_start_to_claimed: number;
  /** (barrier READY → reboot() + luod start → CLAIMED) / total: the definition. */
  luod_share: number;
  /** (the last READY → reboot() + luod start → listening + SUBSCRIBE and CLAIM) / total: luod's own work. */
  luod_own_share: number;
  /** What luo-qemu printed (wall clocks of both boots: the jump is off by the RTC's second). */
  luo_qemu: LuoQemuBlackout;
}

export interface UpdateBlackout {
  vms: number;
  /** the boot that jumped and the one that resumed */
  boot: number;
  luod: { timings: Json; commit_ms: number | null; start_ms: number | null };
  kernel: { reboot_to_kexec_ms: number | null; kexec_to_init_ms: number | null };
  per_vm: VmBlackout[];
  checks: string[];
}

/** The manifest's commit time and luod's timings of the update that brought `status`'s boot. */
function previousUpdate(status: Json | undefined): { createdAt: number; timings: Json } | null {
  const p = status?.previous_update ?? status?.status?.previous_update;
  if (!p) return null;
  const createdAt = Date.parse(p.created_at ?? p.createdAt);
  return Number.isFinite(createdAt) ? { createdAt, timings: p.timings ?? {} } : null;
}

/**
 * Each update's blackout: boot A jumped with the VMs that boot B resumed. `statuses[B]` is
 * `luoctl status --json` in boot B (its previous_update: luod's commit time and timings in A).
 */
export function blackouts(boots: Boot[], statuses: Record<number, Json>): UpdateBlackout[] {
  const out: UpdateBlackout[] = [];
  for (const b of boots) {
    const a = boots[b.boot - 2];
    const ids = Object.keys(b.vms).map(Number).sort((x, y) => x - y);
    if (!a || ids.length === 0) continue;
    const prev = previousUpdate(statuses[b.boot]);
    if (!prev || a.wall_to_host === null || b.uptime_to_host === null || b.init_uptime === null) continue;
    // REBOOTING's timings go on to reboot_called_ms; the manifest's stop at manifest_ms
    const t: Json = { ...prev.timings, ...(a.rebooting?.timings ?? {}) };
    const n = (k: string) => (typeof t[k] === "number" ? (t[k] as number) : null);
    // createdAt is taken as the manifest is built, together with manifest_ms
    const commitWall = prev.createdAt;
    const rebootWall = commitWall + ((n("reboot_called_ms") ?? n("manifest_preserved_ms") ?? n("manifest_ms") ?? 0) - (n("manifest_ms") ?? 0));
    const hostA = (wall: number) => wall + a.wall_to_host!;
    const hostB = (uptime: number) => uptime + b.uptime_to_host!;
    const reboot = hostA(rebootWall);
    const init = hostB(b.init_uptime);
    const luodStart = hostB(b.marks["luod-start"] ?? NaN);
    const listening = hostB(b.marks["luod-listening"] ?? NaN);
    const vmsOf = ids.map((id) => {
      const q = b.vms[id]!;
      const saved = hostA(commitWall - q.barrier);
      return { id, q, saved, paused: saved - q.pause_save };
    });
    const lastSaved = Math.max(...vmsOf.map((v) => v.saved));
    const perVm = vmsOf.map(({ id, q, saved, paused }): VmBlackout => {
      const luoqemu = hostB(q.kernel_to_luoqemu);
      const claimed = luoqemu + q.luoqemu_to_claimed;
      const cont = claimed + q.claimed_to_qemu + q.qemu_to_loaded + q.loaded_to_cont;
      const total = cont - paused;
      const luodBarrier = reboot - lastSaved;
      const luodStartToClaimed = claimed - luodStart;
      const luodReplies = (q.subscribe ?? 0) + (q.claim ?? 0);
      return {
        vm: id, total, pause_save: saved - paused, wait_others: lastSaved - saved, luod_barrier: luodBarrier,
        kernel: init - reboot, init_to_luod: luodStart - init, luod_start: listening - luodStart,
        listening_to_luoqemu: luoqemu - listening, luoqemu_to_claimed: claimed - luoqemu, luod_replies: luodReplies, claimed_to_cont: cont - claimed,
        luod_start_to_claimed: luodStartToClaimed,
        luod_share: (reboot - saved + luodStartToClaimed) / total,
        luod_own_share: (luodBarrier + (listening - luodStart) + luodReplies) / total,
        luo_qemu: q,
      };
    });
    out.push({
      vms: ids.length, boot: a.boot,
      luod: { timings: t, commit_ms: n("reboot_called_ms") !== null && n("all_ready_ms") !== null ? n("reboot_called_ms")! - n("all_ready_ms")! : null, start_ms: listening - luodStart },
      kernel: { reboot_to_kexec_ms: a.kexec_host === null ? null : a.kexec_host - reboot, kexec_to_init_ms: a.kexec_host === null ? null : init - a.kexec_host },
      per_vm: perVm,
      checks: b.checks,
    });
  }
  return out;
}

// Helper of the systemd VM tests (tests/vm/systemd-*.test.ts): like vm.ts's runVmJob, but the
// guest's PID 1 is systemd 262 on a Debian sid root disk (scripts/vm/run-job.sh --systemd). The
// payload: the jobs' helpers (jobs/systemd-lib.sh), the test client (guest/systemd-client.ts,
// compiled by guest/build-systemd-client.sh) and its unit (guest/luo-test-client@.service).
//
// First run on a machine: kernel A, shared with every VM (~7 min on 2 idle cores, more when
// other VMs run), debootstrap of sid (~1.5 min, network) and the root image (~20 s), the test
// client binary (~2 s). Cached runs: ~1.5-3 min per test (two systemd boots under TCG).
// Needs root or passwordless sudo (debootstrap) the first time. LUO_SKIP_VM=1 skips these tests
// like every VM test; LUO_SKIP_SYSTEMD_VM=1 skips only these.
import { join } from "node:path";
import { runJobWith, startJobWith, vmAvailable, type RunningJob } from "./vm";

const LIB = join(import.meta.dir, "jobs/systemd-lib.sh");
const CLIENT_UNIT = join(import.meta.dir, "guest/luo-test-client@.service");
const BUILD_CLIENT = join(import.meta.dir, "guest/build-systemd-client.sh");

/** Room for a first kernel build on a busy machine, debootstrap and two runs. */
export const SYSTEMD_VM_TEST_TIMEOUT_MS = 45 * 60 * 1000;

export function systemdVmAvailable(): boolean {
  if (!vmAvailable()) return false;
  if (process.env.LUO_SKIP_SYSTEMD_VM === "1") {
    console.warn("tests/vm: SKIPPING the systemd VM tests because LUO_SKIP_SYSTEMD_VM=1");
    return false;
  }
  return true;
}

/** `files`: more payload files (guest: /mnt/share/payload/<basename>). */
export async function runSystemdJob(jobPath: string, opts: SystemdJobOptions = {}) {
  return runJobWith(jobPath, systemdJobArgs(opts));
}

export interface SystemdJobOptions {
  env?: Record<string, string>;
  timeoutSec?: number;
  files?: string[];
  /** guest RAM, QEMU syntax (run-job.sh's default for --systemd: 2G) */
  memory?: string;
  /** a network card with the guest's ssh on 127.0.0.1:sshPort (run-job.sh -n) */
  sshPort?: number;
}

/** Starts a systemd VM job and returns while it runs (the fleet test's hosts). */
export function startSystemdJob(jobPath: string, opts: SystemdJobOptions = {}): RunningJob {
  return startJobWith(jobPath, systemdJobArgs(opts));
}

function systemdJobArgs(opts: SystemdJobOptions): string[] {
  const args = ["--systemd", "-p", LIB, "-p", CLIENT_UNIT, "-p", testClient(), "-t", String(opts.timeoutSec ?? 600)];
  for (const f of opts.files ?? []) args.push("-p", f);
  for (const [k, v] of Object.entries(opts.env ?? {})) args.push("-e", `${k}=${v}`);
  if (opts.memory) args.push("-m", opts.memory);
  if (opts.sshPort !== undefined) args.push("-n", String(opts.sshPort));
  return args;
}

/** The compiled test client (built once per content, cached); its progress goes to our stderr. */
function testClient(): string {
  const r = Bun.spawnSync([BUILD_CLIENT], { stdin: "ignore", stdout: "pipe", stderr: "inherit" });
  const path = r.stdout.toString().trim();
  if (r.exitCode !== 0 || !path) throw new Error(`${BUILD_CLIENT} failed (exit ${r.exitCode})`);
  return path;
}

// Helper of the systemd VM tests (tests/vm/systemd-*.test.ts): like vm.ts's runVmJob, but the
// guest's PID 1 is systemd 262 on a Debian sid root disk (scripts/vm/systemd/run-job.sh).
//
// First run on a machine: the kernel with luo-systemd.config (~6 min on 2 idle cores, more when
// other VMs run), debootstrap of sid (~1.5 min, network) and the root image (~20 s), the test
// client binary (~2 s). Cached runs: ~1.5-3 min per test (two systemd boots under TCG).
// Needs root or passwordless sudo (debootstrap) the first time. LUO_SKIP_VM=1 skips these tests
// like every VM test; LUO_SKIP_SYSTEMD_VM=1 skips only these.
import { join, resolve } from "node:path";
import { runJobWith, vmAvailable } from "./vm";

const REPO = resolve(import.meta.dir, "../..");
const RUN_JOB = join(REPO, "scripts/vm/systemd/run-job.sh");
const LIB = join(REPO, "tests/vm/jobs/systemd-lib.sh");

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

export async function runSystemdJob(jobPath: string, opts: { env?: Record<string, string>; timeoutSec?: number } = {}) {
  const args = ["-p", LIB, "-t", String(opts.timeoutSec ?? 600)];
  for (const [k, v] of Object.entries(opts.env ?? {})) args.push("-e", `${k}=${v}`);
  return runJobWith(RUN_JOB, jobPath, args);
}

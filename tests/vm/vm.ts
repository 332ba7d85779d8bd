// Shared helper of the VM tests (tests/vm/*.test.ts). One test file per scenario; each one
// runs a job script (tests/vm/jobs/*.sh) in a fresh QEMU VM with our LUO kernel through
// scripts/vm/run-job.sh (the one VM harness; systemd-vm.ts adds --systemd) and checks the exit
// code and the console log.
//
// VM tests run by default, in CI too. They are skipped only when LUO_SKIP_VM=1 is set, and
// then say so on stderr. A machine that cannot run them fails them, loudly (see vmAvailable).
import { mkdirSync, mkdtempSync, readFileSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { parseAbiEnv } from "../support/kernels";

const REPO = resolve(import.meta.dir, "../..");
const RUN_JOB = join(REPO, "scripts/vm/run-job.sh");

/** bun:test timeout for one VM test: room for a first kernel build (~5 min) plus the run. */
export const VM_TEST_TIMEOUT_MS = 20 * 60 * 1000;

export interface VmJobOptions {
  /** job settings, exported to the job in the guest (run-job.sh -e K=V) */
  env?: Record<string, string>;
  /** guest RAM, QEMU syntax (default 1G) */
  memory?: string;
  /** hard limit for the VM run itself, seconds (default 300) */
  timeoutSec?: number;
  /** the exit code the test expects (default 0); any other prints the log's tail on stderr */
  expectRc?: number;
}

export interface VmJobResult {
  /** the job's exit code; 124 = VM timeout, 125 = the VM ended without a code (panic...) */
  rc: number;
  /** the serial console, every line prefixed with "[seconds since QEMU start] " */
  log: string;
  /** the run's directory (serial.log, share/ = the guest's /mnt/share) */
  workDir: string;
}

let noticeShown = false;

/**
 * False only when LUO_SKIP_VM=1: then the VM tests skip, and this says so on stderr. Otherwise
 * true, even on a machine where QEMU is missing and cannot be installed: the tests then fail
 * (loudly, with this warning first) instead of passing as skipped.
 */
export function vmAvailable(): boolean {
  const skip = process.env.LUO_SKIP_VM === "1";
  if (!noticeShown) {
    noticeShown = true;
    if (skip) console.warn("tests/vm: SKIPPING the VM tests because LUO_SKIP_VM=1");
    else if (!qemuPresentOrInstallable())
      console.warn(
        "tests/vm: qemu-system-x86_64 is missing and scripts/vm/deps.sh cannot install it " +
          "(needs apt-get and root or passwordless sudo): the VM tests will FAIL; LUO_SKIP_VM=1 skips them",
      );
  }
  return !skip;
}

function qemuPresentOrInstallable(): boolean {
  if (Bun.which("qemu-system-x86_64")) return true;
  if (!Bun.which("apt-get")) return false;
  if (process.getuid?.() === 0) return true;
  return Bun.which("sudo") !== null && Bun.spawnSync(["sudo", "-n", "true"]).exitCode === 0;
}

/** Runs `scripts/vm/run-job.sh jobPath` in a new work dir under <repo>/.vm/. */
export async function runVmJob(jobPath: string, opts: VmJobOptions = {}): Promise<VmJobResult> {
  const args: string[] = [];
  for (const [k, v] of Object.entries(opts.env ?? {})) args.push("-e", `${k}=${v}`);
  if (opts.memory) args.push("-m", opts.memory);
  if (opts.timeoutSec) args.push("-t", String(opts.timeoutSec));
  return runJobWith(jobPath, args, opts.expectRc ?? 0);
}

/**
 * Runs `scripts/vm/run-job.sh jobPath args…` in a new work dir under <repo>/.vm/ and reads the
 * console log; when the exit code is not `expectRc`, prints the log's last lines.
 */
export async function runJobWith(jobPath: string, args: string[], expectRc = 0): Promise<VmJobResult> {
  return finishJob(startJobWith(jobPath, args), expectRc);
}

/** A VM started by startJobWith, still running: its console is at `${workDir}/serial.log`. */
export interface RunningJob {
  name: string;
  workDir: string;
  proc: ReturnType<typeof Bun.spawn>;
}

/** Starts run-job.sh JOB ARGS… and returns at once (the fleet test runs two VMs side by side). */
export function startJobWith(jobPath: string, args: string[]): RunningJob {
  const name = basename(jobPath).replace(/\.sh$/, "");
  mkdirSync(join(REPO, ".vm"), { recursive: true });
  const workDir = mkdtempSync(join(REPO, ".vm", `${name}-`));
  // run-job.sh's own output (kernel build progress, boot milestones) goes to our stderr.
  const proc = Bun.spawn([RUN_JOB, resolve(jobPath), ...args], {
    cwd: REPO,
    env: { ...process.env, LUO_VM_WORKDIR: workDir },
    stdin: "ignore",
    stdout: "inherit",
    stderr: "inherit",
  });
  return { name, workDir, proc };
}

/** Waits for a started VM to end; a code other than `expectRc` prints the log's tail on stderr. */
export async function finishJob({ name, workDir, proc }: RunningJob, expectRc = 0): Promise<VmJobResult> {
  const rc = await proc.exited;
  let log = "";
  try {
    log = readFileSync(join(workDir, "serial.log"), "utf8");
  } catch {
    // no VM was started (setup failed): rc says why, run-job.sh printed it
  }
  if (rc !== expectRc) {
    // a timeout or a missing code (panic) needs the kernel's messages; otherwise userspace's
    const lines = log.split("\n");
    const shown = rc === 124 || rc === 125 ? lines : lines.filter((l) => !KERNEL_LINE.test(l));
    console.error(
      `tests/vm: ${name} exited ${rc}; last lines of ${workDir}/serial.log:\n${shown.slice(-60).join("\n")}`,
    );
  }
  return { rc, log, workDir };
}

/** a kernel message in the log: "[host time] [kernel time] text" */
const KERNEL_LINE = /^\[\s*\d+\.\d+\] \[\s*\d+\.\d+\] /;

/** Lines of the log that contain `marker`, without the timestamp prefix. */
export function logLines(log: string, marker: string | RegExp): string[] {
  return log
    .split("\n")
    .map((l) => l.replace(/^\[\s*\d+\.\d+\] /, ""))
    .filter((l) => (typeof marker === "string" ? l.includes(marker) : marker.test(l)));
}

/** One of the harness's kernels (scripts/vm/build-kernel.sh a|b|c) and its abi.env. */
export interface KernelVariant {
  /** the cached bzImage */
  image: string;
  /** abi.env: LUO_ABI, MEMFD_ABI, KHO_ABI, KERNEL_RELEASE (uname -r), KERNEL_VERSION (uname -v) */
  abi: Record<string, string>;
}

/** Builds (or finds in the cache) kernel `variant` and reads its abi.env. */
export function kernelVariant(variant: "a" | "b" | "c"): KernelVariant {
  const r = Bun.spawnSync([join(REPO, "scripts/vm/build-kernel.sh"), variant], { stdin: "ignore", stdout: "pipe", stderr: "inherit" });
  const image = r.stdout.toString().trim();
  if (r.exitCode !== 0 || !image) throw new Error(`scripts/vm/build-kernel.sh ${variant} failed (exit ${r.exitCode})`);
  return { image, abi: parseAbiEnv(readFileSync(join(image, "../abi.env"), "utf8")) };
}


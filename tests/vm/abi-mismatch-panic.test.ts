// What luod's ABI gate prevents (docs/kernel.md#abi-compatible-strings): a kexec into kernel C,
// whose LUO ABI string differs (scripts/vm/build-kernel.sh c), forced behind luod's back with a raw
// kexec_file_load while clients hold sessions (tests/vm/jobs/abi-mismatch-panic.sh). C panics at
// boot; with panic=-1 and QEMU -no-reboot the VM ends without a job code (run-job.sh: 125). The test
// passes only if that happened: C's panic on the console and no second boot of the job.
import { expect, test } from "bun:test";
import { join } from "node:path";
import { kernelVariant, logLines, runVmJob, VM_TEST_TIMEOUT_MS, vmAvailable } from "./vm";

test.skipIf(!vmAvailable())(
  "a kexec into a kernel with another LUO ABI panics that kernel at boot and the VM resets",
  async () => {
    const a = kernelVariant("a");
    const c = kernelVariant("c");
    expect(c.abi.LUO_ABI).not.toBe(a.abi.LUO_ABI);
    const { rc, log } = await runVmJob(join(import.meta.dir, "jobs/abi-mismatch-panic.sh"), {
      env: { CLIENTS: "2", MIB: "1" },
      expectRc: 125,
    });
    expect(logLines(log, "JOB: FAIL")).toEqual([]);
    expect(logLines(log, "JOB: 2 client(s) hold prepared sessions in LUO")).toHaveLength(1);
    expect(logLines(log, "raw-kexec: loaded")).toHaveLength(1);
    // kernel C started (its banner), found A's LUO state and panicked
    expect(logLines(log, `Linux version ${c.abi.KERNEL_RELEASE} `)).toHaveLength(1);
    expect(logLines(log, `LUO state is incompatible with '${c.abi.LUO_ABI}'`)).toHaveLength(1);
    expect(logLines(log, "Kernel panic - not syncing: The incoming tree failed to initialize properly")).toHaveLength(1);
    // ... before any userspace: the job ran on boot 1 only
    expect(logLines(log, /INIT: LUO_STAGE=/)).toHaveLength(1);
    expect(rc).toBe(125);
  },
  VM_TEST_TIMEOUT_MS,
);

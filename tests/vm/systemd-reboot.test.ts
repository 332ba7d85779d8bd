// With a kernel loaded, systemd >= 261 makes `systemctl reboot` a kexec (docs/systemd.md, "Surprise
// kexecs"). luod unloads the kernel when it is stopped outside a jump: the reboot is an ordinary
// one (the VM resets and QEMU ends, -no-reboot), never a kexec nobody brokered. Job: jobs/systemd-reboot.sh.
import { expect, test } from "bun:test";
import { join } from "node:path";
import { logLines } from "./vm";
import { runSystemdJob, SYSTEMD_VM_TEST_TIMEOUT_MS, systemdVmAvailable } from "./systemd-vm";

test.skipIf(!systemdVmAvailable())(
  "systemd 262: systemctl reboot with a kernel loaded by luod is an ordinary reboot, not a silent kexec",
  async () => {
    const { log } = await runSystemdJob(join(import.meta.dir, "jobs/systemd-reboot.sh"));
    expect(logLines(log, "JOB: systemctl reboot")).toHaveLength(1);
    expect(logLines(log, /unloaded the next kernel \(luod is stopping\)/)).toHaveLength(1);
    // logind picked the kexec (the trap), and it found no kernel to jump into
    expect(logLines(log, /Reached target kexec.target/)).toHaveLength(1);
    expect(logLines(log, /systemd-shutdown\[1\]: Failed to kexec: Invalid argument/)).toHaveLength(1);
    expect(logLines(log, /reboot: Restarting system/).length).toBeGreaterThanOrEqual(1);
    expect(logLines(log, /kexec_core: Starting new kernel/)).toHaveLength(0);
    expect(logLines(log, /JOB\[boot 2\]/)).toHaveLength(0);
    expect(logLines(log, "JOB: FAIL")).toHaveLength(0);
  },
  SYSTEMD_VM_TEST_TIMEOUT_MS,
);

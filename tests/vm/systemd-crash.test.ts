// luod SIGKILLed after every client is READY, restarted by systemd, then the kexec: the READY
// sessions waited in luod's fd store and every client gets its data back. After the boot, the
// double fault: luod SIGKILLed while a client holds its claimed session, then that client; the
// fd store kept luod's copy, so the client claims it again and verifies every byte.
// Job: tests/vm/jobs/systemd-crash.sh.
import { expect, test } from "bun:test";
import { join } from "node:path";
import { logLines } from "./vm";
import { runSystemdJob, SYSTEMD_VM_TEST_TIMEOUT_MS, systemdVmAvailable } from "./systemd-vm";

test.skipIf(!systemdVmAvailable())(
  "systemd 262: luod killed after all READY, and after the boot luod and then a claiming client killed: every client's data comes across",
  async () => {
    const { rc, log } = await runSystemdJob(join(import.meta.dir, "jobs/systemd-crash.sh"));
    expect(logLines(log, "JOB: PASS luod killed after every client was READY")).toHaveLength(1);
    for (const id of ["vm-1", "vm-2"]) expect(logLines(log, `VERIFIED ${id} 8388608 bytes`)).toHaveLength(1);
    expect(logLines(log, "JOB: PASS luod, then the client holding a claimed session, were killed")).toHaveLength(1);
    expect(logLines(log, "JOB: PASS every client claimed")).toHaveLength(1);
    expect(logLines(log, "JOB: PASS the restarted luod held vm-1's claimed session again")).toHaveLength(1);
    expect(rc).toBe(0);
  },
  SYSTEMD_VM_TEST_TIMEOUT_MS,
);

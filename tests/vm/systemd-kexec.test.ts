// luod as a real systemd service (systemd 262, Debian sid) through a real `systemctl kexec`:
// two client services get their memfds back; STATUS= and journal priorities; an aborted update
// empties the fd store and unloads the kernel; luod's native journal entries and audit records. Job: tests/vm/jobs/systemd-kexec.sh.
import { expect, test } from "bun:test";
import { join } from "node:path";
import { logLines } from "./vm";
import { runSystemdJob, SYSTEMD_VM_TEST_TIMEOUT_MS, systemdVmAvailable } from "./systemd-vm";

test.skipIf(!systemdVmAvailable())(
  "systemd 262: luoctl kexec goes through systemctl kexec and the fd store; both clients verify their data",
  async () => {
    const { rc, log } = await runSystemdJob(join(import.meta.dir, "jobs/systemd-kexec.sh"));
    expect(logLines(log, /Status: "idle, systemd mode/).length).toBeGreaterThanOrEqual(1);
    expect(logLines(log, "JOB: PASS an aborted update in systemd mode")).toHaveLength(1);
    // systemd-shutdown on the old kernel: the fd store went into the kexec
    expect(logLines(log, "Preserved fd stores in LUO session 'systemd' for kexec")).toHaveLength(1);
    for (const id of ["vm-1", "vm-2"]) expect(logLines(log, `VERIFIED ${id} 8388608 bytes`)).toHaveLength(1);
    expect(logLines(log, "JOB: PASS every client claimed")).toHaveLength(1);
    // structured journal entries and audit records (docs/daemon.md#logs-and-the-audit-trail)
    expect(logLines(log, "JOB: PASS luod's journal entries have their fields")).toHaveLength(1);
    expect(logLines(log, /JOB: PASS update \d+'s KEXEC, jump and restore are in the journal/)).toHaveLength(1);
    // both boots: the running kernel's image where a distribution keeps it (run-job.sh, luo-vm-job)
    expect(logLines(log, /INIT: \/boot\/vmlinuz-(\S+) -> \/mnt\/share\/boot\/vmlinuz-\1$/)).toHaveLength(2);
    expect(rc).toBe(0);
  },
  SYSTEMD_VM_TEST_TIMEOUT_MS,
);

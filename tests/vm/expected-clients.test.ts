// Issue 14, hole 14, on the real LUO kernel: luod restarted and `luoctl kexec` at once. A client
// not back yet (here: a supervisor stopped) makes the update refused, naming it; once every client
// is back the update carries them all: boot 2 claims and verifies every one.
import { expect, test } from "bun:test";
import { join } from "node:path";
import { logLines, runVmJob, VM_TEST_TIMEOUT_MS, vmAvailable } from "./vm";

test.skipIf(!vmAvailable())(
  "a luod restarted just before luoctl kexec never leaves a tenant behind: refused naming it, or carried",
  async () => {
    const { rc, log } = await runVmJob(join(import.meta.dir, "jobs/expected-clients.sh"));
    expect(logLines(log, "JOB: PASS A. restarted luod expects every subscriber")).toHaveLength(1);
    expect(logLines(log, /VERIFIED (vm-1|vm-2|vm-3) 8388608 bytes/)).toHaveLength(3);
    expect(logLines(log, "JOB: PASS the update after the restart carried every client")).toHaveLength(1);
    expect(rc).toBe(0);
  },
  VM_TEST_TIMEOUT_MS,
);

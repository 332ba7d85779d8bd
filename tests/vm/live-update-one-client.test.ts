// One client with a 16 MiB memfd: SUBSCRIBE → READY → kexec → CLAIM → verify → FINISHED,
// luod and luoctl being the compiled binary, on the real LUO kernel.
import { expect, test } from "bun:test";
import { join } from "node:path";
import { logLines, runVmJob, VM_TEST_TIMEOUT_MS, vmAvailable } from "./vm";

test.skipIf(!vmAvailable())(
  "one client gets its 16 MiB memfd back byte for byte after a real kexec",
  async () => {
    const { rc, log } = await runVmJob(join(import.meta.dir, "jobs/live-update.sh"), { env: { CLIENTS: "1", MIB: "16" } });
    expect(logLines(log, /VERIFIED vm-1 16777216 bytes/)).toHaveLength(1);
    expect(logLines(log, "JOB: PASS")).toHaveLength(1);
    expect(rc).toBe(0);
  },
  VM_TEST_TIMEOUT_MS,
);

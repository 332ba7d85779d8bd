// 25 clients, each with its own 1 MiB memfd of distinct content, through one live update.
import { expect, test } from "bun:test";
import { join } from "node:path";
import { logLines, runVmJob, VM_TEST_TIMEOUT_MS, vmAvailable } from "./vm";

test.skipIf(!vmAvailable())(
  "25 clients each get their own distinct memfd back after a real kexec",
  async () => {
    const { rc, log } = await runVmJob(join(import.meta.dir, "jobs/live-update.sh"), { env: { CLIENTS: "25", MIB: "1" } });
    expect(logLines(log, /VERIFIED vm-\d+ 1048576 bytes/)).toHaveLength(25);
    expect(logLines(log, "JOB: PASS")).toHaveLength(1);
    expect(rc).toBe(0);
  },
  VM_TEST_TIMEOUT_MS,
);

// The harness itself, without any LUO code of ours: a cold boot runs the job with the right
// environment, host programs (Bun) run in the guest through hostrun, and the job's exit code
// comes back as run-job.sh's exit code.
import { expect, test } from "bun:test";
import { join } from "node:path";
import { logLines, runVmJob, VM_TEST_TIMEOUT_MS, vmAvailable } from "./vm";

test.skipIf(!vmAvailable())(
  "a job runs Bun in the guest and its exit code comes back",
  async () => {
    const { rc, log } = await runVmJob(join(import.meta.dir, "jobs/smoke.sh"), {
      env: { SMOKE_RC: "7" },
      expectRc: 7,
    });
    expect(logLines(log, /^SMOKE: bun \d+\.\d+\.\d+: first start/)).toHaveLength(1);
    expect(logLines(log, "SMOKE: OK")).toHaveLength(1);
    expect(rc).toBe(7);
  },
  VM_TEST_TIMEOUT_MS,
);

// FAIL and a missed deadline abort the update without a reboot; the next kexec succeeds; a client
// that exited after READY still gets its data; an unclaimed session is reported and discarded.
import { expect, test } from "bun:test";
import { join } from "node:path";
import { logLines, runVmJob, VM_TEST_TIMEOUT_MS, vmAvailable } from "./vm";

test.skipIf(!vmAvailable())(
  "aborted updates keep the host running, and the retry brings every claimed session back",
  async () => {
    const { rc, log } = await runVmJob(join(import.meta.dir, "jobs/abort-and-retry.sh"));
    expect(logLines(log, "JOB: PASS FAIL aborted the update")).toHaveLength(1);
    expect(logLines(log, "JOB: PASS the deadline aborted the update")).toHaveLength(1);
    expect(logLines(log, /VERIFIED (ok-1|ok-2|gone-1) /)).toHaveLength(3);
    expect(logLines(log, "JOB: PASS aborts kept the host up")).toHaveLength(1);
    expect(rc).toBe(0);
  },
  VM_TEST_TIMEOUT_MS,
);

// Clients that PREPARE: they preserve before the update, write their real content afterwards, keep
// their session across a dry run, and get the content written after PRESERVE_FD back after a real
// kexec (jobs/prepared.sh; the real kernel's "contents stay live, size frozen", docs/kernel.md#memfd-preservation).
import { expect, test } from "bun:test";
import { join } from "node:path";
import { logLines, runVmJob, VM_TEST_TIMEOUT_MS, vmAvailable } from "./vm";

test.skipIf(!vmAvailable())(
  "prepared clients keep their session across a dry run and get what they wrote after PRESERVE_FD back",
  async () => {
    const { rc, log } = await runVmJob(join(import.meta.dir, "jobs/prepared.sh"), { env: { CLIENTS: "3", MIB: "4" } });
    expect(logLines(log, "JOB: PASS 3 session(s) prepared and preserved into; ftruncate gets EPERM")).toHaveLength(1);
    expect(logLines(log, /VERIFIED prep-\d+ 4194304 bytes/)).toHaveLength(3);
    expect(logLines(log, "JOB: PASS the dry run kept the prepared sessions")).toHaveLength(1);
    expect(logLines(log, "JOB: PASS 3 prepared client(s)")).toHaveLength(1);
    expect(rc).toBe(0);
  },
  VM_TEST_TIMEOUT_MS,
);

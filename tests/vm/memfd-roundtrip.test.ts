// A memfd survives a live update: stage 1 preserves 16 MiB of a known pattern in a LUO session
// and kexecs into the same kernel; stage 2 retrieves it and checks every byte
// (jobs/memfd-roundtrip.sh runs guest/memfd-roundtrip.ts in both boots).
import { expect, test } from "bun:test";
import { join } from "node:path";
import { logLines, runVmJob, VM_TEST_TIMEOUT_MS, vmAvailable } from "./vm";

test.skipIf(!vmAvailable())(
  "a 16 MiB memfd survives kexec byte for byte",
  async () => {
    const { rc, log } = await runVmJob(join(import.meta.dir, "jobs/memfd-roundtrip.sh"), {
      env: { MEMFD_MIB: "16" },
    });
    expect(logLines(log, /^INIT: LUO_STAGE=2 LUO_BOOT=2/)).toHaveLength(1);
    expect(logLines(log, /^VERIFIED \d+ bytes$/)).toEqual([`VERIFIED ${16 * 1024 * 1024} bytes`]);
    expect(rc).toBe(0);
  },
  VM_TEST_TIMEOUT_MS,
);

// The ABI gate on the real kernel: a kernel whose LUO ABI string differs (kernel C) is refused by
// luoctl load and luoctl check, naming both strings; no update can start. Job: jobs/abi-refused.sh.
// The expected strings come from the kernels' abi.env (read from the source each was built from).
import { expect, test } from "bun:test";
import { join } from "node:path";
import { kernelVariant, logLines, runVmJob, VM_TEST_TIMEOUT_MS, vmAvailable } from "./vm";

test.skipIf(!vmAvailable())(
  "luoctl load and luoctl check refuse a kernel with another LUO ABI, naming both; luoctl kexec cannot jump into it",
  async () => {
    const a = kernelVariant("a").abi.LUO_ABI!, c = kernelVariant("c").abi.LUO_ABI!;
    expect(c).not.toBe(a);
    const { rc, log } = await runVmJob(join(import.meta.dir, "jobs/abi-refused.sh"), { env: { A_LUO_ABI: a, C_LUO_ABI: c } });
    for (const what of ["luoctl load refuses C", "luoctl check --kernel refuses C", "luoctl check --kernel accepts B", "luoctl kexec cannot start an update into C"])
      expect(logLines(log, `JOB: PASS ${what}`)).toHaveLength(1);
    expect(rc).toBe(0);
  },
  VM_TEST_TIMEOUT_MS,
);

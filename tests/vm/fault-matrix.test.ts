// The fault matrix of docs/reliability.md on the real kernel: one VM run (tests/vm/jobs/
// fault-matrix.sh) injects each fault in turn; each row is checked here as its own test.
import { beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { logLines, runVmJob, VM_TEST_TIMEOUT_MS, vmAvailable, type VmJobResult } from "./vm";

let run: VmJobResult;
const passed = (row: string) => logLines(run.log, `JOB: PASS ${row} `).length === 1;

describe.skipIf(!vmAvailable())("fault matrix", () => {
  beforeAll(async () => {
    run = await runVmJob(join(import.meta.dir, "jobs/fault-matrix.sh"), { timeoutSec: 400 });
  }, VM_TEST_TIMEOUT_MS);

  test("R1 a client killed before READY aborts the update and the host keeps running", () => expect(passed("R1")).toBe(true));
  test("R2 luod killed while preparing: no jump, clients subscribe again to the restarted luod", () => expect(passed("R2")).toBe(true));
  test("R3 luod killed after every client is READY: no jump, nothing lost", () => expect(passed("R3")).toBe(true));
  test("R4 a reboot(KEXEC) that fails for real is reported and aborts the update", () => expect(passed("R4")).toBe(true));
  test("R5 a client killed after READY still has its session after the jump", () => expect(passed("R5")).toBe(true));
  test("R6 luod killed after the boot still serves every unclaimed CLAIM when restarted", () => expect(passed("R6")).toBe(true));
  test("R7 a client killed during CLAIM gets the same session when it claims again", () => {
    expect(passed("R7")).toBe(true);
    expect(logLines(run.log, /VERIFIED (ok-1|ok-2|doomed-1) /)).toHaveLength(3);
    expect(run.rc).toBe(0);
  });
});

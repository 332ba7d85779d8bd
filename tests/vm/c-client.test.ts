// The C reference client (examples/c), compiled here with gcc -Werror, keeps a 16 MiB memfd
// across a real kexec on the LUO kernel: PRESERVE_FD → READY, kexec, CLAIM → RETRIEVE_FD →
// every byte verified → FINISH → FINISHED, and luod holds nothing unclaimed afterwards. It runs
// through examples/try-client/job.sh, the job the README gives client authors, so that job is
// proven too.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { compileCClient } from "../support/c-client";
import { logLines, runJobWith, VM_TEST_TIMEOUT_MS, vmAvailable } from "./vm";

const dir = mkdtempSync(join(tmpdir(), "c-client-vm-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test.skipIf(!vmAvailable())(
  "the C reference client gets its 16 MiB memfd back byte for byte after a real kexec",
  async () => {
    // no skip without gcc here: the VM tests need it anyway (they build the kernel)
    const exe = join(dir, "luo_example");
    const built = compileCClient(exe);
    expect(built.stderr).toBe("");
    expect(built.code).toBe(0);
    const job = join(import.meta.dir, "../../examples/try-client/job.sh");
    const { rc, log } = await runJobWith(job, [
      "-p", exe,
      "-e", "CLIENT_BOOT1=/mnt/share/payload/luo_example preserve vm-c 16",
      "-e", "CLIENT_BOOT2=/mnt/share/payload/luo_example claim vm-c 16",
    ]);
    expect(logLines(log, /^READY vm-c 16777216 bytes preserved$/)).toHaveLength(1);
    expect(logLines(log, /^VERIFIED vm-c 16777216 bytes$/)).toHaveLength(1);
    expect(logLines(log, "JOB: the client in boot 2 exited 0")).toHaveLength(1);
    expect(logLines(log, "JOB: PASS")).toHaveLength(1);
    expect(rc).toBe(0);
  },
  VM_TEST_TIMEOUT_MS,
);

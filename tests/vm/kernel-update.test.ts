// A real kernel update and back, A -> B -> A (tests/vm/jobs/kernel-update.sh): B is another build
// of the same source (scripts/vm/build-kernel.sh b) with its own release and code but the same LUO
// ABI; luod carries 3 clients' memfds across each jump. What B must look like comes from B's own
// abi.env and bzImage header, not from constants.
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { inspectKernelImage, KERNEL_HEAD_BYTES } from "../../src/daemon/bzimage";
import { kernelVariant, logLines, runVmJob, VM_TEST_TIMEOUT_MS, vmAvailable } from "./vm";

test.skipIf(!vmAvailable())(
  "a live update A -> B -> A boots B's build, then A's, and every client's data survives both jumps",
  async () => {
    const a = kernelVariant("a");
    const b = kernelVariant("b");
    expect(b.abi.KERNEL_RELEASE).not.toBe(a.abi.KERNEL_RELEASE);
    expect(b.abi.LUO_ABI).toBe(a.abi.LUO_ABI);
    // uname -v as B's own image says it (the bzImage header's kernel_version string)
    const head = readFileSync(b.image);
    const info = inspectKernelImage(new Uint8Array(head.buffer, head.byteOffset, Math.min(head.length, KERNEL_HEAD_BYTES)), head.length);
    if (!info.ok) throw new Error(info.reason);
    expect(info.version.startsWith(`${b.abi.KERNEL_RELEASE} `)).toBe(true);
    expect(info.version).toContain(b.abi.KERNEL_VERSION);

    const { rc, log } = await runVmJob(join(import.meta.dir, "jobs/kernel-update.sh"), {
      env: { CLIENTS: "3", MIB: "4" },
      timeoutSec: 600,
    });
    expect(logLines(log, "JOB: FAIL")).toEqual([]);
    // the three boots, by the kernels' own words
    expect(logLines(log, /JOB: running kernel [AB] /)).toEqual([
      `JOB: running kernel A (${a.abi.KERNEL_RELEASE})`,
      `JOB: running kernel B (${b.abi.KERNEL_RELEASE})`,
      `JOB: running kernel A (${a.abi.KERNEL_RELEASE})`,
    ]);
    // on every boot /boot/vmlinuz-$(uname -r) is the running kernel's image (what luod's preflight reads)
    expect(logLines(log, /JOB: \/boot\/vmlinuz-\S+ is kernel [AB]'s image/).map((l) => l.replace(/ \(.*/, ""))).toEqual([
      `JOB: /boot/vmlinuz-${a.abi.KERNEL_RELEASE} is kernel A's image`,
      `JOB: /boot/vmlinuz-${b.abi.KERNEL_RELEASE} is kernel B's image`,
      `JOB: /boot/vmlinuz-${a.abi.KERNEL_RELEASE} is kernel A's image`,
    ]);
    expect(logLines(log, `JOB: uname -r ${b.abi.KERNEL_RELEASE}; uname -v ${b.abi.KERNEL_VERSION}`)).toHaveLength(1);
    expect(logLines(log, `Linux version ${b.abi.KERNEL_RELEASE} `)).toHaveLength(1);
    // B's code change, on the console once: only B's boot printed it
    expect(logLines(log, /\] luo-agent test kernel B$/)).toHaveLength(1);
    expect(logLines(log, /VERIFIED ab-\d 4194304 bytes/)).toHaveLength(3);
    expect(logLines(log, /VERIFIED ba-\d 4194304 bytes/)).toHaveLength(3);
    // boot 3 without a running image: the ABI boot 2's luod recorded in the manifest is used
    expect(logLines(log, "JOB: PASS without a running image, the ABI the previous luod recorded makes B checkable")).toHaveLength(1);
    expect(logLines(log, "JOB: PASS A -> B -> A")).toHaveLength(1);
    expect(rc).toBe(0);
  },
  VM_TEST_TIMEOUT_MS,
);

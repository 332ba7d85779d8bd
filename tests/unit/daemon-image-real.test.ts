// The image ABI reader on REAL kernels (issue 15: not hand-made bytes only), in its Worker:
//  * kernel A of the VM harness (lz4): its strings are those of the source it was built from
//    (abi.env next to it, or include/linux/kho/abi/*.h), and one of its banners is its /proc/version;
//  * kernels B and C: B has A's strings (another build), C another LUO string: a mismatch (panic);
//  * Debian sid's stock kernel (zstd, built without CONFIG_LIVEUPDATE): no strings at all, so an
//    update into it is refused with "missing" for all three.
// Neither is built or downloaded here: absent ones are skipped, visibly (tests/support/kernels.ts).
import { describe, expect, test } from "bun:test";
import { closeSync, fstatSync, openSync } from "node:fs";
import { inspectKernelImage, KERNEL_HEAD_BYTES } from "../../src/daemon/bzimage";
import { compareAbi } from "../../src/daemon/image-abi";
import { readImageAbi, type ImageAbiResult } from "../../src/daemon/image-reader";
import { readFull } from "../../src/kernel/fd";
import { cachedKernel, debianKernel } from "../support/kernels";

const A = cachedKernel("a");
const B = cachedKernel("b");
const C = cachedKernel("c");
const debian = debianKernel();
if (!A) console.warn("daemon-image-real: SKIP kernel A: `scripts/vm/build-kernel.sh --cached-only a` found nothing (build the VM kernel first)");
if (!B || !C) console.warn("daemon-image-real: SKIP kernels B/C: `scripts/vm/build-kernel.sh b` and `c` first");
if (!debian) console.warn("daemon-image-real: SKIP Debian's kernel: run scripts/vm/debian-kernel.sh first");

/** readImageAbi on a file, counting the 10 ms timer ticks the main thread ran meanwhile. */
async function readFile(path: string): Promise<{ r: ImageAbiResult; wallMs: number; ticks: number }> {
  const fd = openSync(path, "r");
  try {
    const size = fstatSync(fd).size;
    const head = new Uint8Array(Math.min(size, KERNEL_HEAD_BYTES));
    readFull(fd, head, 0);
    const info = inspectKernelImage(head, size);
    if (!info.ok) throw new Error(info.reason);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 10);
    const started = performance.now();
    const r = await readImageAbi(fd, info);
    const wallMs = performance.now() - started;
    clearInterval(timer);
    return { r, wallMs, ticks };
  } finally {
    closeSync(fd);
  }
}

describe("real kernel images", () => {
  test.skipIf(!A)(`kernel A (lz4): the strings of its source (${A?.expectedFrom ?? "absent"}) and its banner`, async () => {
    const { r, wallMs, ticks } = await readFile(A!.path);
    if (!r.ok) throw new Error(r.message);
    console.log(`kernel A: ${r.compression}, ${r.decompressedBytes} bytes, ${r.ms} ms in the worker, ${Math.round(wallMs)} ms wall, ${ticks} timer ticks meanwhile`);
    expect(r.compression).toBe("lz4");
    expect({ luo: r.luo, memfd: r.memfd, kho: r.kho }).toEqual(A!.expected);
    expect(r.ambiguous).toEqual({});
    // linux_banner, what /proc/version shows when A runs: "Linux version <release> (…) #1 SMP …\n"
    expect(r.banners.some((b) => /^Linux version \S+ \(.*\) #\d+ .*\n$/.test(b))).toBe(true);
    expect(compareAbi(A!.expected, r)).toEqual([]);
    // the event loop kept running while the worker decoded (a generous bound: a tick per 250 ms)
    expect(ticks).toBeGreaterThanOrEqual(Math.floor(wallMs / 250));
  });

  test.skipIf(!A || !B || !C)("kernels B and C against A: B (another build, same ABI) passes, C (another LUO ABI) is a mismatch that panics", async () => {
    const [a, b, c] = [await readFile(A!.path), await readFile(B!.path), await readFile(C!.path)];
    for (const x of [a, b, c]) if (!x.r.ok) throw new Error(x.r.message);
    const [ra, rb, rc] = [a.r, b.r, c.r] as Extract<ImageAbiResult, { ok: true }>[];
    expect({ luo: rb!.luo, memfd: rb!.memfd, kho: rb!.kho }).toEqual(B!.expected);
    expect({ luo: rc!.luo, memfd: rc!.memfd, kho: rc!.kho }).toEqual(C!.expected);
    expect(rb!.banners).not.toEqual(ra!.banners); // another build: its own /proc/version
    const running = { luo: ra!.luo, memfd: ra!.memfd, kho: ra!.kho };
    expect(compareAbi(running, rb!)).toEqual([]);
    const problems = compareAbi(running, rc!);
    expect(problems.map((p) => [p.kind, p.code, p.consequence])).toEqual([["luo", "mismatch", "panic"]]);
    expect(problems[0]!.message).toBe(`LUO ABI mismatch: the running kernel has ${A!.expected.luo}, the new kernel ${C!.expected.luo} (the new kernel would panic at boot)`);
  });

  test.skipIf(!debian)(`Debian's kernel (zstd, no CONFIG_LIVEUPDATE): no ABI strings, refused as "missing"`, async () => {
    const { r, wallMs, ticks } = await readFile(debian!.path);
    if (!r.ok) throw new Error(r.message);
    console.log(`Debian ${debian!.release}: ${r.compression}, ${r.decompressedBytes} bytes, ${r.ms} ms in the worker, ${Math.round(wallMs)} ms wall, ${ticks} timer ticks meanwhile`);
    expect(r.compression).toBe("zstd");
    expect({ luo: r.luo, memfd: r.memfd, kho: r.kho, ambiguous: r.ambiguous }).toEqual({ luo: null, memfd: null, kho: null, ambiguous: {} });
    expect(r.banners.some((b) => b.startsWith(`Linux version ${debian!.release} (`) && / #1 /.test(b))).toBe(true);
    const problems = compareAbi({ luo: "luo-v5", memfd: "memfd-v2", kho: "kho-v4" }, r);
    expect(problems.map((p) => [p.kind, p.code])).toEqual([["luo", "missing"], ["memfd", "missing"], ["kho", "missing"]]);
    expect(ticks).toBeGreaterThanOrEqual(Math.floor(wallMs / 250));
  });
});

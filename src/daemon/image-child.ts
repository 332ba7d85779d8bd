// The child half of readImageAbi (image-reader.ts): `luo --internal-image-abi OFFSET LENGTH MAX`
// with the kernel image open on stdin. It preads the compressed kernel, decompresses it (at most
// MAX bytes), scans it, writes the small result as one JSON line and exits. A process of its own,
// not a thread of luod: the decoder's tens of MB and its JIT code die with it, and luod's resident
// memory stays where it was (a Worker kept ~13 MiB of it, docs/performance.md, "Fifth round").
import { writeFileSync } from "node:fs";
import { readFull } from "../kernel/fd.ts";
import { decompressPayload } from "./image-payload.ts";
import { scanKernelAbi } from "./image-abi.ts";
import type { ImageAbiJob, ImageAbiResult } from "./image-reader.ts";

/** The job as the command line gives it: three non-negative safe integers, or null. */
export function parseJob(args: readonly string[]): Omit<ImageAbiJob, "fd"> | null {
  if (args.length !== 3) return null;
  const n = args.map((a) => (/^\d{1,15}$/.test(a) ? Number(a) : NaN));
  if (n.some((x) => !Number.isSafeInteger(x))) return null;
  return { payloadOffset: n[0]!, payloadLength: n[1]!, maxOutputBytes: n[2]! };
}

export function runJob(job: ImageAbiJob): ImageAbiResult {
  const started = performance.now();
  if (job.payloadLength > job.maxOutputBytes) {
    return { ok: false, code: "too-large", message: `the compressed kernel (${job.payloadLength} bytes) is larger than the ${job.maxOutputBytes}-byte cap` };
  }
  const payload = new Uint8Array(job.payloadLength);
  let n: number;
  try {
    n = readFull(job.fd, payload, job.payloadOffset);
  } catch (e) {
    return { ok: false, code: "io", message: `could not read the compressed kernel: ${(e as Error).message}` };
  }
  if (n !== payload.length) {
    return { ok: false, code: "io", message: `the image ended after ${n} of the ${payload.length} bytes of its compressed kernel` };
  }
  const d = decompressPayload(payload, job.maxOutputBytes);
  if (!d.ok) return { ok: false, code: d.code, compression: d.compression, message: d.message };
  const scan = scanKernelAbi(d.data);
  return {
    ok: true,
    compression: d.compression,
    decompressedBytes: d.data.length,
    ms: Math.round(performance.now() - started),
    ...scan,
  };
}

/** The child's main: the result on stdout (exit 0), or a usage line on stderr (exit 2). */
export function imageChildMain(args: readonly string[]): number {
  const job = parseJob(args);
  if (!job) {
    process.stderr.write("usage: luo --internal-image-abi OFFSET LENGTH MAX < IMAGE (luod runs this itself)\n");
    return 2;
  }
  try {
    // luod's -500 is inherited: this process decodes an image an admin chose, up to 256 MiB of
    // it, and is the first to go under memory pressure, not a tenant's VMM (raising needs no
    // privilege: docs/kernel.md, "The running binary and the OOM score of helpers")
    writeFileSync("/proc/self/oom_score_adj", "1000");
  } catch {
    // no /proc: the decode still runs, with luod's score
  }
  let result: ImageAbiResult;
  try {
    result = runJob({ fd: 0, ...job });
  } catch (err) {
    result = { ok: false, code: "worker", message: `reading the image failed: ${(err as Error)?.message ?? String(err)}` };
  }
  process.stdout.write(`${JSON.stringify(result)}\n`);
  return 0;
}

// Worker half of readImageAbi (image-reader.ts): pread the compressed kernel from the image's fd
// (fds are process-wide), decompress it (capped), scan it, and post back the small result, never
// the decompressed bytes. One job per worker; the caller terminates it. Built as an entry point of
// the binary (scripts/build-binary.ts), like src/kernel/epoll-worker.ts.
import { readFull } from "../kernel/fd.ts";
import { decompressPayload } from "./image-payload.ts";
import { scanKernelAbi } from "./image-abi.ts";
import type { ImageAbiJob, ImageAbiResult } from "./image-reader.ts";

function run(job: ImageAbiJob): ImageAbiResult {
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

addEventListener("message", (e: MessageEvent<ImageAbiJob>) => {
  let result: ImageAbiResult;
  try {
    result = run(e.data);
  } catch (err) {
    result = { ok: false, code: "worker", message: `reading the image failed: ${(err as Error)?.message ?? String(err)}` };
  }
  postMessage(result);
});

// readImageAbi: the ABI strings and banners of a bzImage, read off the event loop. Decompressing a
// distribution kernel takes ~0.5 s of CPU (62 MB of zstd), too long for luod's single thread:
// one Worker per call (image-worker.ts) does the I/O, the decoding and the scan, and posts back
// only the small result; the worker is always terminated, on a timeout too.
import { existsSync } from "node:fs";
import type { Compression } from "./image-payload";
import type { ImageAbiScan } from "./image-abi";

/** Cap on the decompressed kernel: Debian's 7.2 vmlinux.bin is 62 MB, ours 17 MB. */
export const DEFAULT_MAX_VMLINUX_BYTES = 256 << 20;
/** A Debian kernel decodes in ~0.6 s here; a loaded 2-core host must not fail it. */
export const DEFAULT_IMAGE_ABI_TIMEOUT_MS = 30_000;

/** The message posted to the worker. */
export interface ImageAbiJob {
  fd: number;
  payloadOffset: number;
  payloadLength: number;
  maxOutputBytes: number;
}

export type ImageAbiFailureCode = "unsupported" | "too-large" | "corrupt" | "io" | "timeout" | "worker";

export type ImageAbiResult =
  | ({ ok: true; compression: Compression; decompressedBytes: number; ms: number } & ImageAbiScan)
  | { ok: false; code: ImageAbiFailureCode; compression?: Compression; message: string };

export interface ReadImageAbiOptions {
  timeoutMs?: number;
  maxOutputBytes?: number;
}

/**
 * From source the worker sits next to this file; in the compiled binary it is a second entry
 * point, embedded as /$bunfs/root/daemon/image-worker.js (see src/kernel/epoll.ts:workerUrl and
 * docs/bun.md#the-compiled-binary).
 */
function workerUrl(): string {
  const beside = new URL("./image-worker.ts", import.meta.url);
  if (!import.meta.url.startsWith("file:///$bunfs/")) return beside.href;
  for (const rel of ["./image-worker.js", "./daemon/image-worker.js", "./src/daemon/image-worker.js"]) {
    const url = new URL(rel, import.meta.url);
    if (existsSync(url.pathname)) return url.href;
  }
  throw new Error("image-worker is not embedded in this binary; build it with scripts/build-binary.ts");
}

/**
 * Read the ABI strings and banners of the kernel image open at `fd` (its payload as
 * inspectKernelImage found it). The fd must stay open until the promise settles. Never rejects.
 */
export function readImageAbi(
  fd: number,
  info: { payloadOffset: number; payloadLength: number },
  opts: ReadImageAbiOptions = {},
): Promise<ImageAbiResult> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_IMAGE_ABI_TIMEOUT_MS;
  const job: ImageAbiJob = {
    fd,
    payloadOffset: info.payloadOffset,
    payloadLength: info.payloadLength,
    maxOutputBytes: opts.maxOutputBytes ?? DEFAULT_MAX_VMLINUX_BYTES,
  };
  return new Promise((resolve) => {
    let worker: Worker;
    try {
      worker = new Worker(workerUrl());
    } catch (e) {
      resolve({ ok: false, code: "worker", message: `could not start the image reader: ${(e as Error).message}` });
      return;
    }
    let done = false;
    const finish = (r: ImageAbiResult) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      worker.terminate();
      resolve(r);
    };
    const timer = setTimeout(
      () => finish({ ok: false, code: "timeout", message: `reading the image's ABI took longer than ${timeoutMs} ms` }),
      timeoutMs,
    );
    worker.onmessage = (e: MessageEvent<ImageAbiResult>) => finish(e.data);
    worker.onerror = (e: ErrorEvent) =>
      finish({ ok: false, code: "worker", message: `the image reader failed: ${e.message || String(e.error)}` });
    worker.addEventListener("close", () =>
      finish({ ok: false, code: "worker", message: "the image reader exited without an answer" }));
    worker.postMessage(job);
  });
}

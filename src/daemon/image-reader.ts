// readImageAbi: the ABI strings and banners of a bzImage, read off the event loop. Decompressing a
// distribution kernel takes ~0.5 s of CPU (62 MB of zstd), too long for luod's single thread:
// one Worker per call (image-worker.ts) does the I/O, the decoding and the scan, and posts back
// only the small result; the worker is always terminated, on a timeout too.
import type { Compression } from "./image-payload";
import type { ImageAbiScan } from "./image-abi";
import { workerUrl } from "../worker-url";

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
      worker = new Worker(workerUrl(import.meta.url, "daemon", "image-worker"));
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

// readImageAbi: the ABI strings and banners of a bzImage, read off the event loop and out of
// luod's memory. Decompressing a distribution kernel takes ~0.5 s of CPU (62 MB of zstd), too long
// for luod's single thread, and its buffers and JIT code would stay in luod's resident memory: one
// child process per call (image-child.ts, this binary run with IMAGE_ABI_COMMAND) gets the image
// on its stdin, does the I/O, the decoding and the scan, and writes back only the small result;
// it is killed on a timeout. A hostile image's worst case is then that child's, not luod's.
import { fstatSync } from "node:fs";
import { SUPPORTED_COMPRESSIONS, type Compression } from "./image-payload";
import { ABI_KINDS, type ImageAbiScan } from "./image-abi";
import { IMAGE_ABI_COMMAND, selfCommand } from "../self-command";
import { escapeControl } from "../wire/escape";

/** Cap on the decompressed kernel: Debian's 7.2 vmlinux.bin is 62 MB, ours 17 MB. */
export const DEFAULT_MAX_VMLINUX_BYTES = 256 << 20;
/** A Debian kernel decodes in ~0.6 s here; a loaded 2-core host must not fail it. */
export const DEFAULT_IMAGE_ABI_TIMEOUT_MS = 30_000;

/** What the child reads: the image is its fd 0 (image-child.ts); `fd` is the caller's open image. */
export interface ImageAbiJob {
  fd: number;
  payloadOffset: number;
  payloadLength: number;
  maxOutputBytes: number;
}

/** "worker": the reader process failed (the name predates the process; STATUS and logs show it). */
export type ImageAbiFailureCode = "unsupported" | "too-large" | "corrupt" | "io" | "timeout" | "worker";

export type ImageAbiResult =
  | ({ ok: true; compression: Compression; decompressedBytes: number; ms: number } & ImageAbiScan)
  | { ok: false; code: ImageAbiFailureCode; compression?: Compression; message: string };

export interface ReadImageAbiOptions {
  timeoutMs?: number;
  maxOutputBytes?: number;
}

const FAILURE_CODES = new Set<string>(["unsupported", "too-large", "corrupt", "io", "timeout", "worker"] satisfies ImageAbiFailureCode[]);
const COMPRESSIONS = new Set<string>(["gzip", "zstd", "lz4", "xz", "lzma", "bzip2", "lzo", "unknown"] satisfies Compression[]);

/** The child's answer is one short JSON line: more than this is not our child talking. */
const MAX_REPLY_BYTES = 1 << 20;

/**
 * Read the ABI strings and banners of the kernel image open at `fd` (its payload as
 * inspectKernelImage found it). The fd must stay open until the promise settles. Never rejects.
 */
export async function readImageAbi(
  fd: number,
  info: { payloadOffset: number; payloadLength: number },
  opts: ReadImageAbiOptions = {},
): Promise<ImageAbiResult> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_IMAGE_ABI_TIMEOUT_MS;
  const maxOutputBytes = opts.maxOutputBytes ?? DEFAULT_MAX_VMLINUX_BYTES;
  try {
    fstatSync(fd); // a bad fd is the caller's I/O failure, not a child that cannot start
  } catch (e) {
    return { ok: false, code: "io", message: `could not read the compressed kernel: ${(e as { code?: string }).code ?? String(e)}` };
  }
  let child: ReturnType<typeof Bun.spawn>;
  try {
    child = Bun.spawn({
      cmd: selfCommand([IMAGE_ABI_COMMAND, String(info.payloadOffset), String(info.payloadLength), String(maxOutputBytes)]),
      stdin: fd, stdout: "pipe", stderr: "pipe", env: {},
    });
  } catch (e) {
    return { ok: false, code: "worker", message: `could not start the image reader: ${(e as Error).message}` };
  }
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill("SIGKILL");
  }, timeoutMs);
  try {
    const [out, err, code] = await Promise.all([
      new Response(child.stdout as ReadableStream).text(),
      new Response(child.stderr as ReadableStream).text(),
      child.exited,
    ]);
    if (timedOut) return { ok: false, code: "timeout", message: `reading the image's ABI took longer than ${timeoutMs} ms` };
    // its stderr may quote the image's bytes: escaped here, since the line reaches --json and STATUS
    const line = escapeControl(err.trim().split("\n", 1)[0]!.slice(0, 200));
    const why = code !== 0 ? `exited with ${child.signalCode ?? code}${line ? `: ${line}` : ""}` : null;
    const reply = why === null ? parseReply(out) : null;
    return reply ?? { ok: false, code: "worker", message: `the image reader ${why ?? "gave no answer"}` };
  } catch (e) {
    return { ok: false, code: "worker", message: `the image reader failed: ${escapeControl((e as Error)?.message ?? String(e))}` };
  } finally {
    clearTimeout(timer);
  }
}

/** The child's JSON line, checked for the fields luod reads; null if it is not one. */
export function parseReply(out: string): ImageAbiResult | null {
  if (out.length > MAX_REPLY_BYTES) return null;
  let r: unknown;
  try {
    r = JSON.parse(out);
  } catch {
    return null;
  }
  if (typeof r !== "object" || r === null) return null;
  const o = r as Record<string, unknown>;
  const strings = (x: unknown) => Array.isArray(x) && x.every((s) => typeof s === "string");
  const compression = (x: unknown) => x === undefined || COMPRESSIONS.has(x as string);
  if (o.ok === false)
    return FAILURE_CODES.has(o.code as string) && typeof o.message === "string" && compression(o.compression) ? (o as ImageAbiResult) : null;
  const str = (x: unknown) => x === null || typeof x === "string";
  const amb = o.ambiguous as Record<string, unknown> | null;
  const ok = o.ok === true && SUPPORTED_COMPRESSIONS.includes(o.compression as Compression)
    && typeof o.decompressedBytes === "number" && typeof o.ms === "number" && str(o.luo) && str(o.memfd) && str(o.kho)
    && typeof amb === "object" && amb !== null && !Array.isArray(amb)
    && Object.entries(amb).every(([k, v]) => (ABI_KINDS as readonly string[]).includes(k) && strings(v))
    && strings(o.banners);
  return ok ? (o as ImageAbiResult) : null;
}

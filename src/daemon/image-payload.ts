// The compressed kernel inside an x86 bzImage (pure over bytes; no I/O): which compression it
// uses, and decompressing the ones luod reads (gzip, zstd, lz4), with a cap on the output.
//
// What the payload is (arch/x86/boot/compressed/Makefile, scripts/Makefile.lib): vmlinux.bin(.relocs)
// compressed, and for every compression but gzip a 4-byte little-endian "size_append" suffix with
// the uncompressed size (gzip's own trailer carries it). payload_length counts that suffix
// (mkpiggy.c), and the zstd/xz tools refuse the file with it: it is stripped before decoding, and
// the decoded size must equal it (the boot decompressor trusts it: decompress_unlz4.c).
// lz4 is the "legacy" format of `lz4 -l` (lib/decompress_unlz4.c): magic 0x184C2102, then blocks,
// each a 32-bit LE compressed size and an LZ4 block of at most 8 MiB of output.
import { gunzipSync, zstdDecompressSync } from "node:zlib";

export type Compression = "gzip" | "zstd" | "lz4" | "xz" | "lzma" | "bzip2" | "lzo" | "unknown";
export const SUPPORTED_COMPRESSIONS: readonly Compression[] = ["gzip", "zstd", "lz4"];

/** Compression of a payload, by its magic bytes (the first ones the kernel's decompressors check). */
export function detectCompression(b: Uint8Array): Compression {
  const starts = (...m: number[]) => b.length >= m.length && m.every((x, i) => b[i] === x);
  if (starts(0x1f, 0x8b)) return "gzip"; // 0x1f 0x8b (0x1f 0x9e: old gzip, never made by Kbuild)
  if (starts(0x28, 0xb5, 0x2f, 0xfd)) return "zstd";
  if (starts(0x02, 0x21, 0x4c, 0x18)) return "lz4"; // legacy lz4 (lz4 -l); the frame format is not used by Kbuild
  if (starts(0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00)) return "xz";
  if (starts(0x42, 0x5a, 0x68) && b.length > 3 && b[3]! >= 0x31 && b[3]! <= 0x39) return "bzip2"; // "BZh1".."BZh9"
  if (starts(0x89, 0x4c, 0x5a, 0x4f, 0x00, 0x0d, 0x0a, 0x1a, 0x0a)) return "lzo"; // lzop
  if (starts(0x5d, 0x00, 0x00)) return "lzma"; // lzma_alone: properties 0x5d, then the dictionary size (LE)
  return "unknown";
}

export type DecompressFailure =
  | { ok: false; code: "unsupported"; compression: Compression; message: string }
  | { ok: false; code: "too-large"; compression: Compression; message: string }
  | { ok: false; code: "corrupt"; compression: Compression; message: string };

export type DecompressResult = { ok: true; compression: Compression; data: Uint8Array } | DecompressFailure;

/** The message for a compression luod cannot read (the exact wording is part of the contract). */
export function unsupportedMessage(c: Compression): string {
  return `could not read the ABI of this image (compression ${c})`;
}

/**
 * Decompress a bzImage payload (as payload_offset/payload_length delimit it, size suffix
 * included) to at most `maxBytes` bytes. Never throws on bad input: failures are typed.
 */
export function decompressPayload(payload: Uint8Array, maxBytes: number): DecompressResult {
  const compression = detectCompression(payload);
  const tooLarge = (): DecompressFailure => ({
    ok: false, code: "too-large", compression,
    message: `the decompressed kernel is larger than ${maxBytes} bytes (compression ${compression})`,
  });
  const corrupt = (why: string): DecompressFailure => ({
    ok: false, code: "corrupt", compression,
    message: `the compressed kernel is corrupt (compression ${compression}): ${why}`,
  });
  try {
    switch (compression) {
      case "gzip":
        return { ok: true, compression, data: gunzipSync(payload, { maxOutputLength: maxBytes }) };
      case "zstd": {
        if (payload.length < 8) return corrupt("too short");
        const size = sizeSuffix(payload);
        if (size > maxBytes) return tooLarge();
        const data = zstdDecompressSync(payload.subarray(0, payload.length - 4), { maxOutputLength: maxBytes });
        // Bun returns what it decoded so far from a truncated frame, without an error
        if (data.length !== size) return corrupt(`it decodes to ${data.length} bytes, its size suffix says ${size}`);
        return { ok: true, compression, data };
      }
      case "lz4": {
        if (payload.length < 8) return corrupt("too short");
        const size = sizeSuffix(payload);
        if (size > maxBytes) return tooLarge();
        const r = decodeLegacyLz4(payload, size, maxBytes);
        if (r === TOO_LARGE) return tooLarge();
        if (typeof r === "string") return corrupt(r);
        if (r.length !== size) return corrupt(`it decodes to ${r.length} bytes, its size suffix says ${size}`);
        return { ok: true, compression, data: r };
      }
      default:
        return { ok: false, code: "unsupported", compression, message: unsupportedMessage(compression) };
    }
  } catch (e) {
    const err = e as { code?: string; message?: string };
    if (err.code === "ERR_BUFFER_TOO_LARGE" || /larger than|too large/i.test(err.message ?? "")) return tooLarge();
    return corrupt(String(err.message ?? e).split("\n", 1)[0]!);
  }
}

const LZ4_LEGACY_MAGIC = 0x184c2102;
/** lib/decompress_unlz4.c: LZ4_DEFAULT_UNCOMPRESSED_CHUNK_SIZE, the legacy format's block size. */
export const LZ4_LEGACY_BLOCK_BYTES = 8 << 20;
const TOO_LARGE = Symbol("too large");

/** size_append: the uncompressed size, 32-bit little-endian, in the payload's last 4 bytes. */
function sizeSuffix(payload: Uint8Array): number {
  return new DataView(payload.buffer, payload.byteOffset, payload.byteLength).getUint32(payload.length - 4, true);
}

/**
 * Legacy-format LZ4 (`lz4 -l`) as Kbuild makes it: the kernel's 4-byte size suffix is the last
 * thing in `src`; `hint` (its value) only sizes the first output buffer. Every read and write is bounds-checked: hostile
 * input yields an error string, output beyond `maxBytes` yields TOO_LARGE. A match may reach back
 * into earlier blocks' output (never before the start of the output).
 */
function decodeLegacyLz4(src: Uint8Array, hint: number, maxBytes: number): Uint8Array | string | typeof TOO_LARGE {
  if (src.length < 8) return "too short";
  const dv = new DataView(src.buffer, src.byteOffset, src.byteLength);
  const end = src.length - 4; // without size_append (decompress_unlz4.c: in_len - 4)
  let out = new Uint8Array(Math.max(Math.min(hint, maxBytes), 1 << 16));
  let op = 0;
  const reserve = (n: number): boolean => {
    if (op + n <= out.length) return true;
    if (op + n > maxBytes) return false;
    const next = new Uint8Array(Math.min(maxBytes, Math.max(op + n, out.length * 2)));
    next.set(out.subarray(0, op));
    out = next;
    return true;
  };

  if (dv.getUint32(0, true) !== LZ4_LEGACY_MAGIC) return "no legacy lz4 magic";
  let ip = 4;
  while (end - ip >= 4) {
    const chunk = dv.getUint32(ip, true);
    ip += 4;
    if (chunk === LZ4_LEGACY_MAGIC) continue; // concatenated streams
    if (chunk === 0) break; // end of stream
    if (chunk > end - ip) return `a block of ${chunk} bytes runs past the end of the data`;
    const blockEnd = ip + chunk;
    const blockStart = op;
    // one LZ4 block: sequences of (token, literals, offset, match) until the input ends after literals
    for (;;) {
      if (ip >= blockEnd) return "a block ends without its last literals";
      const token = src[ip++]!;
      let lit = token >> 4;
      if (lit === 15) {
        for (;;) {
          if (ip >= blockEnd) return "a literal length runs past the block";
          const b = src[ip++]!;
          lit += b;
          if (b !== 255) break;
        }
      }
      if (lit > blockEnd - ip) return "literals run past the block";
      if (op - blockStart + lit > LZ4_LEGACY_BLOCK_BYTES) return "a block decodes to more than 8 MiB";
      if (!reserve(lit)) return TOO_LARGE;
      if (lit < 32) {
        for (const stop = ip + lit; ip < stop; ) out[op++] = src[ip++]!; // short: cheaper than a subarray
      } else {
        out.set(src.subarray(ip, ip + lit), op);
        ip += lit;
        op += lit;
      }
      if (ip === blockEnd) break; // the last sequence has literals only
      if (blockEnd - ip < 2) return "a match offset runs past the block";
      const offset = src[ip]! | (src[ip + 1]! << 8);
      ip += 2;
      if (offset === 0) return "a match has offset 0";
      if (offset > op) return "a match reaches back before the start of the output";
      let len = (token & 15) + 4;
      if ((token & 15) === 15) {
        for (;;) {
          if (ip >= blockEnd) return "a match length runs past the block";
          const b = src[ip++]!;
          len += b;
          if (b !== 255) break;
        }
      }
      if (op - blockStart + len > LZ4_LEGACY_BLOCK_BYTES) return "a block decodes to more than 8 MiB";
      if (!reserve(len)) return TOO_LARGE;
      let from = op - offset;
      if (offset === 1) {
        // a run of one byte (a kernel's zero padding: 38% of the test VM's decoded kernel): memset, not a loop
        out.fill(out[from]!, op, op + len);
        op += len;
      } else if (offset >= len && len >= 32) {
        out.copyWithin(op, from, from + len);
        op += len;
      } else {
        // short, or overlapping (a run): forward, byte by byte
        const stop = op + len;
        while (op < stop) out[op++] = out[from++]!;
      }
    }
  }
  return out.subarray(0, op);
}

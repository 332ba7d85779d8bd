// x86 bzImage header inspection (pure over bytes; no I/O).
//
// Offsets: Documentation/arch/x86/boot.rst ("the real-mode kernel header") and
// arch/x86/include/uapi/asm/bootparam.h (struct setup_header at boot_params + 0x1F1).
// Checks: exactly those of arch/x86/kernel/kexec-bzimage64.c:bzImage64_probe (which makes
// kexec_file_load fail with ENOEXEC), plus the truncation check of bzImage64_load, plus
// relocatable_kernel (a KHO load places every segment inside the scratch areas, wherever they are).

/** How many leading bytes of the file luod should read and pass as `head`. The setup code is
 *  (setup_sects + 1) * 512 bytes (≤ 128 KiB in theory, ~16–32 KiB in practice); the version
 *  string lives inside it. */
export const KERNEL_HEAD_BYTES = 64 * 1024;

const OFF_SETUP_SECTS = 0x1f1;
const OFF_BOOT_FLAG = 0x1fe;
const OFF_HEADER = 0x202; // "HdrS"
const OFF_VERSION = 0x206;
const OFF_KERNEL_VERSION = 0x20e; // pointer to the version string, less 0x200
const OFF_LOADFLAGS = 0x211;
const OFF_RELOCATABLE = 0x234;
const OFF_XLOADFLAGS = 0x236;
const OFF_CMDLINE_SIZE = 0x238;
const OFF_PAYLOAD_OFFSET = 0x248; // from the start of the protected-mode code (boot protocol ≥ 2.08)
const OFF_PAYLOAD_LENGTH = 0x24c;
const OFF_INIT_SIZE = 0x260;
const HEADER_END = 0x264; // we read up to init_size inclusive

const LOADED_HIGH = 1 << 0;
const XLF_KERNEL_64 = 1 << 0;
const XLF_CAN_BE_LOADED_ABOVE_4G = 1 << 1;
/** kexec-bzimage64.c: "elfcorehdr=0x<64bit-value>" must always fit after the command line. */
const MAX_ELFCOREHDR_STR_LEN = 30;
/** Lowest boot protocol bzImage64_probe accepts. */
const MIN_PROTOCOL = 0x020c;

export interface KernelImageInfo {
  ok: true;
  /** The kernel_version string, e.g. "7.2.13 (root@build) #1 SMP ...". */
  version: string;
  /** Boot protocol version, e.g. "2.15". */
  protocol: string;
  relocatable: boolean;
  canLoadAbove4G: boolean;
  /** Linear memory the kernel needs while booting; kexec's kernel segment is PAGE_ALIGN(this). */
  initSize: number;
  /** setup_header.cmdline_size: the kernel's max command line including the NUL. */
  cmdlineSize: number;
  /** Longest command line kexec_file_load accepts for this image, in bytes without the NUL. */
  maxCmdlineLength: number;
  /** Absolute file offset of the compressed kernel (vmlinux.bin.*, with its size suffix):
   *  (setup_sects + 1) * 512 + setup_header.payload_offset. Checked to lie inside the file. */
  payloadOffset: number;
  /** setup_header.payload_length: bytes of the compressed kernel, suffix included. */
  payloadLength: number;
}

export type KernelImageResult = KernelImageInfo | { ok: false; reason: string };

/**
 * Inspect the head of a kernel image file.
 * @param head the first bytes of the file (read KERNEL_HEAD_BYTES, or the whole file if smaller)
 * @param size the whole file size in bytes
 */
export function inspectKernelImage(head: Uint8Array, size: number): KernelImageResult {
  const fail = (reason: string) => ({ ok: false as const, reason });
  if (size < 2 * 512) return fail(`file is too short to be a bzImage (${size} bytes)`);
  if (head.length < HEADER_END) {
    return fail(`only ${head.length} bytes of the header were read; need at least ${HEADER_END}`);
  }
  const dv = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const u8 = (o: number) => dv.getUint8(o);
  const u16 = (o: number) => dv.getUint16(o, true);
  const u32 = (o: number) => dv.getUint32(o, true);

  if (u32(OFF_HEADER) !== 0x53726448 /* "HdrS" little-endian */) {
    if (head[0] === 0x7f && head[1] === 0x45 && head[2] === 0x4c && head[3] === 0x46) {
      return fail("not a bzImage: this is an ELF file (vmlinux); use arch/x86/boot/bzImage");
    }
    if (head[0] === 0x1f && head[1] === 0x8b) {
      return fail("not a bzImage: this is a gzip file; decompress it first");
    }
    return fail('not a bzImage: no "HdrS" magic at offset 0x202');
  }
  if (u16(OFF_BOOT_FLAG) !== 0xaa55) return fail("not a bzImage: no x86 boot sector (0xAA55 at 0x1FE)");

  const proto = u16(OFF_VERSION);
  const protocol = `${proto >> 8}.${(proto & 0xff).toString().padStart(2, "0")}`;
  if (proto < MIN_PROTOCOL) return fail(`boot protocol ${protocol} is too old: kexec_file_load needs 2.12 or later`);

  const loadflags = u8(OFF_LOADFLAGS);
  if (!(loadflags & LOADED_HIGH)) return fail("zImage, not a bzImage (LOADED_HIGH is not set)");

  const xloadflags = u16(OFF_XLOADFLAGS);
  const relocatable = u8(OFF_RELOCATABLE) !== 0;
  const canLoadAbove4G = (xloadflags & XLF_CAN_BE_LOADED_ABOVE_4G) !== 0;
  if (!(xloadflags & XLF_KERNEL_64)) return fail("not a 64-bit bzImage (XLF_KERNEL_64 is not set)");
  if (!canLoadAbove4G) return fail("the kernel cannot be loaded above 4 GiB (XLF_CAN_BE_LOADED_ABOVE_4G is not set)");
  if (!relocatable) return fail("the kernel is not relocatable (CONFIG_RELOCATABLE=n)");

  let setupSects = u8(OFF_SETUP_SECTS);
  if (setupSects === 0) setupSects = 4;
  const setupBytes = (setupSects + 1) * 512;
  if (size < setupBytes) return fail(`bzImage truncated: ${size} bytes, the setup alone is ${setupBytes}`);

  const ptr = u16(OFF_KERNEL_VERSION);
  if (ptr === 0) return fail("the image has no kernel version string");
  const vOff = ptr + 0x200;
  if (vOff >= setupBytes) return fail(`the kernel version pointer (0x${vOff.toString(16)}) lies outside the setup code`);
  if (vOff >= head.length) {
    return fail(`the kernel version string (at 0x${vOff.toString(16)}) lies beyond the ${head.length} bytes read`);
  }
  const nul = head.indexOf(0, vOff);
  if (nul < 0) return fail("the kernel version string is not NUL-terminated within the bytes read");
  const version = new TextDecoder("latin1").decode(head.subarray(vOff, Math.min(nul, vOff + 256))).trim();
  if (version.length === 0) return fail("the kernel version string is empty");

  const payloadOffset = setupBytes + u32(OFF_PAYLOAD_OFFSET);
  const payloadLength = u32(OFF_PAYLOAD_LENGTH);
  if (payloadLength === 0) return fail("the image has no compressed kernel (payload_length is 0)");
  if (payloadOffset + payloadLength > size) {
    return fail(
      `the compressed kernel (${payloadLength} bytes at offset ${payloadOffset}) runs past the end of the ${size}-byte file`,
    );
  }

  const cmdlineSize = proto >= 0x0206 ? u32(OFF_CMDLINE_SIZE) : 255;
  const initSize = u32(OFF_INIT_SIZE);
  return {
    ok: true,
    version,
    protocol,
    relocatable,
    canLoadAbove4G,
    initSize,
    cmdlineSize,
    maxCmdlineLength: Math.max(0, cmdlineSize - MAX_ELFCOREHDR_STR_LEN - 1),
    payloadOffset,
    payloadLength,
  };
}

/** The release part of a version string ("7.2.13 (root@x) #1 ..." → "7.2.13"). */
export function kernelRelease(version: string): string {
  return version.split(/\s+/, 1)[0] ?? "";
}

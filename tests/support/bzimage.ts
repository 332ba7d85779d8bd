// A sparse file that passes luod's bzImage header checks (src/daemon/bzimage.ts): the x86 setup
// header of a 64-bit relocatable kernel, then `size` bytes in all, the rest a hole. Never a kernel.
import { closeSync, ftruncateSync, openSync, writeSync } from "node:fs";

export function sparseBzImage(path: string, size: number, version = "7.2.13 (luo@test) #1 SMP"): void {
  const setupSects = 16;
  const head = new Uint8Array((setupSects + 1) * 512);
  const dv = new DataView(head.buffer);
  head[0x1f1] = setupSects;
  dv.setUint16(0x1fe, 0xaa55, true);
  head.set(new TextEncoder().encode("HdrS"), 0x202);
  dv.setUint16(0x206, 0x020f, true); // boot protocol 2.15
  head[0x211] = 0x01; // LOADED_HIGH
  head[0x234] = 1; // relocatable
  dv.setUint16(0x236, 0x7f, true); // XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G | …
  dv.setUint32(0x238, 2047, true); // cmdline_size
  dv.setUint32(0x260, 0x3c3c000, true); // init_size
  dv.setUint32(0x248, 0, true); // payload_offset: the "compressed kernel" starts right after the setup…
  dv.setUint32(0x24c, Math.min(4096, size - head.length), true); // …and is part of the hole
  dv.setUint16(0x20e, 0x1000, true); // version string at 0x1200
  head.set(new TextEncoder().encode(version + "\0"), 0x1200);
  const fd = openSync(path, "w", 0o644);
  try {
    writeSync(fd, head);
    ftruncateSync(fd, size);
  } finally {
    closeSync(fd);
  }
}

/** A whole bzImage in memory: the setup header of sparseBzImage's, then `payload` as its
 *  compressed kernel (payload_offset 0, payload_length = payload.length). */
export function bzImageWithPayload(payload: Uint8Array, version = "7.2.13 (luo@test) #1 SMP"): Uint8Array {
  const setupSects = 16;
  const setup = (setupSects + 1) * 512;
  const img = new Uint8Array(setup + payload.length + 512); // some bytes after it, like the real trailer
  const dv = new DataView(img.buffer);
  img[0x1f1] = setupSects;
  dv.setUint16(0x1fe, 0xaa55, true);
  img.set(new TextEncoder().encode("HdrS"), 0x202);
  dv.setUint16(0x206, 0x020f, true);
  img[0x211] = 0x01;
  img[0x234] = 1;
  dv.setUint16(0x236, 0x7f, true);
  dv.setUint32(0x238, 2047, true);
  dv.setUint32(0x260, 0x3c3c000, true);
  dv.setUint32(0x248, 0, true);
  dv.setUint32(0x24c, payload.length, true);
  dv.setUint16(0x20e, 0x1000, true);
  img.set(new TextEncoder().encode(version + "\0"), 0x1200);
  img.set(payload, setup);
  return img;
}

/** A stand-in for a decompressed kernel: filler, the three ABI strings placed as the real kernel
 *  places them (memfd's inline in a struct, after a pointer), and `banners`. */
export function fakeVmlinux(
  abi: { luo?: string | null; memfd?: string | null; kho?: string | null } = {},
  banners: string[] = ["Linux version 7.2.13 (luo@test) (gcc 12) #1 SMP PREEMPT Thu Dec  3 20:37:16 UTC 2026\n"],
  size = 1 << 20,
): Uint8Array {
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i++) out[i] = (i * 2654435761) >>> 24; // deterministic filler
  const enc = new TextEncoder();
  let at = 4096;
  const put = (bytes: Uint8Array) => {
    out.set(bytes, at);
    at += bytes.length + 64;
  };
  const luo = abi.luo === undefined ? "luo-v5" : abi.luo;
  const memfd = abi.memfd === undefined ? "memfd-v2" : abi.memfd;
  const kho = abi.kho === undefined ? "kho-v4" : abi.kho;
  if (luo) put(enc.encode(`\0LUO\0${luo}\0include/linux\0`));
  if (memfd) put(new Uint8Array([0x40, 0x11, 0xff, 0xff, 0xff, 0xff, ...enc.encode(memfd), 0, 0, 0, 0]));
  if (kho) put(enc.encode(`\0blob-size\0${kho}\0compatible\0`));
  for (const b of banners) put(enc.encode(`\0${b}\0`));
  return out;
}

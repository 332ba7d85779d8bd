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

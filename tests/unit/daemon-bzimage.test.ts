import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { inspectKernelImage, kernelRelease, KERNEL_HEAD_BYTES } from "../../src/daemon/bzimage";

/** A synthetic bzImage head: just enough of the x86 setup header (boot.rst) to be accepted. */
function fakeImage(o: {
  size?: number; setupSects?: number; magic?: string; bootFlag?: number; protocol?: number; loadflags?: number;
  relocatable?: number; xloadflags?: number; version?: string | null; versionPtr?: number; cmdlineSize?: number; initSize?: number;
  payloadOffset?: number; payloadLength?: number;
} = {}): Uint8Array {
  const setupSects = o.setupSects ?? 16;
  const size = o.size ?? (setupSects + 1) * 512 + 4096;
  const buf = new Uint8Array(size);
  const dv = new DataView(buf.buffer);
  buf[0x1f1] = setupSects;
  dv.setUint16(0x1fe, o.bootFlag ?? 0xaa55, true);
  buf.set(new TextEncoder().encode(o.magic ?? "HdrS"), 0x202);
  dv.setUint16(0x206, o.protocol ?? 0x020f, true);
  buf[0x211] = o.loadflags ?? 0x01;
  buf[0x234] = o.relocatable ?? 1;
  dv.setUint16(0x236, o.xloadflags ?? 0x7f, true);
  dv.setUint32(0x238, o.cmdlineSize ?? 2047, true);
  dv.setUint32(0x260, o.initSize ?? 0x3c3c000, true);
  dv.setUint32(0x248, o.payloadOffset ?? 0, true); // from the end of the setup code
  dv.setUint32(0x24c, o.payloadLength ?? 64, true);
  if (o.version !== null) {
    const ptr = o.versionPtr ?? 0x1000; // string at 0x1200
    dv.setUint16(0x20e, ptr, true);
    const s = new TextEncoder().encode((o.version ?? "7.2.13 (luo@build) #1 SMP PREEMPT_DYNAMIC") + "\0");
    if (ptr + 0x200 + s.length <= size) buf.set(s, ptr + 0x200);
  }
  return buf;
}

describe("inspectKernelImage (synthetic)", () => {
  test("accepts a 64-bit relocatable bzImage and reads its fields", () => {
    const img = fakeImage();
    const r = inspectKernelImage(img, img.length);
    expect(r).toEqual({
      ok: true,
      version: "7.2.13 (luo@build) #1 SMP PREEMPT_DYNAMIC",
      protocol: "2.15",
      relocatable: true,
      canLoadAbove4G: true,
      initSize: 0x3c3c000,
      cmdlineSize: 2047,
      maxCmdlineLength: 2047 - 31,
      payloadOffset: 17 * 512,
      payloadLength: 64,
    });
    if (r.ok) expect(kernelRelease(r.version)).toBe("7.2.13");
  });
  test("a subarray view with a byteOffset works", () => {
    const img = fakeImage();
    const big = new Uint8Array(img.length + 100);
    big.set(img, 100);
    expect(inspectKernelImage(big.subarray(100), img.length).ok).toBe(true);
  });
  const bad: [string, Parameters<typeof fakeImage>[0], string][] = [
    ["no magic", { magic: "XXXX" }, "HdrS"],
    ["no boot flag", { bootFlag: 0 }, "0xAA55"],
    ["old protocol", { protocol: 0x020b }, "2.11 is too old"],
    ["zImage", { loadflags: 0 }, "LOADED_HIGH"],
    ["32-bit", { xloadflags: 0x02 }, "XLF_KERNEL_64"],
    ["below 4G", { xloadflags: 0x01 }, "XLF_CAN_BE_LOADED_ABOVE_4G"],
    ["not relocatable", { relocatable: 0 }, "not relocatable"],
    ["no version", { version: null }, "no kernel version"],
    ["version pointer outside setup", { versionPtr: 0x3000 }, "outside the setup"],
    ["empty version", { version: "" }, "empty"],
    ["no payload", { payloadLength: 0 }, "no compressed kernel"],
    ["payload past the end", { payloadOffset: 4096 - 63 }, "runs past the end"],
    ["payload length past the end", { payloadLength: 4097 }, "runs past the end"],
  ];
  for (const [name, opts, reason] of bad) {
    test(`refuses: ${name}`, () => {
      const img = fakeImage(opts);
      const r = inspectKernelImage(img, img.length);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.reason).toContain(reason);
    });
  }
  test("refuses short files, short heads, truncated images", () => {
    expect(inspectKernelImage(new Uint8Array(100), 100)).toEqual({ ok: false, reason: expect.stringContaining("too short") });
    const img = fakeImage();
    expect(inspectKernelImage(img.subarray(0, 0x200), img.length)).toEqual({ ok: false, reason: expect.stringContaining("header") });
    expect(inspectKernelImage(img.subarray(0, 0x1100), img.length)).toEqual({ ok: false, reason: expect.stringContaining("beyond") });
    expect(inspectKernelImage(img, 17 * 512 - 1)).toEqual({ ok: false, reason: expect.stringContaining("truncated") });
  });
  test("names ELF and gzip files", () => {
    const elf = new Uint8Array(4096);
    elf.set([0x7f, 0x45, 0x4c, 0x46]);
    expect(inspectKernelImage(elf, elf.length)).toEqual({ ok: false, reason: expect.stringContaining("ELF") });
    const gz = new Uint8Array(4096);
    gz.set([0x1f, 0x8b]);
    expect(inspectKernelImage(gz, gz.length)).toEqual({ ok: false, reason: expect.stringContaining("gzip") });
  });
  test("setup_sects 0 means 4", () => {
    const img = fakeImage({ setupSects: 0, versionPtr: 0x600, size: 5 * 512 + 100 });
    expect(inspectKernelImage(img, img.length).ok).toBe(true);
  });
});

// The real kernel built by scripts/vm/build-kernel.sh, when it is there.
function findRealBzImage(): string | null {
  const candidates: string[] = [];
  const base = join(homedir(), ".cache/luo-agent/kernel");
  if (existsSync(base)) {
    for (const d of readdirSync(base)) {
      candidates.push(join(base, d, "bzImage"), join(base, d, "obj/arch/x86/boot/bzImage"));
    }
  }
  return candidates.find((p) => existsSync(p) && statSync(p).size > 0) ?? null;
}
const real = findRealBzImage();
if (!real) console.warn("bzimage.test: SKIP real-kernel test: no ~/.cache/luo-agent/kernel/*/bzImage (build the VM kernel first)");

describe("inspectKernelImage (real kernel)", () => {
  test.skipIf(!real)(`inspects ${real ?? "~/.cache/luo-agent/kernel/*/bzImage (absent)"}`, () => {
    const bytes = readFileSync(real!);
    const r = inspectKernelImage(new Uint8Array(bytes.buffer, bytes.byteOffset, Math.min(bytes.length, KERNEL_HEAD_BYTES)), bytes.length);
    if (!r.ok) throw new Error(r.reason);
    expect(r.version).toMatch(/^7\.\d+\.\d+/);
    expect(r.relocatable).toBe(true);
    expect(r.canLoadAbove4G).toBe(true);
    expect(r.initSize).toBeGreaterThan(1 << 20);
    expect(r.cmdlineSize).toBeGreaterThanOrEqual(2047);
    expect(r.payloadOffset).toBeGreaterThan(512);
    expect(r.payloadOffset + r.payloadLength).toBeLessThanOrEqual(bytes.length);
  });
});

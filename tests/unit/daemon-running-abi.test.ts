// The running kernel's ABI strings (src/daemon/running-abi.ts): KHO's debugfs files (a raw
// struct luo_ser and the KHO root FDT, built here with the kernel's layout) and the running image
// (trusted only if root's, not writable by others, and its banner is /proc/version), over a fake
// root directory.
import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import {
  fdtRootCompatible, imageCandidates, luoSerCompatible, probeRunningAbi, readKhoDebugfs, runningAbiStrings,
} from "../../src/daemon/running-abi";
import { bzImageWithPayload, fakeVmlinux } from "../support/bzimage";
import { buildFdt, u64be } from "../support/fdt";
import { lz4Legacy } from "../support/lz4";

const tmp = mkdtempSync(join(tmpdir(), "luo-running-abi-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const euid = process.geteuid?.() ?? 0;
const isRoot = euid === 0;
const trustedUids = [0, euid];

const RELEASE = "7.2.13";
const BANNER = `Linux version ${RELEASE} (root@vm) (gcc 12) #1 SMP PREEMPT Thu Dec  3 20:37:16 UTC 2026\n`;

/** struct luo_ser: char compatible[8] (NUL-padded), then liveupdate_num, sessions_pa, flbs_pa. */
function luoSer(compatible: string): Uint8Array {
  const b = new Uint8Array(32);
  b.set(new TextEncoder().encode(compatible));
  b[8] = 1;
  return b;
}
/** The KHO root FDT as kho_out_fdt_setup and kho_add_subtree leave it. */
function khoFdt(compatible = "kho-v4"): Uint8Array {
  return buildFdt({
    props: [["compatible", compatible], ["preserved-memory-map", u64be(0x1234000n)]],
    children: [
      ["kexec-metadata", { props: [["fdt", u64be(0x5000n)], ["blob-size", u64be(16n)]] }],
      ["LUO", { props: [["fdt", u64be(0x6000n)], ["blob-size", u64be(32n)]] }],
    ],
  });
}

let n = 0;
function fakeRoot(o: { luo?: string | null; kho?: string | null; proc?: boolean } = {}): string {
  const root = join(tmp, `root${n++}`);
  const put = (path: string, data: Uint8Array | string) => {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), data);
  };
  if (o.luo !== null) put("/sys/kernel/debug/kho/out/sub_fdts/LUO", luoSer(o.luo ?? "luo-v5"));
  if (o.kho !== null) put("/sys/kernel/debug/kho/out/fdt", khoFdt(o.kho ?? "kho-v4"));
  if (o.proc !== false) {
    put("/proc/version", BANNER);
    put("/proc/sys/kernel/osrelease", RELEASE + "\n");
  }
  return root;
}
function putImage(
  root: string, path: string, abi: Parameters<typeof fakeVmlinux>[0] = {}, banners = [BANNER], mode = 0o644,
  version = `${RELEASE} (root@vm) #1 SMP PREEMPT Thu Dec  3 20:37:16 UTC 2026`,
): string {
  const abs = join(root, path);
  mkdirSync(dirname(abs), { recursive: true });
  writeFileSync(abs, bzImageWithPayload(lz4Legacy(fakeVmlinux(abi, banners)), version));
  chmodSync(abs, mode);
  return abs;
}

describe("fdtRootCompatible", () => {
  test("reads the root node's compatible of the KHO FDT (after other properties, NOPs, version 16)", () => {
    expect(fdtRootCompatible(khoFdt())).toEqual({ ok: true, value: "kho-v4" });
    const later = buildFdt({ props: [["preserved-memory-map", u64be(1n)], ["compatible", "kho-v9"]] }, { version: 16 });
    expect(fdtRootCompatible(later)).toEqual({ ok: true, value: "kho-v9" });
    // a NOP token before the root node and between properties
    const withNops = buildFdt({ props: [["compatible", "kho-v4"]] });
    const dv = new DataView(withNops.buffer);
    const offStruct = dv.getUint32(8);
    const padded = new Uint8Array(withNops.length + 4);
    padded.set(withNops.subarray(0, offStruct));
    new DataView(padded.buffer).setUint32(offStruct, 4); // FDT_NOP
    padded.set(withNops.subarray(offStruct), offStruct + 4);
    const pdv = new DataView(padded.buffer);
    pdv.setUint32(4, padded.length); // totalsize
    pdv.setUint32(12, dv.getUint32(12) + 4); // off_dt_strings
    pdv.setUint32(36, dv.getUint32(36) + 4); // size_dt_struct
    expect(fdtRootCompatible(padded)).toEqual({ ok: true, value: "kho-v4" });
  });

  test("malformed blobs yield a reason, never a throw or a read out of range", () => {
    const good = khoFdt();
    const set = (off: number, v: number) => {
      const b = good.slice();
      new DataView(b.buffer).setUint32(off, v);
      return b;
    };
    const cases: [string, Uint8Array, string][] = [
      ["short", good.subarray(0, 20), "too short"],
      ["no magic", set(0, 0xd00dfeee), "magic"],
      ["totalsize too big", set(4, good.length + 1), "exceeds"],
      ["truncated", good.subarray(0, good.length - 8), "exceeds"],
      ["struct block outside", set(36, good.length), "structure block lies outside"],
      ["strings block outside", set(32, good.length), "strings block lies outside"],
      ["old version", set(20, 15), "too old"],
      ["no compatible", buildFdt({ props: [["x", "y"]], children: [["LUO", { props: [["compatible", "kho-v4"]] }]] }), 'no "compatible"'],
      ["first node not the root", set(60, 0x41000000), "not the root"],
    ];
    for (const [name, blob, why] of cases) {
      const r = fdtRootCompatible(blob);
      expect({ name, ok: r.ok }).toEqual({ name, ok: false });
      if (!r.ok) expect(r.reason).toContain(why);
    }
    let seed = 7;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    for (let i = 0; i < 2000; i++) {
      const m = good.slice(0, Math.floor(rnd() * good.length) + 1);
      for (let k = 0; k < 3; k++) m[Math.floor(rnd() * m.length)] = Math.floor(rnd() * 256);
      expect(() => fdtRootCompatible(m)).not.toThrow();
    }
  });
});

describe("luoSerCompatible", () => {
  test("the NUL-padded string at the start of struct luo_ser", () => {
    expect(luoSerCompatible(luoSer("luo-v5"))).toEqual({ ok: true, value: "luo-v5" });
    expect(luoSerCompatible(new Uint8Array(8).fill(0x41)).ok).toBe(false);
    expect(luoSerCompatible(new TextEncoder().encode("kho-v4\0\0")).ok).toBe(false);
    expect(luoSerCompatible(new Uint8Array(0)).ok).toBe(false);
  });
});

describe("readKhoDebugfs", () => {
  test("reads LUO from out/sub_fdts/LUO and KHO from out/fdt", () => {
    expect(readKhoDebugfs(fakeRoot())).toEqual({ luo: "luo-v5", kho: "kho-v4", notes: [] });
  });
  test("absent or malformed files are notes, one line each", () => {
    const root = fakeRoot({ luo: null });
    writeFileSync(join(root, "/sys/kernel/debug/kho/out/fdt"), "garbage");
    const r = readKhoDebugfs(root);
    expect(r.luo).toBeNull();
    expect(r.kho).toBeNull();
    expect(r.notes).toEqual([
      "kho debugfs: /sys/kernel/debug/kho/out/sub_fdts/LUO: absent (debugfs not mounted, a kernel without CONFIG_KEXEC_HANDOVER_DEBUGFS, KHO or LUO off)",
      "kho debugfs: /sys/kernel/debug/kho/out/fdt: too short for an FDT header (7 bytes)",
    ]);
  });
});

describe("imageCandidates", () => {
  test("configured paths first, then /boot, /usr/lib/modules, /lib/modules for the release", () => {
    expect(imageCandidates("7.2.13", ["/srv/k", "/boot/vmlinuz-7.2.13"])).toEqual([
      "/srv/k", "/boot/vmlinuz-7.2.13", "/usr/lib/modules/7.2.13/vmlinuz", "/lib/modules/7.2.13/vmlinuz",
    ]);
    expect(imageCandidates("../../x")).toEqual([]);
  });
});

describe("probeRunningAbi", () => {
  test("debugfs gives LUO and KHO, the running image gives memfd (and agrees)", async () => {
    const root = fakeRoot();
    putImage(root, `/boot/vmlinuz-${RELEASE}`);
    const r = await probeRunningAbi({ root, trustedUids });
    expect(r).toEqual({
      luo: { value: "luo-v5", source: "kho debugfs" },
      memfd: { value: "memfd-v2", source: `running image /boot/vmlinuz-${RELEASE}` },
      kho: { value: "kho-v4", source: "kho debugfs" },
      image: `/boot/vmlinuz-${RELEASE}`,
      notes: [],
    });
    expect(runningAbiStrings(r)).toEqual({ luo: "luo-v5", memfd: "memfd-v2", kho: "kho-v4" });
  });

  test("without debugfs, everything comes from the running image (found under /usr/lib/modules)", async () => {
    const root = fakeRoot({ luo: null, kho: null });
    putImage(root, `/usr/lib/modules/${RELEASE}/vmlinuz`);
    const r = await probeRunningAbi({ root, trustedUids });
    const src = `running image /usr/lib/modules/${RELEASE}/vmlinuz`;
    expect(runningAbiStrings(r)).toEqual({ luo: "luo-v5", memfd: "memfd-v2", kho: "kho-v4" });
    expect([r.luo.source, r.memfd.source, r.kho.source]).toEqual([src, src, src]);
    expect(r.notes).toHaveLength(3); // two debugfs files absent, /boot/vmlinuz-… absent
  });

  test("an image that is group- or other-writable, another release or build, or not a regular file is not used", async () => {
    const root = fakeRoot({ luo: null, kho: null });
    putImage(root, "/srv/writable", {}, [BANNER], 0o664);
    putImage(root, "/srv/other-release", {}, [BANNER], 0o644, "7.2.14 (root@vm) #1 SMP");
    putImage(root, `/boot/vmlinuz-${RELEASE}`, {}, [BANNER.replace("#1", "#2")]);
    mkdirSync(join(root, `/usr/lib/modules/${RELEASE}/vmlinuz`), { recursive: true });
    Bun.spawnSync(["mkfifo", join(root, "/srv/fifo")]);
    const r = await probeRunningAbi({ root, trustedUids, candidates: ["/srv/writable", "/srv/other-release", "/srv/fifo"] });
    expect(runningAbiStrings(r)).toEqual({ luo: null, memfd: null, kho: null });
    expect(r.image).toBeNull();
    expect(r.notes.filter((l) => l.startsWith("running image"))).toEqual([
      "running image /srv/writable: writable by group or others (mode 0664): not trusted",
      "running image /srv/other-release: its setup header says release 7.2.14, not 7.2.13",
      "running image /srv/fifo: not a regular file",
      `running image /boot/vmlinuz-${RELEASE}: its banner is not /proc/version: another build`,
      `running image /usr/lib/modules/${RELEASE}/vmlinuz: not a regular file`,
      `running image /lib/modules/${RELEASE}/vmlinuz: absent`,
    ]);
  });

  test.skipIf(!isRoot)("an image owned by another user is not trusted (needs root to chown)", async () => {
    const root = fakeRoot({ luo: null, kho: null });
    chownSync(putImage(root, `/boot/vmlinuz-${RELEASE}`), 12345, 0);
    const r = await probeRunningAbi({ root });
    expect(r.image).toBeNull();
    expect(r.notes).toContain(`running image /boot/vmlinuz-${RELEASE}: belongs to uid 12345, not root: not trusted`);
  });

  test("a symlink to a trusted image is followed; a configured candidate is tried first", async () => {
    const root = fakeRoot({ luo: null, kho: null });
    putImage(root, "/srv/kernel-7.2.13", { luo: "luo-v5" });
    mkdirSync(join(root, "/boot"));
    symlinkSync("../srv/kernel-7.2.13", join(root, `/boot/vmlinuz-${RELEASE}`)); // relative: stays inside root
    putImage(root, "/srv/configured", { luo: "luo-v5" });
    const r = await probeRunningAbi({ root, trustedUids, candidates: ["/srv/configured"] });
    expect(r.image).toBe("/srv/configured");
    const viaLink = await probeRunningAbi({ root, trustedUids });
    expect(viaLink.image).toBe(`/boot/vmlinuz-${RELEASE}`);
    expect(viaLink.luo.value).toBe("luo-v5");
  });

  test("debugfs and the image disagree: that string is a conflict (null), with a note", async () => {
    const root = fakeRoot({ luo: "luo-v5" });
    putImage(root, `/boot/vmlinuz-${RELEASE}`, { luo: "luo-v6" });
    const r = await probeRunningAbi({ root, trustedUids });
    expect(r.luo).toEqual({ value: null, source: null });
    expect(r.kho.value).toBe("kho-v4");
    expect(r.notes).toEqual([`luo: kho debugfs says luo-v5, running image /boot/vmlinuz-${RELEASE} says luo-v6: conflict`]);
  });

  test("nothing found: every string null, and the notes say what was tried", async () => {
    const root = fakeRoot({ luo: null, kho: null, proc: false });
    const r = await probeRunningAbi({ root, trustedUids });
    expect(runningAbiStrings(r)).toEqual({ luo: null, memfd: null, kho: null });
    expect(r.notes).toHaveLength(3);
    expect(r.notes[2]).toStartWith("running image: cannot read /proc/version");
    for (const line of r.notes) expect(line).not.toContain("\n");
  });

  test("the running image without some string (a kernel without LIVEUPDATE_MEMFD) says so", async () => {
    const root = fakeRoot();
    putImage(root, `/boot/vmlinuz-${RELEASE}`, { memfd: null });
    const r = await probeRunningAbi({ root, trustedUids });
    expect(r.memfd).toEqual({ value: null, source: null });
    expect(r.notes).toEqual([`running image /boot/vmlinuz-${RELEASE}: no memfd string`]);
  });
});

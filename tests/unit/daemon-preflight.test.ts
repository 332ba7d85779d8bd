// The CHECK lines of issue 15, item 4 (src/daemon/preflight.ts): memory, scratch, panic, and the
// readers of /proc and debugfs over a temporary root.
import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import {
  LOW_MEMORY_FLOOR, SCRATCH_HEADROOM, checkMemory, checkPanic, checkScratch, fmtBytes, kernelPlacement, kstrtoint,
  memfdBytesHeldBy, panicTimeout, parseHexLines, parseMemTotal, placeSegments, readKhoScratch, readMemTotal,
  type KhoScratch, type ScratchInput,
} from "../../src/daemon/preflight";
import { memfdCreate, ftruncate } from "../../src/kernel/memfd";
import { closeFd, dupFd } from "../../src/kernel/fd";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

const roots: string[] = [];
afterEach(() => {
  for (const r of roots.splice(0)) rmSync(r, { recursive: true, force: true });
});

/** A temporary root with `files` (path → text) in it. */
function tempRoot(files: Record<string, string> = {}): string {
  const root = mkdtempSync(join(tmpdir(), "luo-preflight-"));
  roots.push(root);
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  return root;
}

const DEBUGFS_MOUNTED = "sysfs /sys sysfs rw 0 0\ndebugfs /sys/kernel/debug debugfs rw,nosuid,nodev,noexec,relatime 0 0\n";

function scratch(...areas: [number, number][]): KhoScratch {
  return { known: true, areas: areas.map(([addr, size]) => ({ addr, size })) };
}

describe("readMemTotal / parseMemTotal", () => {
  test("reads MemTotal in bytes from <root>/proc/meminfo", () => {
    const root = tempRoot({ "proc/meminfo": "MemTotal:       24683756 kB\nMemFree:        22928380 kB\n" });
    expect(readMemTotal(root)).toBe(24683756 * 1024);
  });
  test("is null when meminfo is absent", () => {
    expect(readMemTotal(tempRoot())).toBeNull();
  });
  test("is null for garbage or a MemTotal without a number in kB", () => {
    expect(readMemTotal(tempRoot({ "proc/meminfo": "\x00\x01garbage" }))).toBeNull();
    expect(parseMemTotal("MemTotal: lots kB\n")).toBeNull();
    expect(parseMemTotal("MemTotal: 1024 MB\n")).toBeNull();
    expect(parseMemTotal("MemFree: 1024 kB\n")).toBeNull();
  });
  test("the running kernel's own meminfo has a MemTotal", () => {
    expect(readMemTotal()).toBeGreaterThan(0);
  });
});

describe("readKhoScratch", () => {
  test("pairs scratch_phys and scratch_len, one 0x line per area as the kernel prints them", () => {
    const root = tempRoot({
      "sys/kernel/debug/kho/out/scratch_phys": "0x1000000\n0x100000000\n0x200000000\n",
      "sys/kernel/debug/kho/out/scratch_len": "0x8000000\n0x10000000\n0x4000000\n",
    });
    expect(readKhoScratch(root)).toEqual(scratch([0x1000000, 0x8000000], [0x100000000, 0x10000000], [0x200000000, 0x4000000]));
  });
  test("without debugfs mounted it cannot tell, and says how to mount it", () => {
    const r = readKhoScratch(tempRoot({ "proc/self/mounts": "sysfs /sys sysfs rw 0 0\n" }));
    expect(r.known).toBe(false);
    if (!r.known) expect(r.reason).toContain("mount -t debugfs none /sys/kernel/debug");
  });
  test("with debugfs mounted but no kho directory it says KHO is off or has no debugfs", () => {
    const r = readKhoScratch(tempRoot({ "proc/self/mounts": DEBUGFS_MOUNTED }));
    expect(r.known).toBe(false);
    if (!r.known) expect(r.reason).toContain("KHO is off");
  });
  test("garbage, mismatched counts and empty files are not scratch areas", () => {
    const cases: [string, string][] = [
      ["0x1000\nnot hex\n", "0x1000\n0x1000\n"],
      ["0x1000\n", "0x1000\n0x2000\n"],
      ["", ""],
      ["4096\n", "4096\n"],
    ];
    for (const [phys, len] of cases) {
      const r = readKhoScratch(tempRoot({ "sys/kernel/debug/kho/out/scratch_phys": phys, "sys/kernel/debug/kho/out/scratch_len": len }));
      expect(r.known).toBe(false);
      if (!r.known) expect(r.reason).toContain("not one hex number per area");
    }
  });
  test("an unreadable file is reported with its errno", () => {
    const root = tempRoot({ "sys/kernel/debug/kho/out/scratch_len": "0x1000\n" });
    mkdirSync(join(root, "sys/kernel/debug/kho/out/scratch_phys")); // reading a directory: EISDIR
    const r = readKhoScratch(root);
    expect(r.known).toBe(false);
    if (!r.known) expect(r.reason).toContain("EISDIR");
  });
  test("parseHexLines refuses a value past 2^53", () => {
    expect(parseHexLines("0xffffffffffffffff\n")).toBeNull();
    expect(parseHexLines("0x10\n0X20\n")).toEqual([16, 32]);
  });
});

describe("memfdBytesHeldBy", () => {
  test("sums the page-rounded sizes of the memfds a process holds, each inode once", () => {
    const root = tempRoot();
    mkdirSync(join(root, "proc"));
    symlinkSync(`/proc/${process.pid}`, join(root, "proc", "4242"));
    const baseline = memfdBytesHeldBy([4242], root);
    const a = memfdCreate("preflight-a");
    const b = memfdCreate("preflight-b");
    ftruncate(a, 3 * MiB + 1);
    ftruncate(b, 8192);
    const a2 = dupFd(a);
    try {
      const r = memfdBytesHeldBy([4242, 4242], root);
      expect(r.memfds - baseline.memfds).toBe(2);
      expect(r.bytes - baseline.bytes).toBe(3 * MiB + 4096 + 8192);
      expect(r.unreadable).toEqual([]);
    } finally {
      for (const fd of [a, a2, b]) closeFd(fd);
    }
  });
  test("a client with more fds than one CHECK looks through is named as not counted, not scanned whole (no stall)", () => {
    const root = tempRoot();
    mkdirSync(join(root, "proc", "4242", "fd"), { recursive: true });
    mkdirSync(join(root, "proc", "4343", "fd"), { recursive: true });
    for (let i = 0; i < 40; i++) symlinkSync("/dev/null", join(root, "proc", "4242", "fd", String(i)));
    symlinkSync("/dev/null", join(root, "proc", "4343", "fd", "0"));
    const r = memfdBytesHeldBy([4343, 4242], root, { maxFds: 10, budgetMs: 10_000 });
    expect(r.unreadable).toEqual([4242]);
    // once the budget is spent, the clients after it are not counted either
    const spent = memfdBytesHeldBy([4343, 4242], root, { maxFds: 10, budgetMs: 0 });
    expect(spent.unreadable).toEqual([4343, 4242]);
  });
  test("a pid whose fds cannot be read is named, not counted", () => {
    const r = memfdBytesHeldBy([999999999], tempRoot());
    expect(r).toEqual({ bytes: 0, memfds: 0, unreadable: [999999999] });
  });
});

describe("kernelPlacement", () => {
  test("reads kernel_alignment (0x230) and pref_address (0x258)", () => {
    const head = new Uint8Array(0x264);
    const dv = new DataView(head.buffer);
    dv.setUint32(0x230, 0x200000, true);
    dv.setBigUint64(0x258, 0x1000000n, true);
    expect(kernelPlacement(head)).toEqual({ kernelAlignment: 2 * MiB, prefAddress: 16 * MiB });
  });
  test("is null for a head too short to hold them", () => {
    expect(kernelPlacement(new Uint8Array(0x200))).toBeNull();
  });
  test("reads a real bzImage the VM harness built, when one is cached", () => {
    const dir = join(process.env.HOME ?? "/root", ".cache/luo-agent/kernel");
    const image = existsSync(dir)
      ? require("node:fs").readdirSync(dir).map((d: string) => join(dir, d, "bzImage")).find((p: string) => existsSync(p))
      : undefined;
    if (!image) return;
    const p = kernelPlacement(new Uint8Array(readFileSync(image).subarray(0, 0x1000)));
    expect(p!.kernelAlignment).toBeGreaterThanOrEqual(4096);
    expect(p!.kernelAlignment & (p!.kernelAlignment - 1)).toBe(0);
    expect(p!.prefAddress).toBeGreaterThanOrEqual(1 * MiB);
  });
});

describe("checkMemory", () => {
  const known = scratch([0, 1 * GiB]);
  test("refuses when the preserved bytes exceed MemTotal less KHO scratch", () => {
    const c = checkMemory({ memTotal: 8 * GiB, scratch: known, preservedBytes: 7 * GiB + 1 });
    expect(c.ok).toBe(false);
    expect(c.detail).toContain("at most 7 GiB can be preserved");
  });
  test("warns when the new kernel would have under the floor outside preserved pages and scratch", () => {
    const c = checkMemory({ memTotal: 8 * GiB, scratch: known, preservedBytes: 7 * GiB - LOW_MEMORY_FLOOR + 1 });
    expect(c).toMatchObject({ ok: true, warning: true });
    expect(c.detail).toContain("may run out of memory while booting");
  });
  test("is ok with room to spare", () => {
    const c = checkMemory({ memTotal: 8 * GiB, scratch: known, preservedBytes: 4 * GiB });
    expect(c.ok).toBe(true);
    expect(c.warning).toBeUndefined();
    expect(c.detail).toContain("the new kernel would have 3 GiB outside the preserved pages and KHO scratch");
  });
  test("exactly the floor is enough", () => {
    const c = checkMemory({ memTotal: 8 * GiB, scratch: known, preservedBytes: 7 * GiB - LOW_MEMORY_FLOOR });
    expect(c.warning).toBeUndefined();
  });
  test("without the scratch sizes it counts none, still refuses what cannot fit, and warns", () => {
    const unknown: KhoScratch = { known: false, reason: "debugfs is not mounted" };
    expect(checkMemory({ memTotal: 8 * GiB, scratch: unknown, preservedBytes: 9 * GiB }).ok).toBe(false);
    const c = checkMemory({ memTotal: 8 * GiB, scratch: unknown, preservedBytes: 1 * GiB });
    expect(c).toMatchObject({ ok: true, warning: true });
    expect(c.detail).toContain("debugfs is not mounted");
  });
  test("clients whose memfds luod cannot see make it a warning and are named in the detail", () => {
    const c = checkMemory({ memTotal: 8 * GiB, scratch: known, preservedBytes: 1 * GiB, uncounted: 2 });
    expect(c).toMatchObject({ ok: true, warning: true });
    expect(c.detail).toContain("not counting 2 client(s)");
  });
  test("cannot tell without MemTotal or without the preserved bytes", () => {
    expect(checkMemory({ memTotal: null, scratch: known, preservedBytes: 0 })).toMatchObject({ ok: true, warning: true });
    const c = checkMemory({ memTotal: 8 * GiB, scratch: known, preservedBytes: null });
    expect(c).toMatchObject({ ok: true, warning: true });
    expect(c.detail).toContain("cannot tell");
  });
});

describe("placeSegments", () => {
  test("places top-down in the first area that fits, aligned, without overlap", () => {
    const r = placeSegments([{ addr: 0, size: 64 * MiB }], [
      { name: "a", size: 4096, align: 65536, min: 0 },
      { name: "b", size: 2 * MiB, align: 2 * MiB, min: 16 * MiB },
    ]);
    expect("failed" in r).toBe(false);
    expect(r.placed.map((p) => p.addr)).toEqual([64 * MiB - 65536, 60 * MiB]);
  });
  test("a segment must fit whole in one area, however much the areas hold together", () => {
    const r = placeSegments([{ addr: 0, size: 32 * MiB }, { addr: 4 * GiB, size: 32 * MiB }], [{ name: "big", size: 40 * MiB, align: 4096, min: 0 }]);
    expect("failed" in r && r.failed.name).toBe("big");
  });
  test("skips an area that lies below the segment's minimum", () => {
    const r = placeSegments([{ addr: 0, size: 8 * MiB }, { addr: 1 * GiB, size: 8 * MiB }], [{ name: "initrd", size: 1 * MiB, align: 4096, min: 16 * MiB }]);
    expect(r.placed[0]!.addr).toBe(1 * GiB + 7 * MiB);
  });
});

describe("checkScratch", () => {
  const image = { initSize: 60 * MiB, kernelSize: 12 * MiB, initrdSize: 70 * MiB, placement: { kernelAlignment: 2 * MiB, prefAddress: 16 * MiB } };
  const at = (...areas: [number, number][]): ScratchInput => ({ ...image, scratch: scratch(...areas) });
  test("is ok when the kernel and initrd fit with room for the new kernel's memory map", () => {
    const c = checkScratch({ ...at([0, 512 * MiB]), memTotal: 16 * GiB });
    expect(c).toEqual({ name: "scratch", ok: true, detail: expect.stringContaining("fit in KHO scratch 512 MiB") });
  });
  test("refuses, naming EADDRNOTAVAIL, when they cannot be placed", () => {
    const c = checkScratch(at([0, 100 * MiB]));
    expect(c.ok).toBe(false);
    expect(c.detail).toContain("EADDRNOTAVAIL");
    expect(c.detail).toContain("initrd finds no place");
  });
  test("refuses when the kernel's init_size is larger than every area, even if the areas add up", () => {
    const c = checkScratch(at([0, 48 * MiB], [4 * GiB, 48 * MiB], [8 * GiB, 48 * MiB]));
    expect(c.ok).toBe(false);
    expect(c.detail).toContain("kernel finds no place");
  });
  test("warns when they fit only without the headroom for the small segments", () => {
    // 16 MiB below the kernel's minimum address are useless to it; 60 + 70 MiB fill the rest exactly
    const c = checkScratch(at([0, 16 * MiB + 130 * MiB + 64 * 1024]));
    expect(c).toMatchObject({ ok: true, warning: true });
    expect(c.detail).toContain(`less than ${fmtBytes(SCRATCH_HEADROOM)} to spare`);
  });
  test("warns when what is left is less than the new kernel's memory map", () => {
    const c = checkScratch({ ...at([0, 512 * MiB]), memTotal: 64 * GiB }); // memmap 1 GiB
    expect(c).toMatchObject({ ok: true, warning: true });
    expect(c.detail).toContain("memory map alone needs about 1 GiB");
  });
  test("without an initrd only the kernel is placed", () => {
    expect(checkScratch({ ...at([0, 100 * MiB]), initrdSize: null }).ok).toBe(true);
  });
  test("the kernel file's size counts when it exceeds init_size", () => {
    expect(checkScratch({ ...at([0, 100 * MiB]), initrdSize: null, kernelSize: 90 * MiB }).ok).toBe(false);
  });
  test("cannot tell without the scratch areas, and passes on the reason", () => {
    const c = checkScratch({ ...image, scratch: { known: false, reason: "debugfs is not mounted (mount -t debugfs none /sys/kernel/debug …)" } });
    expect(c).toMatchObject({ ok: true, warning: true });
    expect(c.detail).toContain("mount -t debugfs");
  });
});

describe("panic=", () => {
  test("absent: a warning that a failed boot hangs", () => {
    expect(checkPanic("console=ttyS0 liveupdate=on")).toEqual({
      name: "panic", ok: true, warning: true,
      detail: "no panic= on the new command line: without panic=N a kernel that fails to boot hangs instead of resetting",
    });
  });
  test("panic=0: a warning", () => {
    expect(checkPanic("panic=0 liveupdate=on")).toMatchObject({ ok: true, warning: true, detail: expect.stringContaining("panic=0") });
  });
  test("panic=N: ok, resets after N s", () => {
    const c = checkPanic("liveupdate=on panic=10");
    expect(c).toEqual({ name: "panic", ok: true, detail: "panic=10: a kernel that panics while booting resets after 10 s" });
  });
  test("a negative panic= resets at once", () => {
    expect(checkPanic("panic=-1").detail).toContain("resets at once");
  });
  test("the last valid occurrence wins; a bad value or a bare panic is ignored and named", () => {
    expect(panicTimeout("panic=5 panic=0").value).toBe(0);
    expect(panicTimeout("panic=5 panic=abc panic").value).toBe(5);
    const c = checkPanic("panic=abc");
    expect(c.warning).toBe(true);
    expect(c.detail).toContain("panic=abc ignored");
  });
  test("after -- it is an argument to init, not the kernel's", () => {
    expect(panicTimeout("quiet -- panic=10").value).toBeUndefined();
  });
  test("quotes and the kernel's - / _ equivalence do not hide it", () => {
    expect(panicTimeout('"panic=7"').value).toBe(7);
  });
  test("kstrtoint takes base 0 like param_set_int: hex, octal, sign, int range", () => {
    expect(kstrtoint("0x10")).toBe(16);
    expect(kstrtoint("010")).toBe(8);
    expect(kstrtoint("-1")).toBe(-1);
    expect(kstrtoint("+3")).toBe(3);
    expect(kstrtoint("08")).toBeUndefined();
    expect(kstrtoint("2147483648")).toBeUndefined();
    expect(kstrtoint("-2147483648")).toBe(-(2 ** 31));
    expect(kstrtoint("")).toBeUndefined();
    expect(kstrtoint("5s")).toBeUndefined();
  });
});

describe("fmtBytes", () => {
  test("binary units", () => {
    expect(fmtBytes(512 * MiB)).toBe("512 MiB");
    expect(fmtBytes(1.5 * GiB)).toBe("1.5 GiB");
    expect(fmtBytes(100)).toBe("100 bytes");
  });
});

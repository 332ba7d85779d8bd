// More preflight for CHECK (issue 15, item 4): memory for the preserved sessions, the next kernel
// and initrd against KHO's scratch areas, and `panic=` on the next command line.
//
// The checks are pure: they take numbers and strings and return one CHECK line each
// ({ name, ok, detail, warning? }; a warning is ok with warning: true). The readers take a `root`
// (default "/") so that tests point them at a temporary directory. The kernel facts behind every
// number are in docs/kernel.md#kho-scratch and docs/kernel.md#memory-after-the-update.
import { readFileSync, readdirSync, readlinkSync, statSync } from "node:fs";
import { join } from "node:path";
import { splitCmdline, parseParam } from "./cmdline";

export interface PreflightCheck {
  name: string;
  ok: boolean;
  detail: string;
  /** ok, but worth the operator's attention (a check that cannot tell is one). */
  warning?: boolean;
}

export const PAGE_SIZE = 4096;
const KIB = 1024;
const MIB = 1024 * KIB;

/**
 * Below this much memory outside the preserved pages and KHO's scratch areas, CHECK warns that
 * the new kernel would be left with little: its unmovable allocations (slab, page tables, kernel
 * stacks) cannot use scratch, which it hands to the allocator as CMA (movable only), nor the
 * preserved pages, which stay reserved (docs/kernel.md#memory-after-the-update).
 */
export const LOW_MEMORY_FLOOR = 256 * MIB;

/**
 * What CHECK keeps free in scratch for the small kexec segments besides the kernel and the initrd:
 * purgatory, boot parameters with the command line and setup_data, and IMA's measurement list
 * (docs/kernel.md#kho-scratch). Fitting only without it is a warning.
 */
export const SCRATCH_HEADROOM = 1 * MIB;
/** The least those small segments take: the KHO scratch list (one page) plus purgatory and boot parameters. */
const SMALL_SEGMENTS_MIN = 3 * PAGE_SIZE;

/** x86_64 defaults when the image's header was not read: CONFIG_PHYSICAL_ALIGN, LOAD_PHYSICAL_ADDR. */
export const DEFAULT_KERNEL_ALIGNMENT = 2 * MIB;
export const DEFAULT_PREF_ADDRESS = 16 * MIB;
/** arch/x86/kernel/kexec-bzimage64.c: the lowest load address of the kernel and of the initrd. */
const MIN_KERNEL_LOAD_ADDR = 0x100000;
const MIN_INITRD_LOAD_ADDR = 0x1000000;
const MIN_BOOTPARAM_ADDR = 0x3000;
/** kernel/liveupdate/kexec_handover.c:kho_fill_kimage aligns the scratch list segment to 64 KiB. */
const SCRATCH_LIST_ALIGN = 64 * KIB;

// ---- readers ------------------------------------------------------------------------------------

/** MemTotal of a /proc/meminfo text, in bytes; null if absent or not a number. */
export function parseMemTotal(text: string): number | null {
  const m = /^MemTotal:[ \t]*(\d+)[ \t]*kB[ \t]*$/m.exec(text);
  if (!m) return null;
  const kib = Number(m[1]);
  return Number.isSafeInteger(kib * KIB) ? kib * KIB : null;
}

/** MemTotal of the running kernel (`<root>/proc/meminfo`), in bytes; null if it cannot be read. */
export function readMemTotal(root = "/"): number | null {
  const text = readOrNull(join(root, "proc/meminfo"));
  return text === null ? null : parseMemTotal(text);
}

export interface ScratchArea {
  addr: number;
  size: number;
}

/** KHO's scratch areas, or why they are not known. */
export type KhoScratch = { known: true; areas: ScratchArea[] } | { known: false; reason: string };

/**
 * One `0x…` number per line, as kexec_handover_debugfs.c:scratch_phys_show and scratch_len_show
 * print them (`"0x%llx\n"` per area); null for anything else, or a value past 2^53.
 */
export function parseHexLines(text: string): number[] | null {
  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop();
  const out: number[] = [];
  for (const line of lines) {
    if (!/^0x[0-9a-f]{1,16}$/i.test(line)) return null;
    const n = Number(BigInt(line));
    if (!Number.isSafeInteger(n)) return null;
    out.push(n);
  }
  return out;
}

const KHO_OUT = "sys/kernel/debug/kho/out";

/**
 * The running kernel's KHO scratch areas, from debugfs (`/sys/kernel/debug/kho/out/scratch_phys`
 * and `scratch_len`). These are the areas the next kernel gets: kho_fill_kimage hands it this very
 * list. When they cannot be read, the reason says how to make them known.
 */
export function readKhoScratch(root = "/"): KhoScratch {
  const phys = readResult(join(root, KHO_OUT, "scratch_phys"));
  const len = readResult(join(root, KHO_OUT, "scratch_len"));
  if (phys.error === "ENOENT" || len.error === "ENOENT") {
    if (!debugfsMounted(root))
      return { known: false, reason: "debugfs is not mounted (mount -t debugfs none /sys/kernel/debug makes KHO's scratch areas known)" };
    return { known: false, reason: "debugfs has no kho/out/scratch_len: KHO is off in the running kernel, or it was built without CONFIG_KEXEC_HANDOVER_DEBUGFS" };
  }
  if (phys.text === null || len.text === null)
    return { known: false, reason: `cannot read ${KHO_OUT}/scratch_phys and scratch_len (${phys.error ?? len.error}): luod reads them as root` };
  const addrs = parseHexLines(phys.text);
  const sizes = parseHexLines(len.text);
  if (!addrs || !sizes || addrs.length !== sizes.length || addrs.length === 0)
    return { known: false, reason: `${KHO_OUT}/scratch_phys and scratch_len are not one hex number per area, one area per line` };
  return { known: true, areas: addrs.map((addr, i) => ({ addr, size: sizes[i]! })) };
}

/** Whether `<root>/proc/self/mounts` lists a debugfs at /sys/kernel/debug. */
function debugfsMounted(root: string): boolean {
  const mounts = readOrNull(join(root, "proc/self/mounts")) ?? "";
  return mounts.split("\n").some((l) => {
    const [, dir, type] = l.split(" ");
    return dir === "/sys/kernel/debug" && type === "debugfs";
  });
}

export interface MemfdScan {
  /** Page-rounded sizes of the distinct memfds found (PRESERVE pins every page up to i_size). */
  bytes: number;
  memfds: number;
  /** Pids whose fds could not be read (gone, or another uid without CAP_SYS_PTRACE), or not all of
   *  them within the scan's limits (a client with a million fds must not stall luod). */
  unreadable: number[];
}

/**
 * How much of /proc/PID/fd one CHECK looks through, on luod's only thread: a readlink and a stat
 * per fd, ~7 µs each here, and a client may hold as many fds as its RLIMIT_NOFILE allows (often
 * 524288). The clients past either limit are not counted (CHECK says so).
 */
export const MEMFD_SCAN_LIMITS = { maxFds: 16384, budgetMs: 100 };

/**
 * An estimate of what processes will preserve: the memfds open in `pids` (`/proc/PID/fd/*` whose
 * link reads `/memfd:…`), each inode counted once, page-rounded. Only an estimate: a memfd closed
 * after PRESERVE (LUO keeps its own reference) is missed, a memfd held but not preserved counted.
 */
export function memfdBytesHeldBy(pids: readonly number[], root = "/", limits = MEMFD_SCAN_LIMITS): MemfdScan {
  const seen = new Set<string>();
  const result: MemfdScan = { bytes: 0, memfds: 0, unreadable: [] };
  const started = performance.now();
  let scanned = 0;
  const exhausted = () => scanned >= limits.maxFds || performance.now() - started >= limits.budgetMs;
  for (const pid of new Set(pids)) {
    if (exhausted()) {
      result.unreadable.push(pid);
      continue;
    }
    const dir = join(root, "proc", String(pid), "fd");
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      result.unreadable.push(pid);
      continue;
    }
    if (scanned + names.length > limits.maxFds) {
      result.unreadable.push(pid);
      scanned = limits.maxFds;
      continue;
    }
    const mine: { key: string; bytes: number }[] = [];
    let complete = true;
    for (const name of names) {
      if ((++scanned & 255) === 0 && exhausted()) {
        complete = false;
        break;
      }
      try {
        if (!readlinkSync(join(dir, name)).startsWith("/memfd:")) continue;
        const st = statSync(join(dir, name), { bigint: true });
        mine.push({ key: `${st.dev}:${st.ino}`, bytes: pageAlign(Number(st.size)) });
      } catch {
        // closed meanwhile
      }
    }
    if (!complete) {
      result.unreadable.push(pid);
      continue;
    }
    for (const m of mine) {
      if (seen.has(m.key)) continue;
      seen.add(m.key);
      result.memfds++;
      result.bytes += m.bytes;
    }
  }
  return result;
}

/** The two header fields that decide where kexec may place the kernel (bootparam.h setup_header). */
export interface KernelPlacement {
  /** setup_header.kernel_alignment (offset 0x230): the kernel segment's alignment. */
  kernelAlignment: number;
  /** setup_header.pref_address (offset 0x258): the kernel segment's lowest address (at least 1 MiB). */
  prefAddress: number;
}

/** kernel_alignment and pref_address of a bzImage's head (inspectKernelImage checked the rest); null if too short. */
export function kernelPlacement(head: Uint8Array): KernelPlacement | null {
  if (head.length < 0x260) return null;
  const dv = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const prefAddress = Number(dv.getBigUint64(0x258, true));
  return { kernelAlignment: dv.getUint32(0x230, true), prefAddress: Number.isSafeInteger(prefAddress) ? prefAddress : DEFAULT_PREF_ADDRESS };
}

// ---- memory -------------------------------------------------------------------------------------

export interface MemoryInput {
  /** MemTotal of the running kernel, bytes (readMemTotal). */
  memTotal: number | null;
  scratch: KhoScratch;
  /** What the clients' sessions will carry, bytes; null when luod cannot tell. */
  preservedBytes: number | null;
  /** Clients whose preserved bytes are not in preservedBytes (their memfds could not be seen). */
  uncounted?: number;
}

/**
 * The preserved bytes against the memory of the next kernel. Preserved pages are never in scratch
 * and stay reserved in the next kernel until retrieved; the next kernel boots out of scratch and
 * can use it afterwards only for movable pages. So:
 *  - refused when preserved > MemTotal − scratch (the pages cannot be placed: PRESERVE fails);
 *  - a warning when MemTotal − scratch − preserved < LOW_MEMORY_FLOOR;
 *  - a warning when something is unknown (MemTotal, scratch, the preserved bytes).
 */
export function checkMemory(input: MemoryInput): PreflightCheck {
  const name = "memory";
  if (input.memTotal === null)
    return { name, ok: true, warning: true, detail: "cannot tell: /proc/meminfo has no MemTotal" };
  if (input.preservedBytes === null)
    return { name, ok: true, warning: true, detail: `cannot tell what the clients will preserve (MemTotal ${fmtBytes(input.memTotal)})` };
  const scratch = input.scratch.known ? scratchTotal(input.scratch.areas) : null;
  const preserved = input.preservedBytes;
  const outside = input.memTotal - (scratch ?? 0);
  const room = outside - preserved;
  const uncounted = input.uncounted ? ` (not counting ${input.uncounted} client(s) whose memfds luod cannot see)` : "";
  const scratchText = scratch === null ? `KHO scratch unknown: ${input.scratch.known ? "" : input.scratch.reason}` : `KHO scratch ${fmtBytes(scratch)}`;
  const sums = `clients preserve ${fmtBytes(preserved)}${uncounted}; MemTotal ${fmtBytes(input.memTotal)}, ${scratchText}`;
  if (room < 0)
    return {
      name, ok: false,
      detail: `${sums}: preserved pages never lie in KHO scratch, so at most ${fmtBytes(Math.max(0, outside))} can be preserved; the update would fail`,
    };
  const left = `the new kernel would have ${fmtBytes(room)} outside the preserved pages${scratch === null ? "" : " and KHO scratch"}`;
  if (room < LOW_MEMORY_FLOOR)
    return { name, ok: true, warning: true, detail: `${sums}: ${left}, under ${fmtBytes(LOW_MEMORY_FLOOR)}: it may run out of memory while booting` };
  const unknown = scratch === null || !!input.uncounted;
  return { name, ok: true, ...(unknown ? { warning: true } : {}), detail: `${sums}: ${left}` };
}

// ---- scratch ------------------------------------------------------------------------------------

export interface Segment {
  name: string;
  /** Bytes (memsz); page-rounded like kexec_add_buffer. */
  size: number;
  align: number;
  /** Lowest address (buf_min). */
  min: number;
}

export interface Placed extends Segment {
  addr: number;
}

/**
 * Places segments in order the way kexec_file_load does with KHO on: each must fit whole inside
 * one scratch area, tried in list order (kho_walk_scratch), top-down within it, aligned, above its
 * minimum, not overlapping a segment placed before (kexec_file.c:locate_mem_hole_top_down).
 * Returns the placements, or the first segment that found no place (the load's EADDRNOTAVAIL).
 */
export function placeSegments(areas: readonly ScratchArea[], segments: readonly Segment[]): { placed: Placed[] } | { failed: Segment; placed: Placed[] } {
  const placed: Placed[] = [];
  for (const seg of segments) {
    const size = pageAlign(seg.size);
    const align = Math.max(seg.align, PAGE_SIZE);
    let at: number | null = null;
    for (const area of areas) {
      if (area.size < size) continue;
      const end = area.addr + area.size; // exclusive
      if (end <= seg.min) continue;
      let start = alignDown(end - size, align);
      while (start >= area.addr && start >= seg.min) {
        const clash = placed.find((p) => start < p.addr + p.size && p.addr < start + size);
        if (!clash) break;
        start = alignDown(clash.addr - size, align);
      }
      if (start >= area.addr && start >= seg.min) {
        at = start;
        break;
      }
    }
    if (at === null) return { failed: seg, placed };
    placed.push({ ...seg, size, align, addr: at });
  }
  return { placed };
}

export interface ScratchInput {
  scratch: KhoScratch;
  /** setup_header.init_size of the next kernel (KernelImageInfo.initSize). */
  initSize: number;
  /** The kernel image file's size (its segment is at least that big). */
  kernelSize: number;
  initrdSize: number | null;
  placement?: KernelPlacement | null;
  /** MemTotal, bytes: the next kernel's memory map alone takes 1/64 of it out of scratch. */
  memTotal?: number | null;
}

/** The segments of an x86 bzImage load with KHO, in the order kexec_file_load adds them. */
export function kexecSegments(input: ScratchInput, small: number): Segment[] {
  const p = input.placement ?? { kernelAlignment: DEFAULT_KERNEL_ALIGNMENT, prefAddress: DEFAULT_PREF_ADDRESS };
  const segs: Segment[] = [
    { name: "KHO scratch list", size: PAGE_SIZE, align: SCRATCH_LIST_ALIGN, min: 0 },
    { name: "purgatory and boot parameters", size: small - PAGE_SIZE, align: PAGE_SIZE, min: MIN_BOOTPARAM_ADDR },
    {
      name: "kernel",
      size: Math.max(pageAlign(input.initSize), pageAlign(input.kernelSize)),
      align: p.kernelAlignment || DEFAULT_KERNEL_ALIGNMENT,
      min: Math.max(p.prefAddress, MIN_KERNEL_LOAD_ADDR),
    },
  ];
  if (input.initrdSize !== null) segs.push({ name: "initrd", size: input.initrdSize, align: PAGE_SIZE, min: MIN_INITRD_LOAD_ADDR });
  return segs;
}

/**
 * The next kernel and initrd against KHO's scratch areas:
 *  - refused when they cannot be placed (kexec_file_load would fail with EADDRNOTAVAIL);
 *  - a warning when they fit only without SCRATCH_HEADROOM for the small segments;
 *  - a warning when what scratch has left is less than the next kernel's memory map (1/64 of
 *    MemTotal: 64-byte struct page per 4 KiB page), which it allocates early, out of scratch only;
 *  - a warning when the scratch areas are not known.
 */
export function checkScratch(input: ScratchInput): PreflightCheck {
  const name = "scratch";
  if (!input.scratch.known) return { name, ok: true, warning: true, detail: `cannot tell: ${input.scratch.reason}` };
  const areas = input.scratch.areas;
  const total = scratchTotal(areas);
  const largest = Math.max(...areas.map((a) => a.size));
  const kernel = Math.max(pageAlign(input.initSize), pageAlign(input.kernelSize));
  const initrd = input.initrdSize === null ? 0 : pageAlign(input.initrdSize);
  const what = `kernel ${fmtBytes(kernel)} (init_size)${input.initrdSize === null ? "" : ` + initrd ${fmtBytes(initrd)}`}`;
  const where = `KHO scratch ${fmtBytes(total)} in ${areas.length} area(s), the largest ${fmtBytes(largest)}`;
  const tight = placeSegments(areas, kexecSegments(input, SMALL_SEGMENTS_MIN));
  if ("failed" in tight)
    return {
      name, ok: false,
      detail: `${what} do not fit in ${where} (the ${tight.failed.name} finds no place: each segment must fit whole in one area): ` +
        "kexec_file_load would fail with EADDRNOTAVAIL; a smaller image or initrd, or a cold boot with a larger kho_scratch=, is needed",
    };
  if ("failed" in placeSegments(areas, kexecSegments(input, SCRATCH_HEADROOM)))
    return { name, ok: true, warning: true, detail: `${what} fit in ${where} with less than ${fmtBytes(SCRATCH_HEADROOM)} to spare for purgatory, boot parameters and IMA's list: the load may fail with EADDRNOTAVAIL` };
  const left = total - kernel - initrd - SCRATCH_HEADROOM;
  const memmap = input.memTotal ? Math.ceil(input.memTotal / 64) : 0;
  if (left < memmap)
    return {
      name, ok: true, warning: true,
      detail: `${what} fit in ${where}, leaving ${fmtBytes(left)}; the new kernel boots out of scratch and its memory map alone needs about ${fmtBytes(memmap)} (1/64 of MemTotal): it may fail early in boot`,
    };
  return { name, ok: true, detail: `${what} fit in ${where}, leaving ${fmtBytes(left)}` };
}

// ---- panic= -------------------------------------------------------------------------------------

/**
 * The value of `panic=` the kernel would take from a command line: the last occurrence before `--`
 * that kstrtoint(…, 0) accepts (kernel/panic.c `core_param(panic, panic_timeout, int)`, set by
 * kernel/params.c:param_set_int; a bad value is ignored, a bare `panic` too). Undefined if none.
 */
export function panicTimeout(cmdline: string): { value: number | undefined; ignored: string[] } {
  const tokens = splitCmdline(cmdline);
  const end = tokens.indexOf("--");
  let value: number | undefined;
  const ignored: string[] = [];
  for (const tok of end < 0 ? tokens : tokens.slice(0, end)) {
    const p = parseParam(tok);
    if (p.key !== "panic") continue;
    const n = p.value === null ? undefined : kstrtoint(p.value);
    if (n === undefined) ignored.push(tok);
    else value = n;
  }
  return { value, ignored };
}

/** kstrtoint(s, 0): optional sign, 0x hex, leading-0 octal or decimal, an optional final newline, int range. */
export function kstrtoint(s: string): number | undefined {
  const m = /^([+-]?)(0x[0-9a-f]+|0[0-7]*|[1-9][0-9]*)\n?$/i.exec(s);
  if (!m) return undefined;
  const digits = m[2]!;
  const magnitude = /^0x/i.test(digits) ? BigInt(digits) : digits.length > 1 && digits[0] === "0" ? BigInt(`0o${digits.slice(1)}`) : BigInt(digits);
  const n = m[1] === "-" ? -magnitude : magnitude;
  if (n < -(2n ** 31n) || n > 2n ** 31n - 1n) return undefined;
  return Number(n);
}

/** `panic=` on the next kernel's command line: without a non-zero one, a kernel that fails to boot hangs. */
export function checkPanic(cmdline: string): PreflightCheck {
  const name = "panic";
  const { value, ignored } = panicTimeout(cmdline);
  const bad = ignored.length ? ` (${ignored.join(", ")} ignored: not a number the kernel accepts)` : "";
  if (value === undefined || value === 0)
    return {
      name, ok: true, warning: true,
      detail: `${value === 0 ? "panic=0" : "no panic="} on the new command line${bad}: without panic=N a kernel that fails to boot hangs instead of resetting`,
    };
  const how = value < 0 ? "at once" : `after ${value} s`;
  return { name, ok: true, detail: `panic=${value}: a kernel that panics while booting resets ${how}${bad}` };
}

// ---- helpers ------------------------------------------------------------------------------------

export function scratchTotal(areas: readonly ScratchArea[]): number {
  return areas.reduce((n, a) => n + a.size, 0);
}

export function pageAlign(n: number): number {
  return Math.ceil(n / PAGE_SIZE) * PAGE_SIZE;
}

function alignDown(n: number, align: number): number {
  return Math.floor(n / align) * align;
}

/** "512 MiB", "1.5 GiB", "12 KiB", "100 bytes". */
export function fmtBytes(n: number): string {
  const units: [number, string][] = [[1024 ** 4, "TiB"], [1024 ** 3, "GiB"], [MIB, "MiB"], [KIB, "KiB"]];
  for (const [size, unit] of units) {
    if (Math.abs(n) >= size) {
      const v = n / size;
      return `${Number.isInteger(v) ? v : v.toFixed(1)} ${unit}`;
    }
  }
  return `${n} bytes`;
}

function readOrNull(path: string): string | null {
  return readResult(path).text;
}

function readResult(path: string): { text: string | null; error: string | null } {
  try {
    return { text: readFileSync(path, "utf8"), error: null };
  } catch (e) {
    return { text: null, error: (e as NodeJS.ErrnoException).code ?? "EIO" };
  }
}

// ---- all of them, for CHECK ---------------------------------------------------------------------

/** The kernel CHECK is about (loader.ts: the loaded one or the image sent with CHECK). */
export interface PreflightKernel {
  cmdline: string;
  /** bzImage init_size; absent in a "loaded" record written before it was kept. */
  initSize?: number;
  size: number;
  initrdSize: number | null;
  placement?: KernelPlacement | null;
}

/**
 * CHECK's memory, scratch and panic lines. `clientPids`: the connected clients' processes (their
 * memfds are what the update will preserve); `uncounted`: expected clients luod cannot look into
 * (disconnected, or carried by the fd store).
 */
export function preflightChecks(next: PreflightKernel | null, clientPids: readonly number[], uncounted: number, root = "/"): PreflightCheck[] {
  const memTotal = readMemTotal(root);
  const scratch = readKhoScratch(root);
  const scan = memfdBytesHeldBy(clientPids, root);
  const checks = [checkMemory({ memTotal, scratch, preservedBytes: scan.bytes, uncounted: uncounted + scan.unreadable.length })];
  if (!next) return checks;
  checks.push(next.initSize === undefined
    ? { name: "scratch", ok: true, warning: true, detail: "cannot tell: this kernel was loaded by a luod that did not record its init_size; load it again" }
    : checkScratch({ scratch, initSize: next.initSize, kernelSize: next.size, initrdSize: next.initrdSize, placement: next.placement, memTotal }));
  checks.push(checkPanic(next.cmdline));
  return checks;
}

// The ABI compatible strings and version banners inside a decompressed kernel (vmlinux.bin), and
// the comparison of a running kernel's strings with a new kernel's (pure; no I/O).
// docs/kernel.md#abi-compatible-strings: which string lives where, and what a mismatch does.

export type AbiKind = "luo" | "memfd" | "kho";
export const ABI_KINDS: readonly AbiKind[] = ["luo", "memfd", "kho"];

/** One kernel's compatible strings; null: not found (or, for a scan, ambiguous: see `ambiguous`). */
export interface AbiStrings {
  luo: string | null;
  memfd: string | null;
  kho: string | null;
}

export interface ImageAbiScan extends AbiStrings {
  /** Kinds found with two different values: the value above is null, luod does not guess. */
  ambiguous: Partial<Record<AbiKind, string[]>>;
  /** Every "Linux version …\n" C string (linux_banner, what /proc/version shows; Kbuild also leaves
   *  a variant with an empty build number, "… # SMP …"). Bytes from the image: escape before printing. */
  banners: string[];
}

/** The string each kind must match whole: LUO_ABI_COMPATIBLE, MEMFD_LUO_FH_COMPATIBLE, KHO_FDT_COMPATIBLE. */
const PATTERNS: Record<AbiKind, { prefix: string; re: RegExp }> = {
  luo: { prefix: "luo-v", re: /^luo-v[0-9]+$/ },
  memfd: { prefix: "memfd-v", re: /^memfd-v[0-9]+$/ },
  kho: { prefix: "kho-v", re: /^kho-v[0-9]+$/ },
};
const BANNER_PREFIX = "Linux version ";
/** Longest string looked at: compatible strings are a few bytes, banners ~200. */
const MAX_STRING = 1024;
/** A hostile image may hold millions of look-alikes: the result stays small (a kernel has 2 banners). */
export const MAX_BANNERS = 16;
export const MAX_AMBIGUOUS_VALUES = 8;

/**
 * Every C string of `data` that starts with `prefix`: not the tail of a longer printable string
 * (the byte before is the start, a NUL or any other non-printable byte) and followed by a NUL
 * within MAX_STRING bytes. Not "preceded by a NUL" only: "memfd-v2" is not in .rodata but inline
 * in a struct (memfd_luo.c's handler, `char compatible[48]` right after a pointer), so the byte
 * before it is the pointer's 0xff. Uses Buffer.indexOf (memmem): a few ms per prefix on 60 MB.
 */
function cStrings(buf: Buffer, prefix: string): string[] {
  const out: string[] = [];
  const needle = Buffer.from(prefix, "latin1");
  for (let at = buf.indexOf(needle); at >= 0; at = buf.indexOf(needle, at + 1)) {
    if (at > 0 && buf[at - 1]! >= 0x20 && buf[at - 1]! <= 0x7e) continue;
    const limit = Math.min(buf.length, at + MAX_STRING);
    let end = at + needle.length;
    while (end < limit && buf[end] !== 0) end++;
    if (end === limit) continue; // no NUL soon (or at all): not a C string
    out.push(buf.toString("latin1", at, end));
  }
  return out;
}

/** Scan a decompressed kernel for its ABI compatible strings and version banners. */
export function scanKernelAbi(data: Uint8Array): ImageAbiScan {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const result: ImageAbiScan = { luo: null, memfd: null, kho: null, ambiguous: {}, banners: [] };
  for (const kind of ABI_KINDS) {
    const { prefix, re } = PATTERNS[kind];
    const values = [...new Set(cStrings(buf, prefix).filter((s) => re.test(s)))].sort();
    if (values.length === 1) result[kind] = values[0]!;
    else if (values.length > 1) result.ambiguous[kind] = values.slice(0, MAX_AMBIGUOUS_VALUES);
  }
  result.banners = [...new Set(cStrings(buf, BANNER_PREFIX).filter((s) => s.endsWith("\n")))].slice(0, MAX_BANNERS);
  return result;
}

/** What a problem costs. */
export type AbiConsequence = "panic" | "sessions-lost" | "sessions-unrestorable" | "unknown";

export interface AbiProblem {
  kind: AbiKind;
  /** mismatch: both known and different; missing: the new kernel has none; ambiguous: the new
   *  kernel has several; unknown: the running kernel's string is not known. */
  code: "mismatch" | "missing" | "ambiguous" | "unknown";
  running: string | null;
  next: string | null;
  consequence: AbiConsequence;
  /** One line, naming both strings. */
  message: string;
}

const LABEL: Record<AbiKind, string> = { luo: "LUO", memfd: "memfd", kho: "KHO" };
const CONFIG: Record<AbiKind, string> = {
  luo: "CONFIG_LIVEUPDATE",
  memfd: "CONFIG_LIVEUPDATE_MEMFD",
  kho: "CONFIG_KEXEC_HANDOVER",
};
const WHY: Record<AbiKind, { consequence: AbiConsequence; text: string }> = {
  luo: { consequence: "panic", text: "the new kernel would panic at boot" },
  memfd: {
    consequence: "sessions-unrestorable",
    text: "no session could be restored: open(/dev/liveupdate) fails with EIO for that whole boot",
  },
  kho: { consequence: "sessions-lost", text: "the new kernel would ignore the handed-over data: every session would be lost" },
};
const MISSING: Record<AbiKind, { consequence: AbiConsequence; text: string }> = {
  luo: { consequence: "sessions-lost", text: "every session would be lost" },
  memfd: WHY.memfd,
  kho: { consequence: "sessions-lost", text: "every session would be lost" },
};

/**
 * The problems of an update from a kernel with `running`'s strings to one with `next`'s, one per
 * string that is not known to be equal on both sides (empty: the update keeps every session).
 */
export function compareAbi(running: AbiStrings, next: AbiStrings & { ambiguous?: ImageAbiScan["ambiguous"] }): AbiProblem[] {
  const problems: AbiProblem[] = [];
  for (const kind of ABI_KINDS) {
    const r = running[kind];
    const n = next[kind];
    const L = LABEL[kind];
    const several = next.ambiguous?.[kind];
    if (n === null && several && several.length > 1) {
      problems.push({
        kind, code: "ambiguous", running: r, next: null, consequence: "unknown",
        message: `the new kernel has several ${L} ABI strings (${several.join(", ")}), the running kernel ${r ?? "an unknown one"}: luod cannot tell which the new kernel uses`,
      });
    } else if (r === null) {
      problems.push({
        kind, code: "unknown", running: null, next: n, consequence: "unknown",
        message: `the running kernel's ${L} ABI is unknown (the new kernel has ${n ?? "none"})`,
      });
    } else if (n === null) {
      problems.push({
        kind, code: "missing", running: r, next: null, consequence: MISSING[kind].consequence,
        message: `the new kernel has no ${L} ABI string (built without ${CONFIG[kind]}?), the running kernel has ${r}: ${MISSING[kind].text}`,
      });
    } else if (r !== n) {
      problems.push({
        kind, code: "mismatch", running: r, next: n, consequence: WHY[kind].consequence,
        message: `${L} ABI mismatch: the running kernel has ${r}, the new kernel ${n} (${WHY[kind].text})`,
      });
    }
  }
  return problems;
}

// The running kernel's ABI compatible strings, from what a live system offers
// (docs/kernel.md#abi-compatible-strings):
//  * KHO's debugfs (CONFIG_KEXEC_HANDOVER_DEBUGFS, debugfs mounted, root): out/sub_fdts/LUO is the
//    outgoing raw `struct luo_ser`, which starts with the NUL-padded LUO compatible; out/fdt is the
//    KHO root FDT, whose root node's "compatible" is the KHO one. debugfs has no memfd string.
//  * The running image, when it can be identified: a root-owned file not writable by group or
//    others among the candidates, whose decoded "Linux version …" banner is /proc/version exactly.
// Every path is under `root` ("/" in luod) so tests can build a fake system in a temp dir.
import { fstatSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { inspectKernelImage, KERNEL_HEAD_BYTES, kernelRelease } from "./bzimage";
import { ABI_KINDS, type AbiKind, type AbiStrings } from "./image-abi";
import { readImageAbi, type ImageAbiResult, type ReadImageAbiOptions } from "./image-reader";
import { closeQuietly, O_CLOEXEC, O_NONBLOCK, O_RDONLY, openFile, readFull } from "../kernel/fd";
import { SysError } from "../kernel/libc";

export const KHO_DEBUGFS_LUO = "/sys/kernel/debug/kho/out/sub_fdts/LUO";
export const KHO_DEBUGFS_FDT = "/sys/kernel/debug/kho/out/fdt";

export interface ProbedValue {
  value: string | null;
  /** "kho debugfs", "running image /boot/vmlinuz-…", or null when unknown. */
  source: string | null;
}

/** What the probes of the live system found (abi-gate.ts adds what the previous luod recorded). */
export interface ProbedAbi {
  luo: ProbedValue;
  memfd: ProbedValue;
  kho: ProbedValue;
  /** The running image that was identified, if any. */
  image: string | null;
  /** What was tried and why each source failed: one short line each. */
  notes: string[];
}

/**
 * /proc/version, the running kernel's banner, as the image scan decodes banners (latin1: a byte
 * per character, whatever the build host put there); null if unreadable.
 */
export function readProcVersion(root = "/"): string | null {
  try {
    return readFileSync(join(root, "/proc/version"), "latin1");
  } catch {
    return null;
  }
}

/** The plain strings of a probe, for compareAbi. */
export function runningAbiStrings(r: ProbedAbi): AbiStrings {
  return { luo: r.luo.value, memfd: r.memfd.value, kho: r.kho.value };
}

type Parsed = { ok: true; value: string } | { ok: false; reason: string };

/** struct luo_ser (include/linux/kho/abi/luo.h) begins with `char compatible[LUO_ABI_COMPAT_LEN]`. */
export function luoSerCompatible(blob: Uint8Array): Parsed {
  const nul = blob.subarray(0, 64).indexOf(0);
  if (nul < 0) return { ok: false, reason: "no NUL-terminated string at its start" };
  const s = new TextDecoder("latin1").decode(blob.subarray(0, nul));
  if (!/^luo-v[0-9]+$/.test(s)) return { ok: false, reason: `starts with no LUO compatible (${JSON.stringify(s.slice(0, 16))})` };
  return { ok: true, value: s };
}

const FDT_MAGIC = 0xd00dfeed;
const FDT_BEGIN_NODE = 1;
const FDT_END_NODE = 2;
const FDT_PROP = 3;
const FDT_NOP = 4;
const FDT_END = 9;

/**
 * The root node's "compatible" of a flattened device tree (Devicetree Specification, chapter 5:
 * big-endian header, structure block of tokens, strings block). Every offset is checked against
 * the blob; a malformed blob yields a reason, never a throw.
 */
export function fdtRootCompatible(blob: Uint8Array): Parsed {
  const fail = (reason: string): Parsed => ({ ok: false, reason });
  if (blob.length < 40) return fail(`too short for an FDT header (${blob.length} bytes)`);
  const dv = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
  const u32 = (o: number) => dv.getUint32(o, false);
  if (u32(0) !== FDT_MAGIC) return fail("no FDT magic (0xd00dfeed)");
  const total = u32(4);
  if (total > blob.length) return fail(`totalsize ${total} exceeds the ${blob.length} bytes read`);
  const offStruct = u32(8);
  const offStrings = u32(12);
  const version = u32(20);
  if (version < 16) return fail(`FDT version ${version} is too old`);
  const sizeStrings = u32(32);
  const sizeStruct = version >= 17 ? u32(36) : total - offStruct;
  if (offStruct > total || sizeStruct > total - offStruct) return fail("the structure block lies outside the blob");
  if (offStrings > total || sizeStrings > total - offStrings) return fail("the strings block lies outside the blob");
  const structEnd = offStruct + sizeStruct;
  const cstr = (from: number, end: number): string | null => {
    const nul = blob.subarray(from, end).indexOf(0);
    return nul < 0 ? null : new TextDecoder("latin1").decode(blob.subarray(from, from + nul));
  };
  const align4 = (n: number) => (n + 3) & ~3;

  let p = offStruct;
  const token = (): number | null => (p + 4 <= structEnd ? u32(p) : null);
  while (token() === FDT_NOP) p += 4;
  if (token() !== FDT_BEGIN_NODE) return fail("the structure block does not start with the root node");
  const rootName = cstr(p + 4, structEnd);
  if (rootName === null) return fail("the root node's name is not terminated");
  if (rootName !== "") return fail(`the first node is ${JSON.stringify(rootName)}, not the root`);
  p = align4(p + 4 + rootName.length + 1);
  for (;;) {
    const t = token();
    if (t === null) return fail("the structure block ends inside the root node");
    if (t === FDT_NOP) {
      p += 4;
      continue;
    }
    if (t === FDT_BEGIN_NODE || t === FDT_END_NODE || t === FDT_END) return fail('the root node has no "compatible" property');
    if (t !== FDT_PROP) return fail(`unknown token ${t} in the structure block`);
    if (p + 12 > structEnd) return fail("a property header runs past the structure block");
    const len = u32(p + 4);
    const nameoff = u32(p + 8);
    const value = p + 12;
    if (len > structEnd - value) return fail("a property value runs past the structure block");
    if (nameoff >= sizeStrings) return fail("a property name lies outside the strings block");
    const name = cstr(offStrings + nameoff, offStrings + sizeStrings);
    if (name === null) return fail("a property name is not terminated");
    if (name === "compatible") {
      const s = cstr(value, value + len);
      if (s === null || s === "") return fail('the root "compatible" is not a string');
      return { ok: true, value: s };
    }
    p = align4(value + len);
  }
}

/** The LUO and KHO strings of the running kernel from KHO's debugfs (never throws). */
export function readKhoDebugfs(root = "/"): { luo: string | null; kho: string | null; notes: string[] } {
  const notes: string[] = [];
  const read = (path: string): Uint8Array | null => {
    try {
      return new Uint8Array(readFileSync(join(root, path)));
    } catch (e) {
      const code = (e as { code?: string }).code ?? "error";
      const why =
        code === "ENOENT"
          ? "absent (debugfs not mounted, a kernel without CONFIG_KEXEC_HANDOVER_DEBUGFS, KHO or LUO off)"
          : code === "EACCES" || code === "EPERM"
            ? `${code} (debugfs needs root)`
            : code;
      notes.push(`kho debugfs: ${path}: ${why}`);
      return null;
    }
  };
  const pick = (path: string, parse: (b: Uint8Array) => Parsed, re: RegExp): string | null => {
    const blob = read(path);
    if (blob === null) return null;
    const r = parse(blob);
    if (!r.ok) {
      notes.push(`kho debugfs: ${path}: ${r.reason}`);
      return null;
    }
    if (!re.test(r.value)) {
      notes.push(`kho debugfs: ${path}: compatible ${JSON.stringify(r.value.slice(0, 32))} is not a KHO ABI string`);
      return null;
    }
    return r.value;
  };
  const luo = pick(KHO_DEBUGFS_LUO, luoSerCompatible, /^luo-v[0-9]+$/);
  const kho = pick(KHO_DEBUGFS_FDT, fdtRootCompatible, /^kho-v[0-9]+$/);
  return { luo, kho, notes };
}

/** Where the running kernel's image may be: the caller's (configured) paths first, then the usual ones. */
export function imageCandidates(release: string, extra: readonly string[] = []): string[] {
  const all = [...extra];
  if (release !== "" && !release.includes("/")) {
    all.push(`/boot/vmlinuz-${release}`, `/usr/lib/modules/${release}/vmlinuz`, `/lib/modules/${release}/vmlinuz`);
  }
  return [...new Set(all)];
}

export interface RunningAbiOptions extends ReadImageAbiOptions {
  /** Prefix of every path read ("/" in luod). */
  root?: string;
  /** Configured candidates for the running image, tried before the usual paths. */
  candidates?: readonly string[];
  /** Owners a running image may have (default: root only). */
  trustedUids?: readonly number[];
  /** Tests replace the worker-backed reader. */
  readImage?: typeof readImageAbi;
}

type ImageProbe = { ok: true; path: string; abi: Extract<ImageAbiResult, { ok: true }> } | { ok: false };

/** The first candidate that is a trusted file and whose banner is /proc/version. */
async function probeRunningImage(opts: RunningAbiOptions, notes: string[]): Promise<ImageProbe> {
  const root = opts.root ?? "/";
  const trusted = opts.trustedUids ?? [0];
  const readImage = opts.readImage ?? readImageAbi;
  const procVersion = readProcVersion(root);
  let release: string;
  try {
    if (procVersion === null) throw Object.assign(new Error("/proc/version"), { code: "unreadable" });
    release = readFileSync(join(root, "/proc/sys/kernel/osrelease"), "latin1").trim();
  } catch (e) {
    notes.push(`running image: cannot read /proc/version or /proc/sys/kernel/osrelease (${(e as { code?: string }).code ?? e})`);
    return { ok: false };
  }
  const candidates = imageCandidates(release, opts.candidates);
  const seen = new Set<string>();
  for (const path of candidates) {
    const note = (why: string) => notes.push(`running image ${path}: ${why}`);
    let fd: number;
    try {
      fd = openFile(join(root, path), O_RDONLY | O_CLOEXEC | O_NONBLOCK); // O_NONBLOCK: a FIFO must not block luod
    } catch (e) {
      note(e instanceof SysError ? (e.code === "ENOENT" ? "absent" : e.code) : String(e));
      continue;
    }
    try {
      const st = fstatSync(fd); // what was opened is what is checked and read
      const id = `${st.dev}:${st.ino}`;
      if (seen.has(id)) continue; // the same file by another name (a symlink)
      seen.add(id);
      if (!st.isFile()) {
        note("not a regular file");
        continue;
      }
      if (!trusted.includes(st.uid)) {
        note(`belongs to uid ${st.uid}, not root: not trusted`);
        continue;
      }
      if ((st.mode & 0o022) !== 0) {
        note(`writable by group or others (mode 0${(st.mode & 0o7777).toString(8)}): not trusted`);
        continue;
      }
      const head = new Uint8Array(Math.min(st.size, KERNEL_HEAD_BYTES));
      readFull(fd, head, 0);
      const info = inspectKernelImage(head, st.size);
      if (!info.ok) {
        note(info.reason);
        continue;
      }
      if (kernelRelease(info.version) !== release) {
        note(`its setup header says release ${kernelRelease(info.version)}, not ${release}`); // no decode needed
        continue;
      }
      const abi = await readImage(fd, info, opts);
      if (!abi.ok) {
        note(abi.message);
        continue;
      }
      if (!abi.banners.includes(procVersion)) {
        note("its banner is not /proc/version: another build");
        continue;
      }
      return { ok: true, path, abi };
    } catch (e) {
      note(e instanceof SysError ? e.code : String((e as Error)?.message ?? e));
    } finally {
      closeQuietly(fd);
    }
  }
  if (candidates.length === 0) notes.push("running image: no candidates");
  return { ok: false };
}

/**
 * The running kernel's LUO, memfd and KHO strings with their sources. A string that debugfs and
 * the running image give differently is a conflict: null, with a note. Never throws.
 */
export async function probeRunningAbi(opts: RunningAbiOptions = {}): Promise<ProbedAbi> {
  const debugfs = readKhoDebugfs(opts.root ?? "/");
  const notes = [...debugfs.notes];
  const image = await probeRunningImage(opts, notes);
  const out: ProbedAbi = {
    luo: { value: null, source: null },
    memfd: { value: null, source: null },
    kho: { value: null, source: null },
    image: image.ok ? image.path : null,
    notes,
  };
  for (const kind of ABI_KINDS) {
    const fromDebugfs = kind === "memfd" ? null : debugfs[kind as Exclude<AbiKind, "memfd">];
    const fromImage = image.ok ? image.abi[kind] : null;
    const imageSource = image.ok ? `running image ${image.path}` : null;
    if (image.ok && image.abi.ambiguous[kind]) {
      notes.push(`${imageSource}: several ${kind} strings (${image.abi.ambiguous[kind]!.join(", ")})`);
    }
    if (fromDebugfs !== null && fromImage !== null && fromDebugfs !== fromImage) {
      notes.push(`${kind}: kho debugfs says ${fromDebugfs}, ${imageSource} says ${fromImage}: conflict`);
    } else if (fromDebugfs !== null) {
      out[kind] = { value: fromDebugfs, source: "kho debugfs" };
    } else if (fromImage !== null) {
      out[kind] = { value: fromImage, source: imageSource };
    } else if (image.ok && !image.abi.ambiguous[kind]) {
      notes.push(`${imageSource}: no ${kind} string`);
    }
  }
  return out;
}

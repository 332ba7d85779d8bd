// Kernel command line hygiene for the next kernel (pure; no I/O).
//
// The rules follow the kernel's own parser, not a guess:
//  * Tokens are split like lib/cmdline.c:next_arg: whitespace separates, a double quote toggles
//    "inside quotes" anywhere in a token (`foo="a b"` and `"foo=a b"` are one token each). Tokens
//    are written back verbatim (quotes kept), joined by single spaces.
//  * A parameter's name is the token up to its first `=` (a leading quote skipped), compared like
//    kernel/params.c:parameq, i.e. `-` and `_` are the same character.
//  * A bare `--` ends the kernel's parameters (kernel/params.c:parse_args "Stop at --"); everything
//    after it is passed to init. It is kept verbatim and never de-duplicated or inspected.
//  * `liveupdate=` and `kho=` are early_params parsed with kstrtobool (lib/kstrtox.c): the first
//    character decides (1/y/Y/t/T/e/E → true; 0/n/N/f/F/d/D → false; "on"/"of(f)" by the second
//    character). An invalid value, **including a bare `liveupdate` without `=`** (the handler gets
//    NULL → -EINVAL, "Malformed early option"), leaves the previous value unchanged. So the last
//    *valid* occurrence wins, and a bare `liveupdate` does NOT turn LUO on. LUO defaults to off.
//  * KHO's default comes from CONFIG_KEXEC_HANDOVER_ENABLE_DEFAULT, which we cannot see from
//    userspace for the *next* kernel, so a missing `kho=` is only a warning.

import { splitCmdline } from "../cmdline-split";

export { splitCmdline }; // luod's code and tests take it from here

/** Parameters removed by normalizeCmdline: meaningless after a kexec (kexec passes the initrd as
 *  a segment; BOOT_IMAGE is a boot-loader annotation). Compared like parameq. */
const STRIPPED = new Set(["BOOT_IMAGE", "initrd"]);

/**
 * Parameters the kernel (or its initramfs) legitimately takes several times, where "last wins"
 * would silently break the system: several consoles, memmap regions, hugepage pools (which are
 * *pairs*, order matters), several `ip=` interfaces, crashkernel high/low. For these only exact
 * duplicate tokens are collapsed (keeping the last position).
 */
const REPEATABLE = new Set(["console", "memmap", "hugepagesz", "hugepages", "ip", "crashkernel"]);

interface Param {
  /** Name as written (leading quote removed). */
  name: string;
  /** Canonical name for comparison (`-` → `_`). */
  key: string;
  /** Value with the kernel's quote stripping, or null for a bare parameter. */
  value: string | null;
}

/** Parse one token into name/value like next_arg does. */
export function parseParam(token: string): Param {
  let t = token;
  const quoted = t.startsWith('"');
  if (quoted) t = t.slice(1);
  const eq = t.indexOf("=");
  let name: string;
  let value: string | null;
  if (eq <= 0) {
    // next_arg: `equals` is an index and 0 means "none", so a token starting with '=' has no value.
    name = t;
    value = null;
    if (quoted && name.endsWith('"')) name = name.slice(0, -1);
  } else {
    name = t.slice(0, eq);
    value = t.slice(eq + 1);
    if (value.startsWith('"')) {
      value = value.slice(1);
      if (value.endsWith('"')) value = value.slice(0, -1);
    } else if (quoted && value.endsWith('"')) {
      value = value.slice(0, -1);
    }
  }
  return { name, key: canonicalKey(name), value };
}

function canonicalKey(name: string): string {
  return name.replaceAll("-", "_");
}

/** Index of the `--` token that ends the kernel parameters, or tokens.length. */
function initArgsStart(tokens: string[]): number {
  const i = tokens.indexOf("--");
  return i < 0 ? tokens.length : i;
}

/**
 * Normalize a command line for the next kernel: split respecting double quotes, strip
 * `BOOT_IMAGE=` and `initrd=`, de-duplicate parameters with last-wins (a parameter keeps the
 * position of its last occurrence; `key` and `key=value` are the same parameter; see REPEATABLE
 * for the exceptions), and collapse whitespace. Everything after `--` is kept verbatim.
 */
export function normalizeCmdline(raw: string): string {
  const tokens = splitCmdline(raw);
  const end = initArgsStart(tokens);
  const kernel = tokens.slice(0, end);
  const init = tokens.slice(end); // starts with "--" if present

  // Walk backwards: the first time we meet a parameter (from the end) is its last occurrence.
  const seen = new Set<string>();
  const kept: string[] = [];
  for (let i = kernel.length - 1; i >= 0; i--) {
    const tok = kernel[i]!;
    const p = parseParam(tok);
    if (STRIPPED.has(p.key)) continue;
    const dedupKey = REPEATABLE.has(p.key) ? `${p.key}\u0000${tok}` : p.key;
    if (seen.has(dedupKey)) continue;
    seen.add(dedupKey);
    kept.push(tok);
  }
  kept.reverse();
  return [...kept, ...init].join(" ");
}

/** kstrtobool: true/false, or undefined for an invalid value (NULL included). */
export function kstrtobool(value: string | null): boolean | undefined {
  if (value === null || value.length === 0) return undefined;
  const c0 = value[0]!;
  if ("eEyYtT1".includes(c0)) return true;
  if ("dDnNfF0".includes(c0)) return false;
  if (c0 === "o" || c0 === "O") {
    const c1 = value[1];
    if (c1 === "n" || c1 === "N") return true;
    if (c1 === "f" || c1 === "F") return false;
  }
  return undefined;
}

/**
 * Value of an early boolean parameter as the kernel would see it: the last valid occurrence
 * before `--`, or undefined when none is valid (the kernel default applies).
 */
export function earlyBool(cmdline: string, name: string): boolean | undefined {
  const tokens = splitCmdline(cmdline);
  const end = initArgsStart(tokens);
  const key = canonicalKey(name);
  let result: boolean | undefined;
  for (let i = 0; i < end; i++) {
    const p = parseParam(tokens[i]!);
    if (p.key !== key) continue;
    const b = kstrtobool(p.value);
    if (b !== undefined) result = b;
  }
  return result;
}

/** Whether the kernel would run with LUO enabled (`liveupdate=<true>`; default off). */
export function hasLiveupdateOn(cmdline: string): boolean {
  return earlyBool(cmdline, "liveupdate") === true;
}

export interface CmdlineAnalysis {
  /** Problems that make luod refuse the load (unless forced, for the forceable ones). */
  errors: string[];
  /** Things worth telling the admin that do not block the load. */
  warnings: string[];
}

export interface CheckOptions {
  /** Load anyway when LUO would be off in the next kernel. */
  force?: boolean;
  /**
   * Longest command line the image accepts, in characters without the NUL (from
   * inspectKernelImage().maxCmdlineLength). Exceeding it cannot be forced: the kernel says EINVAL.
   */
  maxLength?: number;
  /**
   * KHO is known to be on without `kho=` (the running kernel has LUO and no `kho=` either, so its
   * build turns KHO on by default): then a missing `kho=on` is not worth a warning.
   */
  khoOnByDefault?: boolean;
}

/**
 * Check a (normalized) command line for the next kernel. With `force`, the LUO problems become
 * warnings; problems the kernel would reject anyway (NUL byte, too long) stay errors.
 */
export function analyzeCmdline(cmdline: string, opts: CheckOptions = {}): CmdlineAnalysis {
  const errors: string[] = [];
  const warnings: string[] = [];
  const luo: string[] = [];

  const lu = earlyBool(cmdline, "liveupdate");
  if (lu !== true) {
    luo.push(
      lu === false
        ? "the command line turns liveupdate off: the new kernel would not restore any session"
        : "the command line has no liveupdate=on: the new kernel would not restore any session",
    );
  }
  const kho = earlyBool(cmdline, "kho");
  if (kho === false) {
    luo.push("the command line has kho=off: KHO (and with it liveupdate) would be off in the new kernel");
  } else if (kho === undefined && !opts.khoOnByDefault) {
    warnings.push("no kho=on in the command line: KHO must then be on by default in the new kernel (CONFIG_KEXEC_HANDOVER_ENABLE_DEFAULT=y)");
  }
  if (opts.force) warnings.push(...luo.map((m) => `${m} (forced)`));
  else errors.push(...luo);

  if (cmdline.includes("\0")) errors.push("the command line contains a NUL byte");
  if (opts.maxLength !== undefined) {
    const len = new TextEncoder().encode(cmdline).length;
    if (len > opts.maxLength) {
      errors.push(`the command line is ${len} bytes long; this kernel accepts at most ${opts.maxLength}`);
    }
  }
  return { errors, warnings };
}

/** The blocking problems of analyzeCmdline (empty → the load may proceed). */
export function checkCmdline(cmdline: string, opts: CheckOptions = {}): string[] {
  return analyzeCmdline(cmdline, opts).errors;
}

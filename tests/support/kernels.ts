// Real kernel images for the image tests, found in the cache only (never built or downloaded here):
//  * the VM harness's builds: `scripts/vm/build-kernel.sh --cached-only VARIANT` prints the bzImage
//    path, or fails when it is not cached; the expected ABI strings come from the `abi.env` written
//    next to it, or, when there is none, from the headers of the kernel source it was built from.
//  * Debian's stock kernel: `scripts/vm/debian-kernel.sh --cached-only` (zstd, no CONFIG_LIVEUPDATE).
// Tests that need one use test.skipIf(kernel === null): a missing kernel shows up as a skip.
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import type { AbiStrings } from "../../src/daemon/image-abi";

const ROOT = resolve(import.meta.dir, "../..");

export interface CachedKernel {
  path: string;
  expected: AbiStrings;
  /** Where `expected` came from ("abi.env", "kernel source headers …"). */
  expectedFrom: string;
}

function run(cmd: string[]): string | null {
  const r = Bun.spawnSync({ cmd, cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) return null;
  const out = r.stdout.toString().trim().split("\n").pop() ?? "";
  return out !== "" && existsSync(out) ? out : null;
}

/** abi.env (scripts/vm/build-kernel.sh): KEY=VALUE lines, VALUE optionally in single quotes (sourceable by sh). */
export function parseAbiEnv(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const m = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line);
    if (m) out[m[1]!] = m[2]!.replace(/^'(.*)'$/, "$1");
  }
  return out;
}

/** The ABI strings #defined in a kernel source tree (include/linux/kho/abi/). */
export function abiFromSource(tree: string): AbiStrings | null {
  const grab = (file: string, macro: string): string | null => {
    const path = join(tree, "include/linux/kho/abi", file);
    if (!existsSync(path)) return null;
    return new RegExp(`#define\\s+${macro}\\s+"([^"]+)"`).exec(readFileSync(path, "utf8"))?.[1] ?? null;
  };
  const luo = grab("luo.h", "LUO_ABI_COMPATIBLE");
  const memfd = grab("memfd.h", "MEMFD_LUO_FH_COMPATIBLE");
  const kho = grab("kexec_handover.h", "KHO_FDT_COMPATIBLE");
  return luo && memfd && kho ? { luo, memfd, kho } : null;
}

/** A cached VM-harness kernel and the ABI strings it must contain, or null (not cached). */
export function cachedKernel(variant: "a" | "b" | "c"): CachedKernel | null {
  const path = run(["bash", "scripts/vm/build-kernel.sh", "--cached-only", variant]);
  if (path === null) return null;
  const env = join(dirname(path), "abi.env");
  if (existsSync(env)) {
    const e = parseAbiEnv(readFileSync(env, "utf8"));
    if (e.LUO_ABI && e.MEMFD_ABI && e.KHO_ABI) {
      return { path, expected: { luo: e.LUO_ABI, memfd: e.MEMFD_ABI, kho: e.KHO_ABI }, expectedFrom: env };
    }
  }
  if (variant !== "a") return null; // B and C are patched: only their abi.env tells
  const tree = run(["bash", "scripts/vm/kernel-source.sh", "--cached-only"]);
  const expected = tree === null ? null : abiFromSource(tree);
  return expected ? { path, expected, expectedFrom: `kernel source headers in ${tree}` } : null;
}

/** Debian sid's stock amd64 kernel, if scripts/vm/debian-kernel.sh has downloaded it. */
export function debianKernel(): { path: string; release: string } | null {
  const path = run(["bash", "scripts/vm/debian-kernel.sh", "--cached-only"]);
  if (path === null) return null;
  return { path, release: readFileSync(join(dirname(path), "release"), "utf8").trim() };
}

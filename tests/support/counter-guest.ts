// The counter guest of the QEMU tests (examples/qemu/counter-guest.S), built by its own script.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { REPO } from "./binary";

const SOURCE = join(REPO, "examples/qemu/counter-guest.S");

/** Assembles the guest into `out` (64 KiB, QEMU's -bios); throws with build-guest.sh's line. */
export function buildCounterGuest(out: string): void {
  const r = Bun.spawnSync(["sh", join(REPO, "examples/qemu/build-guest.sh"), out], { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`build-guest.sh failed: ${r.stderr.toString().trim()}`);
}

/** What consecutive COUNT lines differ by: 2^COUNT_SHIFT, read from the source. */
export const COUNT_STEP = 2 ** Number(/^COUNT_SHIFT\s*=\s*(\d+)/m.exec(readFileSync(SOURCE, "utf8"))?.[1] ?? NaN);

// How luo runs itself as a helper process: the command line of this very binary (or, from source,
// of bun with src/main.ts), with an internal first argument that src/main.ts dispatches on before
// it picks a personality. /proc/self/exe, not process.execPath: after a package upgrade replaced
// the file, the running luod's helpers must still be its own version (the old inode;
// docs/kernel.md, "The running binary and the OOM score of helpers").

import { fileURLToPath } from "node:url";

/** The image reader's child (src/daemon/image-child.ts). */
export const IMAGE_ABI_COMMAND = "--internal-image-abi";

/** `[executable, ...]` that starts this program with `args`. */
export function selfCommand(args: readonly string[]): string[] {
  // compiled, every module's URL is under /$bunfs (src/worker-url.ts); from source, main.ts is beside this file
  if (import.meta.url.startsWith("file:///$bunfs/")) return ["/proc/self/exe", ...args];
  return [process.execPath, fileURLToPath(new URL("./main.ts", import.meta.url)), ...args];
}

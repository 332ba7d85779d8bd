// Where a Worker's entry module is: beside its caller when run from source, or inside a
// `bun build --compile` binary. There all modules are bundled into the entry, so import.meta.url
// is the binary's root (/$bunfs/root/<outfile>), while a worker (another entry point) keeps its
// path relative to the entries' common directory, as .js: `bun build --compile src/main.ts
// src/kernel/epoll-worker.ts` embeds it as /$bunfs/root/kernel/epoll-worker.js. (Verified with
// Bun 1.4.5; "./epoll-worker.ts" alone fails there with ModuleNotFound. docs/bun.md#the-compiled-binary)
import { existsSync } from "node:fs";

/**
 * @param callerUrl the caller's import.meta.url (the worker sits beside the caller in src/)
 * @param dir the caller's directory under src/ ("kernel", "daemon")
 * @param name the worker module's name without extension ("epoll-worker")
 */
export function workerUrl(callerUrl: string, dir: string, name: string): string {
  const beside = new URL(`./${name}.ts`, callerUrl);
  if (!callerUrl.startsWith("file:///$bunfs/")) return beside.href;
  for (const rel of [`./${name}.js`, `./${dir}/${name}.js`, `./src/${dir}/${name}.js`]) {
    const url = new URL(rel, callerUrl);
    if (existsSync(url.pathname)) return url.href;
  }
  throw new Error(`${name} is not embedded in this binary; build it with scripts/build-binary.ts (src/${dir}/${name}.ts is an entry point)`);
}

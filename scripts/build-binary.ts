// Builds the single executable dist/luo and its personality symlinks dist/luod, dist/luoctl and
// dist/luo-qemu.
//   node_modules/.bin/bun scripts/build-binary.ts
// Flags (docs in the repo's README, facts in docs/bun.md#the-compiled-binary):
//  --bytecode halves startup time; it needs --format=esm for top-level await.
//  --splitting: each personality's code is a chunk its dynamic import loads (luoctl status 46 -> 34 ms).
//  --no-compile-autoload-dotenv/-bunfig: a system tool must not read .env/bunfig.toml from its CWD.
//  The epoll worker is a second entry point, so `new Worker(new URL(...))` finds it in the binary.
import { mkdirSync, rmSync, symlinkSync, statSync } from "node:fs";
import { join, resolve } from "node:path";

const root = resolve(import.meta.dir, "..");
const dist = join(root, "dist");
const out = join(dist, "luo");
mkdirSync(dist, { recursive: true });

const started = performance.now();
const build = Bun.spawnSync({
  cmd: [
    process.execPath, "build", "--compile", "--minify", "--bytecode", "--splitting", "--format=esm",
    "--no-compile-autoload-dotenv", "--no-compile-autoload-bunfig",
    "src/main.ts", "src/kernel/epoll-worker.ts",
    "--outfile", out,
  ],
  cwd: root,
  stdout: "inherit",
  stderr: "inherit",
});
if (build.exitCode !== 0) {
  console.error(`build-binary: bun build failed (exit ${build.exitCode})`);
  process.exit(1);
}
for (const name of ["luod", "luoctl", "luo-qemu"]) {
  rmSync(join(dist, name), { force: true });
  symlinkSync("luo", join(dist, name));
}
const mib = (statSync(out).size / 2 ** 20).toFixed(1);
console.log(`build-binary: ${out} (${mib} MiB) + luod, luoctl, luo-qemu symlinks in ${Math.round(performance.now() - started)} ms`);

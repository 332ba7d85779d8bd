// The previous release's build, for the N-1 -> N upgrade VM test (tests/vm/systemd-upgrade.test.ts):
// its luo binary and units as that release shipped them. Prints the directory holding
//   luo  luod.service  luo-qemu@.service  release (commit and version)
// cached in ~/.cache/luo-agent/prev/<commit>/ (built once: a `git archive` of the commit, its
// node_modules linked from this checkout when the lockfile's packages are the same, else
// `npm ci --prefer-offline`, then its own scripts/build-binary.ts).
//   node_modules/.bin/bun scripts/vm/previous-release.ts
// The previous release is the last tag (`git describe --tags --abbrev=0`), else PINNED.
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join, resolve } from "node:path";

// No release is tagged yet: the last commit before the Debian package (version 0.1.0), whose
// installation is the manual one of its docs/systemd.md. Replace by tagging releases.
const PINNED = "a93c5ded61cf0050d119146fae45a5fa94f3b794";

const root = resolve(import.meta.dir, "../..");

function die(line: string): never {
  console.error(`previous-release: ${line}`);
  process.exit(1);
}

function git(args: string[]): { ok: boolean; out: string } {
  const r = Bun.spawnSync(["git", ...args], { cwd: root, stdout: "pipe", stderr: "pipe" });
  return { ok: r.exitCode === 0, out: r.stdout.toString().trim() };
}

const tag = git(["describe", "--tags", "--abbrev=0"]);
const ref = tag.ok && tag.out ? tag.out : PINNED;
const resolved = git(["rev-parse", "--verify", "-q", `${ref}^{commit}`]);
if (!resolved.ok) die(`the previous release ${ref} is not in this clone (git fetch --tags, or a full clone)`);
const commit = resolved.out;

const cache = join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "luo-agent/prev", commit);
const wanted = ["luo", "luod.service", "luo-qemu@.service", "release"];
if (wanted.every((f) => existsSync(join(cache, f)))) {
  console.log(cache);
  process.exit(0);
}

/** The lockfile's packages without the root entry (whose version is the release's own). */
function lockedPackages(lockfile: string): string {
  const lock = JSON.parse(readFileSync(lockfile, "utf8")) as { packages?: Record<string, unknown> };
  const { "": _root, ...rest } = lock.packages ?? {};
  return JSON.stringify(rest);
}

function step(cmd: string[], cwd: string): void {
  // the steps' output goes to stderr: stdout carries only the cache path (the callers read it)
  const r = Bun.spawnSync(cmd, { cwd, stdout: 2, stderr: "inherit", stdin: "ignore" });
  if (r.exitCode !== 0) die(`${cmd.join(" ")} failed in ${cwd} (exit ${r.exitCode})`);
}

const started = performance.now();
mkdirSync(join(cache, ".."), { recursive: true });
const work = mkdtempSync(`${cache}.tmp-`);
try {
  const src = join(work, "src");
  mkdirSync(src);
  // git archive | tar -x, without a shell
  const archive = Bun.spawnSync(["git", "archive", "--format=tar", commit], { cwd: root, stdout: "pipe", stderr: "pipe" });
  if (archive.exitCode !== 0) die(`git archive ${commit} failed: ${archive.stderr.toString().trim()}`);
  const untar = Bun.spawnSync(["tar", "-x", "-C", src], { stdin: archive.stdout, stdout: 2, stderr: "inherit" });
  if (untar.exitCode !== 0) die(`tar -x of ${commit} failed`);

  const ours = join(root, "node_modules");
  if (existsSync(ours) && lockedPackages(join(src, "package-lock.json")) === lockedPackages(join(root, "package-lock.json"))) {
    symlinkSync(realpathSync(ours), join(src, "node_modules"));
  } else {
    step(["npm", "ci", "--prefer-offline", "--no-audit", "--no-fund"], src);
  }
  step([join(src, "node_modules/.bin/bun"), "scripts/build-binary.ts"], src);

  const out = join(work, "out");
  mkdirSync(out);
  copyFileSync(join(src, "dist/luo"), join(out, "luo"));
  copyFileSync(join(src, "luod.service"), join(out, "luod.service"));
  copyFileSync(join(src, "luo-qemu@.service"), join(out, "luo-qemu@.service"));
  const version = JSON.parse(readFileSync(join(src, "package.json"), "utf8")).version;
  writeFileSync(join(out, "release"), `COMMIT=${commit}\nVERSION=${version}\n`);
  rmSync(cache, { recursive: true, force: true });
  renameSync(out, cache);
} finally {
  rmSync(work, { recursive: true, force: true });
}
console.error(`previous-release: built ${commit.slice(0, 12)} in ${Math.round((performance.now() - started) / 1000)} s`);
console.log(cache);

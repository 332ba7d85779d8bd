// Builds the Debian package dist/luo-agent_<version>_<arch>.deb from dist/luo (build-binary.ts),
// the units, the manual (man pages, completions, /etc/luod.conf: scripts/build-manual.ts) and
// packaging/debian/ (maintainer scripts, copyright, changelog, lintian overrides).
//   node_modules/.bin/bun scripts/package.ts [--out DIR] [--lint]
//   npm run package        (= build-binary.ts, then this with --lint)
// --lint runs `lintian --fail-on error,warning` on the result (scripts/vm/deps.sh package installs it).
// env: LUO_MANUAL_DIR=DIR takes the manual from DIR (the layout build-manual.ts writes) instead of
// running build-manual.ts. The layout and the maintainer scripts: docs/systemd.md, "The Debian package".
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join, relative, resolve } from "node:path";

const root = resolve(import.meta.dir, "..");
const debian = join(root, "packaging/debian");
const dist = join(root, "dist");

function die(line: string): never {
  console.error(`package: ${line}`);
  process.exit(1);
}

function run(cmd: string[], opts: { cwd?: string; env?: Record<string, string> } = {}): string {
  const r = Bun.spawnSync({ cmd, cwd: opts.cwd ?? root, env: { ...process.env, ...opts.env }, stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) die(`${cmd.join(" ")} failed (exit ${r.exitCode}): ${r.stderr.toString().trim() || r.stdout.toString().trim()}`);
  return r.stdout.toString();
}

const args = process.argv.slice(2);
const lint = args.includes("--lint");
const outIndex = args.indexOf("--out");
const outDir = outIndex >= 0 ? resolve(args[outIndex + 1] ?? die("--out needs a directory")) : dist;
for (const a of args) if (a.startsWith("-") && a !== "--lint" && a !== "--out") die(`unknown option ${a} (usage: package.ts [--out DIR] [--lint])`);

// ---- what goes in ---------------------------------------------------------------------------------
const started = performance.now();
const upstream: string = JSON.parse(readFileSync(join(root, "package.json"), "utf8")).version;
const changelog = readFileSync(join(debian, "changelog"), "utf8");
// the package's version is the changelog's top entry; its upstream part must be package.json's
const top = /^luo-agent \(([^)]+)\)/.exec(changelog) ?? die("packaging/debian/changelog: no 'luo-agent (VERSION)' first line");
const version = top[1]!;
if (version.replace(/-[^-]+$/, "") !== upstream) die(`packaging/debian/changelog is at ${version}, package.json at ${upstream}: add a changelog entry`);
const date = /^ -- .+?>  (.+)$/m.exec(changelog) ?? die("packaging/debian/changelog: no trailer line");
const epoch = Math.floor(Date.parse(date[1]!) / 1000);
if (!Number.isFinite(epoch)) die(`packaging/debian/changelog: cannot read the date '${date[1]}'`);
const arch = run(["dpkg", "--print-architecture"]).trim();

const binary = join(dist, "luo");
if (!existsSync(binary)) die(`${binary} is missing: run 'npm run build' first`);
// the personalities are the symlinks build-binary.ts puts next to dist/luo
const personalities = readdirSync(dist).filter((n) => lstatSync(join(dist, n)).isSymbolicLink() && readlinkSync(join(dist, n)) === "luo").sort();
if (personalities.length === 0) die(`no personality symlinks next to ${binary}: run 'npm run build' again`);

const work = mkdtempSync(join(tmpdir(), "luo-package-"));
process.on("exit", () => rmSync(work, { recursive: true, force: true }));

/** The manual: LUO_MANUAL_DIR, or what scripts/build-manual.ts writes. */
function manualDir(): string {
  const given = process.env.LUO_MANUAL_DIR;
  if (given) return resolve(given);
  const script = join(root, "scripts/build-manual.ts");
  if (!existsSync(script)) die("scripts/build-manual.ts is missing: the package needs its man pages, completions and luod.conf (or set LUO_MANUAL_DIR to a directory in its layout)");
  const out = join(work, "manual");
  run([process.execPath, script, out]);
  return out;
}
const manual = manualDir();
const required = ["man/man8/luod.8", "man/man8/luoctl.8", "man/man5/luod.conf.5", "completions/bash/luoctl", "completions/bash/luod", "completions/zsh/_luoctl", "completions/zsh/_luod", "luod.conf"];
const missing = required.filter((f) => !existsSync(join(manual, f)));
if (missing.length) die(`the manual in ${manual} lacks ${missing.join(", ")}`);

// ---- the tree -------------------------------------------------------------------------------------
const tree = join(work, "root");

function put(path: string, content: string | Uint8Array, mode = 0o644): void {
  const abs = join(tree, path);
  mkdirSync(dirname(abs), { recursive: true });
  writeFileSync(abs, content);
  chmodSync(abs, mode);
}
function gzip(path: string): Uint8Array {
  const r = Bun.spawnSync(["gzip", "-9nc", path], { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) die(`gzip -9n ${path} failed: ${r.stderr.toString().trim()}`);
  return r.stdout;
}

put("usr/bin/luo", readFileSync(binary), 0o755);
for (const p of personalities) symlinkSync("luo", join(tree, "usr/bin", p));

// the units keep /usr/local/bin for a manual installation (docs/systemd.md, "Install on a host");
// the package's point at /usr/bin. Only ExecStart= names the binary; a second line says so.
const PACKAGED_NOTE = "# (The luo-agent package's copy: ExecStart= in /usr/bin; the install notes are for a manual installation.)";
for (const unit of ["luod.service", "luo-qemu@.service"]) {
  const text = readFileSync(join(root, unit), "utf8");
  const exec = text.split("\n").filter((l) => l.startsWith("ExecStart="));
  if (exec.length !== 1 || !exec[0]!.startsWith("ExecStart=/usr/local/bin/")) die(`${unit}: expected one ExecStart=/usr/local/bin/…, found ${JSON.stringify(exec)}`);
  const [first, ...rest] = text.replace(/^ExecStart=\/usr\/local\/bin\//m, "ExecStart=/usr/bin/").split("\n");
  put(`usr/lib/systemd/system/${unit}`, [first, PACKAGED_NOTE, ...rest].join("\n"));
}

put("etc/luod.conf", readFileSync(join(manual, "luod.conf")));

const manPages: string[] = [];
for (const section of readdirSync(join(manual, "man"))) {
  for (const page of readdirSync(join(manual, "man", section))) {
    put(`usr/share/man/${section}/${page}.gz`, gzip(join(manual, "man", section, page)));
    manPages.push(page);
  }
}
for (const name of readdirSync(join(manual, "completions/bash"))) put(`usr/share/bash-completion/completions/${name}`, readFileSync(join(manual, "completions/bash", name)));
for (const name of readdirSync(join(manual, "completions/zsh"))) put(`usr/share/zsh/vendor-completions/${name}`, readFileSync(join(manual, "completions/zsh", name)));

const doc = "usr/share/doc/luo-agent";
put(`${doc}/copyright`, readFileSync(join(debian, "copyright"), "utf8").replaceAll("@BUN_VERSION@", Bun.version));
writeFileSync(join(work, "changelog.Debian"), changelog);
put(`${doc}/changelog.Debian.gz`, gzip(join(work, "changelog.Debian")));
put(`${doc}/README.md`, readFileSync(join(root, "README.md")));
for (const name of readdirSync(join(root, "docs")).filter((n) => n.endsWith(".md"))) put(`${doc}/docs/${name}`, readFileSync(join(root, "docs", name)));

// a personality without its own page (the manual has none yet) is said in the overrides, with why
let overrides = readFileSync(join(debian, "lintian-overrides"), "utf8");
for (const p of ["luo", ...personalities].filter((p) => !manPages.some((m) => m.startsWith(`${p}.`)))) {
  const why = p === "luo"
    ? "luo is the multi-call executable; it is run as luod, luoctl or luo-qemu, whose pages say what each does (`luo --help` lists them)"
    : `the manual (scripts/build-manual.ts) has no page for ${p} yet; \`${p} --help\` and docs/ describe it`;
  overrides += `\n# ${why}\nbinary-without-manpage [usr/bin/${p}]\n`;
}
put("usr/share/lintian/overrides/luo-agent", overrides);

// ---- DEBIAN/ ----------------------------------------------------------------------------------------
function files(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const abs = join(dir, n);
    const st = lstatSync(abs);
    return st.isDirectory() ? files(abs) : [abs];
  });
}
const payload = files(tree);
// as dpkg-gencontrol counts: KiB per file, rounded up, symlinks 1
const installedKiB = payload.reduce((sum, f) => sum + (lstatSync(f).isSymbolicLink() ? 1 : Math.ceil(statSync(f).size / 1024)), 0);

// the binary's shared-library dependencies (glibc), as dh_shlibdeps computes them
mkdirSync(join(work, "shlibs/debian"), { recursive: true });
writeFileSync(join(work, "shlibs/debian/control"), "Source: luo-agent\n\nPackage: luo-agent\nArchitecture: any\n");
const shlibs = run(["dpkg-shlibdeps", "-O", join(tree, "usr/bin/luo")], { cwd: join(work, "shlibs") });
const depends = /^shlibs:Depends=(.+)$/m.exec(shlibs)?.[1] ?? die(`dpkg-shlibdeps gave no dependencies: ${shlibs.trim()}`);

const control = readFileSync(join(debian, "control"), "utf8")
  .replace("@VERSION@", version).replace("@ARCH@", arch)
  .replace("@INSTALLED_SIZE@", String(installedKiB)).replace("@DEPENDS@", depends);
put("DEBIAN/control", control);
put("DEBIAN/conffiles", "/etc/luod.conf\n");
for (const script of ["postinst", "prerm", "postrm"]) put(`DEBIAN/${script}`, readFileSync(join(debian, script)), 0o755);
const md5 = payload.filter((f) => !lstatSync(f).isSymbolicLink() && !f.startsWith(join(tree, "etc/")))
  .map((f) => `${new Bun.CryptoHasher("md5").update(readFileSync(f)).digest("hex")}  ${relative(tree, f)}\n`).join("");
put("DEBIAN/md5sums", md5);

// reproducible: every mtime is the changelog's date (dpkg-deb also clamps to SOURCE_DATE_EPOCH)
for (const f of [...files(tree), ...dirsOf(tree)]) if (!lstatSync(f).isSymbolicLink()) utimesSync(f, epoch, epoch);
function dirsOf(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => (lstatSync(join(dir, n)).isDirectory() ? [join(dir, n), ...dirsOf(join(dir, n))] : []));
}

mkdirSync(outDir, { recursive: true });
const deb = join(outDir, `luo-agent_${version}_${arch}.deb`);
// gzip, not dpkg-deb's default xz: xz -6 takes 55 s for the 107 MB binary on this 2-core host, gzip a few
run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", tree, deb], { env: { SOURCE_DATE_EPOCH: String(epoch) } });
const mib = (statSync(deb).size / 2 ** 20).toFixed(1);
console.log(`package: ${deb} (${mib} MiB) in ${Math.round(performance.now() - started)} ms`);

if (lint) {
  const t = performance.now();
  const r = Bun.spawnSync(["lintian", "--fail-on", "error,warning", "--tag-display-limit", "0", deb], { stdout: "inherit", stderr: "inherit" });
  if (r.exitCode !== 0) die(`lintian found errors or warnings in ${basename(deb)} (exit ${r.exitCode})`);
  console.log(`package: lintian clean in ${Math.round(performance.now() - t)} ms`);
}

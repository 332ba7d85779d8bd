// The Debian package (scripts/package.ts, `npm run package`): built from dist/luo into a temporary
// directory, lintian-clean at --fail-on error,warning, and holding what docs/systemd.md, "The
// Debian package" says: every personality of src/main.ts as a symlink to /usr/bin/luo, the units
// with /usr/bin paths, /etc/luod.conf as a conffile, the man pages (gzip -9n), the completions,
// the DEP-5 copyright naming the embedded Bun runtime. Needs dpkg-deb, dpkg-shlibdeps and lintian
// (scripts/vm/deps.sh package, run here) and the manual (scripts/build-manual.ts or LUO_MANUAL_DIR).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO, requireBinary } from "../support/binary";

const out = mkdtempSync(join(tmpdir(), "luo-package-test-"));
let deb = "";

function sh(cmd: string[]): { code: number; stdout: string; stderr: string } {
  const r = Bun.spawnSync(cmd, { cwd: REPO, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode ?? -1, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

/** One file of the package's data (dpkg-deb -x'ed once), as bytes. */
function member(path: string): Uint8Array {
  return readFileSync(join(out, "root", path));
}

/** `dpkg-deb -c` as path -> "mode owner/group [-> target]". */
function contents(): Map<string, string> {
  const lines = sh(["dpkg-deb", "-c", deb]).stdout.trim().split("\n");
  return new Map(lines.map((l) => {
    const f = l.split(/\s+/);
    const [mode, owner, path, arrow, target] = [f[0]!, f[1]!, f[5]!, f[6], f[7]];
    return [path.replace(/^\.\//, "/").replace(/\/$/, ""), `${mode} ${owner}${arrow === "->" ? ` -> ${target}` : ""}`];
  }));
}

beforeAll(() => {
  requireBinary();
  const deps = sh([join(REPO, "scripts/vm/deps.sh"), "package"]);
  if (deps.code !== 0) throw new Error(`scripts/vm/deps.sh package failed: ${deps.stderr}`);
  const r = sh([process.execPath, "scripts/package.ts", "--out", out]);
  if (r.code !== 0) throw new Error(`scripts/package.ts failed (exit ${r.code}): ${r.stderr}`);
  deb = join(out, readdirSync(out).find((n) => n.endsWith(".deb")) ?? "");
  const x = sh(["dpkg-deb", "-x", deb, join(out, "root")]);
  if (x.code !== 0) throw new Error(`dpkg-deb -x ${deb} failed: ${x.stderr}`);
}, 120_000);
afterAll(() => rmSync(out, { recursive: true, force: true }));

describe("the Debian package", () => {
  test("is named after package.json's version and the architecture, and lintian finds no error or warning", () => {
    const version = JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")).version;
    const arch = sh(["dpkg", "--print-architecture"]).stdout.trim();
    expect(deb).toMatch(new RegExp(`/luo-agent_${version.replaceAll(".", "\\.")}-\\d+_${arch}\\.deb$`));
    const lint = sh(["lintian", "--fail-on", "error,warning", "--tag-display-limit", "0", deb]);
    expect(lint.stdout.split("\n").filter((l) => /^[EW]: /.test(l))).toEqual([]);
    expect(lint.code).toBe(0);
  }, 120_000);

  test("installs /usr/bin/luo and a symlink to it for every personality src/main.ts knows", () => {
    const main = readFileSync(join(REPO, "src/main.ts"), "utf8");
    const list = /const PERSONALITIES = \[([^\]]+)\]/.exec(main)?.[1];
    const personalities = [...(list ?? "").matchAll(/"([^"]+)"/g)].map((m) => m[1]!);
    expect(personalities.length).toBeGreaterThan(0);
    const c = contents();
    expect(c.get("/usr/bin/luo")).toBe("-rwxr-xr-x root/root");
    for (const p of personalities) expect(c.get(`/usr/bin/${p}`)).toBe("lrwxrwxrwx root/root -> luo");
    // the binary is dist/luo as built, unstripped (lintian-overrides says why)
    expect(Buffer.compare(member("usr/bin/luo"), readFileSync(join(REPO, "dist/luo")))).toBe(0);
  }, 30_000);

  test("ships the repository's units with ExecStart= in /usr/bin, a note saying so, and nothing else changed", () => {
    for (const [unit, exec] of [["luod.service", "ExecStart=/usr/bin/luod"], ["luo-qemu@.service", "ExecStart=/usr/bin/luo-qemu run %i"]] as const) {
      const lines = new TextDecoder().decode(member(`usr/lib/systemd/system/${unit}`)).split("\n");
      // the second line is the package's note; the rest is the repository's unit line by line
      expect(lines[1]).toStartWith("# (The luo-agent package's copy: ExecStart= in /usr/bin");
      const packaged = [lines[0]!, ...lines.slice(2)];
      const repo = readFileSync(join(REPO, unit), "utf8").split("\n");
      expect(packaged.filter((l) => l.startsWith("ExecStart="))).toHaveLength(1);
      expect(packaged.find((l) => l.startsWith("ExecStart="))).toStartWith(exec);
      expect(packaged.filter((l) => !l.startsWith("#") && l.includes("/usr/local/"))).toEqual([]);
      const changed = packaged.filter((l, i) => l !== repo[i]);
      expect(changed).toEqual([packaged.find((l) => l.startsWith("ExecStart="))!]);
    }
  });

  test("/etc/luod.conf is a conffile, root's and not writable by others; the maintainer scripts are there", () => {
    const info = (file: string) => sh(["dpkg-deb", "--info", deb, file]).stdout;
    expect(info("conffiles").trim().split("\n")).toEqual(["/etc/luod.conf"]);
    expect(contents().get("/etc/luod.conf")).toBe("-rw-r--r-- root/root");
    for (const s of ["postinst", "prerm", "postrm"]) expect(info(s)).toStartWith("#!/bin/sh\n");
    const control = info("control");
    expect(control).toMatch(/^Depends: .*\blibc6 \(>= [\d.]+\)/m);
    expect(control).toMatch(/^Installed-Size: \d+$/m);
  });

  test("the man pages are gzip -9n (no name, no time), the completions where bash and zsh look", () => {
    const c = contents();
    for (const page of ["man8/luod.8.gz", "man8/luoctl.8.gz", "man5/luod.conf.5.gz"]) {
      expect(c.get(`/usr/share/man/${page}`)).toBe("-rw-r--r-- root/root");
      const gz = member(`usr/share/man/${page}`);
      expect([gz[0], gz[1]]).toEqual([0x1f, 0x8b]);
      expect(gz[3]! & 0x08).toBe(0); // FNAME
      expect(gz.slice(4, 8)).toEqual(new Uint8Array(4)); // MTIME
      expect(gz[8]).toBe(2); // XFL: maximum compression
    }
    for (const f of ["bash-completion/completions/luoctl", "bash-completion/completions/luod", "zsh/vendor-completions/_luoctl", "zsh/vendor-completions/_luod"]) {
      expect(c.get(`/usr/share/${f}`)).toBe("-rw-r--r-- root/root");
    }
  });

  test("the documentation: a DEP-5 copyright naming the embedded Bun runtime, the changelog, README and docs", () => {
    const copyright = new TextDecoder().decode(member("usr/share/doc/luo-agent/copyright"));
    expect(copyright).toStartWith("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n");
    expect(copyright).toContain(`Bun runtime ${Bun.version}`);
    expect(copyright).toMatch(/^License: MIT$/m);
    const c = contents();
    for (const f of ["changelog.Debian.gz", "README.md", "docs/systemd.md"]) expect(c.has(`/usr/share/doc/luo-agent/${f}`)).toBe(true);
  });
});

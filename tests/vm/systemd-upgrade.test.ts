// N-1 -> N across a real kexec under systemd 262: the previous release's luod, installed by hand
// as its docs said, runs the update; the new Debian package, installed while the kernel is loaded,
// must not restart it; after the kexec the package's luod restores the update and the clients get
// every byte back. Then the package's own upgrade and removal rules. docs/systemd.md, "Upgrading
// luod". Job: tests/vm/jobs/systemd-upgrade.sh; the previous release: scripts/vm/previous-release.ts.
import { afterAll, expect, test } from "bun:test";
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { logLines } from "./vm";
import { runSystemdJob, SYSTEMD_VM_TEST_TIMEOUT_MS, systemdVmAvailable } from "./systemd-vm";

const REPO = join(import.meta.dir, "../..");
const dir = mkdtempSync(join(tmpdir(), "systemd-upgrade-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The previous release's build directory (built once, cached); its progress goes to our stderr. */
function previousRelease(): { dir: string; version: string } {
  const script = join(REPO, "scripts/vm/previous-release.ts");
  const r = Bun.spawnSync([process.execPath, script], { cwd: REPO, stdin: "ignore", stdout: "pipe", stderr: "inherit" });
  const path = r.stdout.toString().trim();
  if (r.exitCode !== 0 || !path) throw new Error(`${script} failed (exit ${r.exitCode})`);
  const version = /^VERSION=(.+)$/m.exec(readFileSync(join(path, "release"), "utf8"))?.[1];
  if (!version) throw new Error(`${path}/release has no VERSION`);
  return { dir: path, version };
}

test.skipIf(!systemdVmAvailable())(
  "the previous release's luod runs the update, the package installed meanwhile leaves it running, and the package's luod restores it after the kexec",
  async () => {
    const prev = previousRelease();
    const next: string = JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")).version;
    expect(prev.version).not.toBe(next);
    copyFileSync(join(prev.dir, "luo"), join(dir, "prev-luo"));
    copyFileSync(join(prev.dir, "luod.service"), join(dir, "prev-luod.service"));
    const { rc, log } = await runSystemdJob(join(import.meta.dir, "jobs/systemd-upgrade.sh"), {
      files: [join(dir, "prev-luo"), join(dir, "prev-luod.service")],
      env: { PREV_VERSION: prev.version, NEW_VERSION: next },
    });
    expect(logLines(log, /^JOB: PASS luod \S+ \(pid \d+\) runs from \/usr\/local\/bin/)).toHaveLength(1);
    // the postinst's one line, while the kernel was loaded
    expect(logLines(log, "apt: luo-agent: not restarting luod: a kernel is loaded for the next live update").length).toBeGreaterThanOrEqual(2);
    expect(logLines(log, /^JOB: PASS the package is installed; luod \S+ \(pid \d+\) still runs with its kernel loaded$/)).toHaveLength(1);
    expect(logLines(log, "Preserved fd stores in LUO session 'systemd' for kexec")).toHaveLength(1);
    for (const id of ["vm-1", "vm-2"]) expect(logLines(log, `VERIFIED ${id} 8388608 bytes`)).toHaveLength(1);
    expect(logLines(log, `JOB: PASS luod ${next} from the package restored what luod ${prev.version} preserved`)).toHaveLength(1);
    expect(logLines(log, "apt: luo-agent: not removing: luod holds a kernel loaded")).toHaveLength(1);
    expect(logLines(log, "apt: luo-agent: not restarting luod: an update is in progress (phase preparing)").length).toBeGreaterThanOrEqual(1);
    expect(logLines(log, "apt: luo-agent: not removing: luod is in the middle of a live update")).toHaveLength(1);
    expect(logLines(log, "JOB: PASS the postinst leaves luod alone with a kernel loaded or an update running, restarts it when idle")).toHaveLength(1);
    expect(rc).toBe(0);
  },
  SYSTEMD_VM_TEST_TIMEOUT_MS,
);

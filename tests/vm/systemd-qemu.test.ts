// luo-qemu@.service under systemd 262 with Debian sid's own QEMU (11.x, a second and newer QEMU
// than the plain VM's 7.2): after a real `systemctl kexec` the VM resumes as a service, and the
// unit's stop during that shutdown, after READY, loses nothing. Job: tests/vm/jobs/systemd-qemu.sh.
import { afterAll, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildCounterGuest, COUNT_STEP } from "../support/counter-guest";
import { PATTERN_FROM, PATTERN_TO, PATTERN_XOR } from "./guest/guest-ram";
import { logLines } from "./vm";
import { runSystemdJob, SYSTEMD_VM_TEST_TIMEOUT_MS, systemdVmAvailable } from "./systemd-vm";

const RAM_BYTES = 16 * 1024 * 1024;
const dir = mkdtempSync(join(tmpdir(), "systemd-qemu-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** sha256 of the guest's pattern region as counter-guest.S writes it (guest-ram.ts's rule). */
function patternSha256(): string {
  const region = Buffer.alloc(PATTERN_TO - PATTERN_FROM);
  for (let a = PATTERN_FROM; a < PATTERN_TO; a += 4) region.writeUInt32LE((a ^ PATTERN_XOR) >>> 0, a - PATTERN_FROM);
  return createHash("sha256").update(region).digest("hex");
}

test.skipIf(!systemdVmAvailable())(
  "systemd 262, sid's QEMU: luo-qemu@vm-1 resumes as a service after systemctl kexec; stopped after READY, the guest lost nothing",
  async () => {
    const guest = join(dir, "luo-guest.bin");
    buildCounterGuest(guest);
    const { rc, log } = await runSystemdJob(join(import.meta.dir, "jobs/systemd-qemu.sh"), {
      files: [guest],
      env: { PATTERN_SHA256: patternSha256() },
    });

    // the unit as shipped: systemd-analyze verify has nothing to say
    expect(logLines(log, /^JOB: verify: /)).toEqual([]);
    expect(logLines(log, "JOB: systemd-analyze verify exited 0")).toHaveLength(1);
    expect(logLines(log, /^JOB: PASS vm-1 runs as a service/)).toHaveLength(1);

    // boot 1, READY: the guest paused and saved, its RAM not migrated
    const ready = logLines(log, /^JOB: boot1: .*READY: paused and saved/);
    expect(ready).toHaveLength(1);
    expect(Number(/RAM moved by the migration (\d+) of (\d+) bytes/.exec(ready[0]!)?.[1])).toBeLessThan(RAM_BYTES / 16);
    // systemd stopped the unit during the kexec's shutdown: luo-qemu left the guest paused, exited
    // 0, the unit ended stopped (not failed), and the guest's RAM never changed from READY until
    // QEMU was gone
    expect(logLines(log, /^JOB: boot1: .*stopping after READY: the guest stays paused and preserved for the kexec/)).toHaveLength(1);
    expect(logLines(log, /^JOB: boot1 unit ActiveState=inactive Result=success ExecMainCode=1 ExecMainStatus=0 $/)).toHaveLength(1);
    expect(logLines(log, /^JOB: boot1: .*Failed with result/)).toEqual([]);
    expect(logLines(log, /^JOB: RAM samples after READY \(t=[0-9.]+\): [1-9]\d*, distinct values: [0-9a-f]{8} $/)).toHaveLength(1);

    // boot 2: systemd started the unit by itself and it resumed the guest
    expect(logLines(log, /^JOB: luo-qemu@vm-1.service is-enabled enabled, NRestarts=0$/)).toHaveLength(1);
    const blackout = logLines(log, /^JOB: boot2: .*resumed: blackout /);
    expect(blackout).toHaveLength(1);
    expect(logLines(log, /^JOB: boot2: .*the guest was saved by QEMU/)).toEqual([]); // the same QEMU both boots
    console.log(blackout[0]);
    // the counter went on from where it paused: the first COUNT after the resume is one step on
    const c = /COUNTER at READY ([0-9a-f]{8}), last printed before ([0-9a-f]{8}), first after the resume ([0-9a-f]{8})/.exec(
      logLines(log, "JOB: COUNTER at READY")[0] ?? "",
    );
    expect(c).not.toBeNull();
    const [atReady, before, after] = [parseInt(c![1]!, 16), parseInt(c![2]!, 16), parseInt(c![3]!, 16)];
    expect(before).toBeGreaterThan(0);
    expect(before).toBeLessThanOrEqual(atReady);
    expect(after).toBe(before + COUNT_STEP);
    expect(logLines(log, /^JOB: BOOT lines: 1$/)).toHaveLength(1);
    // the RAM is the memfd LUO carried (a restored memfd has no name), its pattern intact
    expect(logLines(log, /^JOB: after the resume: QEMU \d+ .* maps \/ \(deleted\) as guest RAM$/)).toHaveLength(1);
    expect(logLines(log, /^JOB: after the resume: PATTERN ok$/)).toHaveLength(1);
    // QEMU 11 took luo-qemu's QMP option and its sandbox, and the kernel filters its syscalls (mode 2)
    expect(
      logLines(log, /^JOB: (before the update|after the resume): QEMU runs with -qmp unix:\/run\/luo-qemu\/vm-1\/qmp.sock,server=on,wait=off -sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny \(Seccomp:2\)$/),
    ).toHaveLength(2);
    expect(logLines(log, /^JOB: PASS vm-1 resumed as a service after the kexec/)).toHaveLength(1);

    // systemctl stop: the guest ignores ACPI power-off, luo-qemu quits it after 2 s, exits 0
    const stop = /systemctl stop took (\d+) ms; ActiveState=inactive Result=success ExecMainCode=1 ExecMainStatus=0/.exec(
      logLines(log, "JOB: systemctl stop took")[0] ?? "",
    );
    expect(stop).not.toBeNull();
    expect(Number(stop![1])).toBeLessThan(60_000); // TimeoutStopSec
    expect(logLines(log, /^JOB: PASS systemctl stop ended vm-1 cleanly/)).toHaveLength(1);
    expect(rc).toBe(0);
  },
  SYSTEMD_VM_TEST_TIMEOUT_MS,
);

// An unmodified QEMU under luo-qemu, both running as nobody (luod's client group): the guest's
// RAM stays in RAM across a real kexec on the LUO kernel and the guest resumes where it paused,
// never booting again (tests/vm/jobs/qemu-vm.sh). Also in the same run: luod killed and restarted
// (luo-qemu rejoins it, the guest runs on), luo-qemu killed (QEMU runs on, a new luo-qemu takes it
// over), an update aborted after the VM paused (the guest runs on in the old kernel), after the
// boot a QEMU that cannot resume the guest (exit 4, the session kept, no fresh boot), and the
// blackout printed with its phases.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildCounterGuest, COUNT_STEP } from "../support/counter-guest";
import { logLines, runJobWith, VM_TEST_TIMEOUT_MS, vmAvailable } from "./vm";

const dir = mkdtempSync(join(tmpdir(), "qemu-vm-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const RAM_BYTES = 16 * 1024 * 1024;
/**
 * The guest's RAM is mostly zero pages, which QEMU's migration sends as a flag each: what it
 * would move of RAM without x-ignore-shared is about the guest's non-zero part, its 512 KiB
 * pattern (measured: ~590 KB moved, a ~700 KB state). With x-ignore-shared: ~21 KB of ROM blocks.
 */
const PATTERN_BYTES = 512 * 1024;

test.skipIf(!vmAvailable())(
  "a QEMU guest keeps counting across a real kexec: same RAM, no reboot, RAM not migrated; a luod restart, a luo-qemu restart and an aborted update leave it running",
  async () => {
    const guest = join(dir, "luo-guest.bin");
    buildCounterGuest(guest);
    const { rc, log } = await runJobWith(join(import.meta.dir, "jobs/qemu-vm.sh"), ["-p", guest]);

    // luod killed and started again: luo-qemu rejoined it while the guest ran on
    expect(logLines(log, /^JOB: PASS luo-qemu rejoined the restarted luod; the guest kept counting/)).toHaveLength(1);

    // luo-qemu killed: QEMU ran on, and the luo-qemu started again took it over
    expect(logLines(log, /^JOB: PASS a new luo-qemu took over QEMU \d+; the guest kept counting/)).toHaveLength(1);

    // the aborted update: the VM paused and saved, then continued in the old kernel
    expect(logLines(log, /^JOB: PASS the update aborted after the VM paused; the guest continues/)).toHaveLength(1);

    // three dry runs after it: the prepared session, holding 4 device states, was replaced
    expect(logLines(log, /^JOB: PASS after 4 updates that did not jump luo-qemu prepared a new session/)).toHaveLength(1);

    // before the jump: READY 5 times (the aborted attempt, the dry runs, the jump), the RAM not migrated
    const readies = logLines(log, /luo-qemu\[vm-1\]: READY: paused and saved/);
    expect(readies).toHaveLength(5);
    for (const r of readies) {
      const moved = Number(/RAM moved by the migration (\d+) of (\d+) bytes/.exec(r)?.[1]);
      expect(moved).toBeLessThan(PATTERN_BYTES);
    }

    // after the jump, first a QEMU that cannot resume the guest (no such machine type; a state it
    // cannot load): exit 4 with the reason, the session kept claimed, nothing booted
    expect(logLines(log, "JOB: luo-qemu with qemu-no-machine exited 4")).toHaveLength(1);
    expect(logLines(log, "JOB: luo-qemu with qemu-bad-state exited 4")).toHaveLength(1);
    expect(logLines(log, /^JOB: PASS a QEMU without the saved machine type, and one that cannot load the state: exit 4/)).toHaveLength(1);
    // those two QEMUs are other binaries than the one that saved the guest: probed; the real one,
    // unchanged since the save (and kept through the luo-qemu takeover by qemu.json), is not
    expect(logLines(log, /^luo-qemu\[vm-1\]: probing QEMU: the guest was saved by \S+, this luo-qemu runs \S+\/qemu-(no-machine|bad-state)$/)).toHaveLength(2);
    expect(logLines(log, /^luo-qemu\[vm-1\]: QEMU binary unchanged since the save \(\S+, QEMU [\d.]+\): not probed again$/)).toHaveLength(1);

    // then the real QEMU: the counter continued from where it paused (the next COUNT line is exactly
    // one step on), the guest never booted again, its RAM pattern is intact in the memfd LUO
    // carried (a restored memfd has no name: "/ (deleted)")
    const counters = /COUNTER before the jump ([0-9a-f]{8}), first after the resume ([0-9a-f]{8})/.exec(logLines(log, "JOB: COUNTER before the jump")[0] ?? "");
    expect(counters).not.toBeNull();
    const [before, after] = [parseInt(counters![1]!, 16), parseInt(counters![2]!, 16)];
    expect(before).toBeGreaterThan(0);
    expect(after).toBe(before + COUNT_STEP);
    expect(logLines(log, /^JOB: BOOT lines after the resume: 1$/)).toHaveLength(1);
    expect(logLines(log, /^JOB: after the resume: QEMU \d+ \(uid 65534\) maps \/ \(deleted\) as guest RAM$/)).toHaveLength(1);
    expect(logLines(log, /^JOB: before the updates: QEMU \d+ \(uid 65534\) maps \/memfd:luo-qemu:vm-1:ram \(deleted\) as guest RAM$/)).toHaveLength(1);
    expect(logLines(log, /^JOB: after the resume: PATTERN ok$/)).toHaveLength(1);
    // the restored session held the whole RAM (and the small state): that is how it crossed
    const brought = /brought the RAM \((\d+) bytes, token 1\), the device state \((\d+) bytes/.exec(logLines(log, /luo-qemu\[vm-1\]: luod:vm-1\/\S+ brought the RAM/).at(-1) ?? "");
    expect(Number(brought?.[1])).toBe(RAM_BYTES);
    expect(Number(brought?.[2])).toBeLessThan(PATTERN_BYTES);
    // QEMU ran under its -sandbox (seccomp filter mode 2) before and after
    expect(logLines(log, /^JOB: (before the updates|after the resume): QEMU \d+ seccomp mode 2$/)).toHaveLength(2);
    expect(logLines(log, /^JOB: after the resume: MARKER ok$/)).toHaveLength(1);

    // the blackout, with its phases
    const blackout = logLines(log, /^JOB: luo-qemu\[vm-1\]: resumed: blackout /);
    expect(blackout).toHaveLength(1);
    for (const phase of ["pause + state save", "barrier (READY → luod's commit)", "kernel jump (commit → new kernel)", "kernel start → luo-qemu start", "→ CLAIMED", "QEMU start → incoming done", "→ cont"])
      expect(blackout[0]).toContain(phase);
    console.log(blackout[0]);

    expect(logLines(log, "JOB: luo-qemu exited 0")).toHaveLength(1);
    expect(logLines(log, /^JOB: PASS vm-1 resumed after the kexec/)).toHaveLength(1);
    expect(rc).toBe(0);
  },
  VM_TEST_TIMEOUT_MS,
);

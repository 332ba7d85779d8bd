// luo-qemu's run directory (src/qemu/run-dir.ts): a luo-qemu started again finds the QEMU its
// predecessor left running, and never mistakes another process (a reused pid) for it.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findRunningQemu, prepareRunDir, processStartTime, writeQemuState, type QemuState } from "../../src/qemu/run-dir";

let dir: string;
let proc: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "luo-qemu-run-"));
  proc = join(dir, "proc");
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** A /proc/PID/stat whose comm has blanks and parentheses, starttime `start`, running `exe`. */
function fakeProcess(pid: number, start: string, exe = "/bin/sh"): void {
  mkdirSync(join(proc, String(pid)), { recursive: true });
  rmSync(join(proc, String(pid), "exe"), { force: true });
  symlinkSync(realpathSync(exe), join(proc, String(pid), "exe"));
  const after = ["S", "1", "2", "2", "0", "-1", "4194560", "1", "0", "0", "0", "5", "6", "0", "0", "20", "0", "3", "0", start, "100"];
  writeFileSync(join(proc, String(pid), "stat"), `${pid} (qemu (x) y) ${after.join(" ")}\n`);
}

const state = (over: Partial<QemuState> = {}): QemuState => ({
  format: "luo-qemu-state", version: 1, id: "vm-1", pid: 4242, start_time: "987654",
  qemu: { path: "/bin/sh", version: "7.2.22" }, machine: { type: "pc-i440fx-7.2", props: [] },
  memory_bytes: 16 << 20, args: ["-bios", "g.bin"], sandbox: true, paused_for_update: false, ...over,
});

describe("luo-qemu's run directory", () => {
  test("the start time is field 22 of /proc/PID/stat, even with blanks and parentheses in comm", () => {
    fakeProcess(4242, "987654");
    expect(processStartTime(4242, proc)).toBe("987654");
    expect(processStartTime(4243, proc)).toBeNull();
    expect(processStartTime(process.pid)).toMatch(/^\d+$/); // the real /proc
  });

  test("the QEMU left running is found while its pid is the same process", () => {
    fakeProcess(4242, "987654");
    writeQemuState(dir, state({ paused_for_update: true }));
    expect(findRunningQemu(dir, "vm-1", proc)).toEqual(state({ paused_for_update: true }));
  });

  test("a reused pid, another VM's state, a gone process or a foreign file is not taken over", () => {
    writeQemuState(dir, state());
    expect(findRunningQemu(dir, "vm-1", proc)).toBeNull(); // no such process
    fakeProcess(4242, "111"); // the pid now belongs to another process
    expect(findRunningQemu(dir, "vm-1", proc)).toBeNull();
    fakeProcess(4242, "987654");
    expect(findRunningQemu(dir, "vm-2", proc)).toBeNull();
    fakeProcess(4242, "987654", "/bin/true"); // the very process, running another program: start nothing
    expect(findRunningQemu(dir, "vm-1", proc)).toEqual({ conflict: expect.stringContaining("runs /usr/bin/true, not /bin/sh") });
    fakeProcess(4242, "987654");
    writeFileSync(join(dir, "qemu.json"), "not json");
    expect(findRunningQemu(dir, "vm-1", proc)).toBeNull();
  });

  test("a state of a newer version (a newer luo-qemu's) whose process still runs: start nothing; once it is gone: start", () => {
    fakeProcess(4242, "987654");
    writeFileSync(join(dir, "qemu.json"), JSON.stringify({ ...state(), version: 2, added_later: true }));
    expect(findRunningQemu(dir, "vm-1", proc)).toEqual({ conflict: expect.stringContaining("is version 2, written by a newer luo-qemu (this one reads version 1), and names process 4242, which still runs") });
    expect(findRunningQemu(dir, "vm-2", proc)).toBeNull(); // another VM's
    fakeProcess(4242, "111"); // the pid is another process now
    expect(findRunningQemu(dir, "vm-1", proc)).toBeNull();
  });

  test("a QEMU whose binary was upgraded since (exe reads \" (deleted)\") is still taken over", () => {
    mkdirSync(join(proc, "4242"), { recursive: true });
    writeFileSync(join(proc, "4242", "stat"), "4242 (qemu) S 1 2 2 0 -1 4194560 1 0 0 0 5 6 0 0 20 0 3 0 987654 100\n");
    symlinkSync(`${realpathSync("/bin/sh")} (deleted)`, join(proc, "4242", "exe"));
    writeQemuState(dir, state());
    expect(findRunningQemu(dir, "vm-1", proc)).toEqual(state());
  });

  test("the run directory is made 0700; one open to others, or another uid's, is refused", () => {
    const run = join(dir, "run", "vm-1");
    expect(prepareRunDir(run)).toBeNull();
    chmodSync(run, 0o777);
    expect(prepareRunDir(run)).toContain("is open to others (mode 777; it must be 0700)");
    chmodSync(run, 0o750);
    expect(prepareRunDir(run)).toContain("mode 750");
    chmodSync(run, 0o700);
    expect(prepareRunDir(run, 12345)).toContain("belongs to uid");
    writeFileSync(join(dir, "file"), "");
    expect(prepareRunDir(join(dir, "file"))).not.toBeNull();
  });
});

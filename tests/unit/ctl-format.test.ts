// luoctl's human output from canned replies (the shapes src/daemon/server.ts sends).
import { describe, expect, test } from "bun:test";
import {
  ageOf, formatBytes, formatCheck, formatDuration, formatKexecDone, formatList, formatLoad, formatProgress,
  formatRemaining, formatStatus, table,
} from "../../src/ctl/format";
import { stripReply } from "../../src/ctl/context";

const NOW = Date.parse("2026-06-01T12:00:00Z");

describe("units", () => {
  test("durations", () => {
    expect(formatDuration(0)).toBe("0ms");
    expect(formatDuration(500)).toBe("500ms");
    expect(formatDuration(12_000)).toBe("12s");
    expect(formatDuration(65_000)).toBe("1m05s");
    expect(formatDuration(2 * 3600_000 + 3 * 60_000)).toBe("2h03m");
    expect(formatDuration(26 * 3600_000)).toBe("1d02h");
    expect(formatRemaining(11_200)).toBe("12s"); // rounded up
    expect(formatRemaining(0)).toBe("0s");
    expect(ageOf("2026-06-01T11:57:48Z", NOW)).toBe("2m12s");
    expect(ageOf("garbage", NOW)).toBe("-");
  });
  test("bytes", () => {
    expect(formatBytes(512)).toBe("512 B");
    expect(formatBytes(14_050_000)).toBe("13.4 MiB");
  });
  test("table aligns columns and trims", () => {
    expect(table(["A", "BB"], [["xxx", "y"], ["z", ""]])).toBe("A    BB\nxxx  y\nz");
  });
});

describe("progress", () => {
  test("the kexec progress line", () => {
    expect(formatProgress({ event: "PROGRESS", phase: "preparing", ready: 3, total: 5, waiting: ["vm-1", "vm-7"], remaining_ms: 11_500 }))
      .toBe("ready 3/5, waiting: vm-1 vm-7 (12s left)");
    expect(formatProgress({ phase: "committing", ready: 5, total: 5, waiting: [], remaining_ms: 100 })).toBe("ready 5/5 (100ms left) [committing]");
    const many = Array.from({ length: 12 }, (_, i) => `c${i}`);
    expect(formatProgress({ ready: 0, total: 12, waiting: many })).toBe("ready 0/12, waiting: c0 c1 c2 c3 c4 c5 c6 c7 (+4 more)");
  });
});

const STATUS = {
  reply: "STATUS",
  ok: true,
  luod: { version: "0.1.0", pid: 321, connections: 2 },
  phase: "idle",
  update: null,
  clients: { subscribed: 5, ready: 0 },
  kernel: { loaded: true, version: "7.2.13 (luo@build) #1", sha256: "ab".repeat(32), cmdline: "root=/dev/vda ro kho=on liveupdate=on", loaded_at: "2026-06-01T11:50:00Z" },
  restored: [
    { id: "vm-1", session: "luod:vm-1/k", state: "unclaimed", uid: 0, unit: "vm@1.service", age_s: 192 },
    { id: "db", session: "luod:db/k", state: "claimed", uid: 999, unit: null, age_s: 5 },
  ],
  previous_update: { attempt: 17, createdAt: "2026-06-01T11:56:00Z", from: "7.2.12", timings: {} },
  device: { path: "/dev/liveupdate", present: true },
};

describe("status", () => {
  test("the canned STATUS reply", () => {
    const text = formatStatus(STATUS, NOW);
    expect(text).toContain("phase:        idle");
    expect(text).toContain("device:       /dev/liveupdate present");
    expect(text).toContain("kernel:       7.2.13 (luo@build) #1 (sha256 abababababab…, loaded 10m00s ago)");
    expect(text).toContain("cmdline:      root=/dev/vda ro kho=on liveupdate=on");
    expect(text).toContain("clients:      5 subscribed, 0 ready");
    expect(formatStatus({ ...STATUS, clients: { subscribed: 5, prepared: 2, ready: 0 } }, NOW)).toContain("clients:      5 subscribed, 2 prepared, 0 ready");
    expect(formatStatus({ ...STATUS, clients: { subscribed: 5, disconnected: 1, prepared: 0, ready: 0 } }, NOW)).toContain("clients:      5 subscribed (1 not connected), 0 ready");
    expect(text).toContain("last update:  #17 from 7.2.12 at 2026-06-01T11:56:00Z");
    expect(text).toContain("restored:     2 session(s), 1 unclaimed");
    const lines = text.split("\n");
    const vm1 = lines.find((l) => l.includes("vm-1"))!;
    expect(vm1).toMatch(/^\s+\*vm-1\s+unclaimed\s+3m12s\s+0\s+vm@1\.service\s+luod:vm-1\/k$/);
    const db = lines.find((l) => l.includes(" db "))!;
    expect(db).toMatch(/^\s+ db\s+claimed\s+5s\s+999\s+-\s+luod:db\/k$/);
    expect(text).toContain("* unclaimed:");
    expect(text).not.toContain("\x1b[");
  });
  test("unclaimed rows are coloured on a terminal", () => {
    const text = formatStatus(STATUS, NOW, { color: true });
    expect(text.split("\n").find((l) => l.includes("vm-1"))).toStartWith("  \x1b[1;33m");
  });
  test("an update in progress and no kernel", () => {
    const text = formatStatus({
      phase: "preparing",
      update: { attempt: 3, dry_run: true, ready: 1, total: 2, waiting: ["vm-7"], remaining_ms: 9000 },
      clients: { subscribed: 2, ready: 1 },
      kernel: { loaded: false },
      restored: [],
    }, NOW);
    expect(text).toContain("update:    #3 (dry run): ready 1/2, waiting: vm-7 (9s left)");
    expect(text).toContain("kernel:    none loaded (luoctl load)");
    expect(text).toContain("restored:  none");
  });
  test("unknown shapes never crash", () => {
    expect(() => formatStatus({}, NOW)).not.toThrow();
    expect(() => formatStatus({ clients: [1, 2], kernel: "weird", device: false, boot: { live_update: true }, restored: "x" }, NOW)).not.toThrow();
    expect(formatStatus({ device: false }, NOW)).toContain("/dev/liveupdate missing");
    expect(formatStatus({ device: "absent" }, NOW)).toContain("device:    /dev/liveupdate absent");
    expect(formatStatus({ boot: { kind: "cold boot", restore_error: "manifest is malformed" } }, NOW))
      .toContain("boot:      cold boot (restore error: manifest is malformed)");
  });
});

describe("list, load, check, kexec", () => {
  test("list", () => {
    const text = formatList({
      clients: [
        { id: "vm-1", uid: 0, gid: 0, pid: 100, unit: "vm@1.service", state: "ready", connected: true, since: "2026-06-01T11:00:00Z", session: "luod:vm-1/3" },
        { id: "cache", uid: 1000, gid: 1000, pid: 2001, unit: null, state: "subscribed", connected: false, since: "2026-06-01T11:59:30Z", session: null },
      ],
    }, NOW);
    expect(text.split("\n")).toEqual([
      "ID     STATE       PID   UID   GID   UNIT          CONN  AGE    SESSION",
      "vm-1   ready       100   0     0     vm@1.service  yes   1h00m  luod:vm-1/3",
      "cache  subscribed  2001  1000  1000  -             no    30s    -",
      "",
      "2 client(s), 1 ready",
    ]);
    expect(formatList({ clients: [] }, NOW)).toBe("no clients subscribed");
  });
  test("load", () => {
    const text = formatLoad({
      kernel: { version: "7.2.13 #1", size: 14_050_000, sha256: "0f".repeat(32) },
      initrd: { size: 5_000_000 },
      cmdline: "root=/dev/vda liveupdate=on",
      warnings: ["no kho=on in the command line"],
    });
    expect(text).toBe(
      "loaded\n" +
        `  kernel:   7.2.13 #1 (13.4 MiB, sha256 ${"0f".repeat(32)})\n` +
        "  initrd:   4.8 MiB\n" +
        "  cmdline:  root=/dev/vda liveupdate=on\n" +
        "warning: no kho=on in the command line",
    );
    expect(formatLoad({ kernel: { version: "x" }, initrd: null, cmdline: "" })).toContain("initrd:   none");
  });
  test("check", () => {
    const text = formatCheck({
      ready: false,
      checks: [
        { name: "device", ok: true, detail: "/dev/liveupdate present" },
        { name: "kernel", ok: false, detail: "no kernel loaded by luod: run `luoctl load`" },
      ],
    });
    expect(text).toBe(
      "ok    device  /dev/liveupdate present\n" +
        "FAIL  kernel  no kernel loaded by luod: run `luoctl load`\n" +
        "NOT ready for a live update",
    );
    expect(formatCheck({ ready: true, checks: [] })).toContain("ready for a live update");
  });
  test("check marks a warning (ok, warning: true) as warn, still ready", () => {
    const text = formatCheck({
      ready: true,
      checks: [{ name: "panic", ok: true, warning: true, detail: "no panic= on the new command line" }],
    });
    expect(text).toBe("warn  panic  no panic= on the new command line\nready for a live update");
  });
  test("kexec verdicts", () => {
    expect(formatKexecDone({ event: "REBOOTING", timings: { all_ready_ms: 1500 } })).toBe("all clients ready after 1s; rebooting into the loaded kernel");
    expect(formatKexecDone({ ok: true, dry_run: true, timings: { all_ready_ms: 20 } })).toContain("dry run complete");
  });
  test("--json strips transport fields", () => {
    expect(stripReply({ reply: "STATUS", ok: true, tag: 3, phase: "idle" })).toEqual({ ok: true, phase: "idle" });
  });
});

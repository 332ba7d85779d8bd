// When luo-qemu runs QEMU just to ask it what it is (src/qemu/qemu-process.ts: probeQemu): on a
// cold start, and on a resume only when the binary is not the file the start record identifies
// (src/qemu/record.ts: qemu.binary). Each probe is two QEMU starts, seconds of a tenant's
// blackout under emulation (docs/performance.md, "Fifth round").
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, copyFileSync, mkdtempSync, renameSync, rmSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { binaryIdentity, probeQemu, recordableIdentity, runningExe, sameBinary, whyProbeAgain } from "../../src/qemu/qemu-process";
import { decodeRecord, encodeRecord, type BinaryIdentity, type StartRecord } from "../../src/qemu/record";
import { luoQemuMain } from "../../src/qemu/main";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "luo-qemu-probe-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A script that answers -version and -machine help like QEMU `version`. */
function fakeQemu(name: string, version: string): string {
  const path = join(dir, name);
  writeFileSync(
    path,
    `#!/bin/sh
case "$1" in
-version) echo "QEMU emulator version ${version} (fake)"; exit 0 ;;
-machine) printf 'Supported machines are:\\npc                   Standard PC (alias of pc-i440fx-7.2)\\npc-i440fx-7.2        Standard PC (default)\\n'; exit 0 ;;
esac
exit 1
`,
  );
  chmodSync(path, 0o755);
  return path;
}

const BINARY: BinaryIdentity = { ino: "1234567", size: "17432816", mtime_ns: "1796407770000238214", ctime_ns: "1796407770530074439" };

const record = (qemu: StartRecord["qemu"]): StartRecord => ({
  format: "luo-qemu-start-record", version: 1, id: "vm-1", attempt: 0, qemu,
  machine: { type: "pc-i440fx-7.2", props: [] }, memory_bytes: 16 << 20, args: ["-bios", "g.bin"], sandbox: true,
  state_bytes: 129040, ram_transferred_bytes: 17203, paused_at: 1_780_000_000_000, saved_at: 1_780_000_000_300,
});

describe("the start record identifies the QEMU binary that saved the guest", () => {
  const path = "/usr/bin/qemu-system-x86_64";

  test("with the identity: decoded as encoded, nanoseconds past 2^53 exact (decimal strings)", () => {
    const r = record({ path, version: "7.2.22", binary: BINARY, exe: { path, ...BINARY } });
    const text = new TextDecoder().decode(encodeRecord(r));
    expect(text).toContain('"binary":{"ino":"1234567","size":"17432816","mtime_ns":"1796407770000238214","ctime_ns":"1796407770530074439"}');
    expect(decodeRecord(encodeRecord(r))).toEqual(r);
  });

  test("a record of a luo-qemu before the identity (version 1 all the same) still decodes, without one", () => {
    const old = new TextEncoder().encode(JSON.stringify(record({ path, version: "7.2.22" })));
    const r = decodeRecord(old) as StartRecord;
    expect(r.qemu).toEqual({ path, version: "7.2.22" });
    expect(r.qemu.binary).toBeUndefined();
  });

  test("an identity that is not four u64 in decimal is refused with where", () => {
    const enc = (binary: unknown) => new TextEncoder().encode(JSON.stringify({ ...record({ path, version: "7.2.22" }), qemu: { path, version: "7.2.22", binary } }));
    for (const bad of [{ ...BINARY, ino: 1234567 }, { ...BINARY, size: "-1" }, { ...BINARY, mtime_ns: "1e9" }, { ...BINARY, ctime_ns: "012" }, { ...BINARY, ino: "1".repeat(21) }]) {
      expect((decodeRecord(enc(bad)) as { error: string }).error).toMatch(/^the start record is invalid at qemu\.binary\./);
    }
    const { ctime_ns: _, ...three } = BINARY;
    expect((decodeRecord(enc(three)) as { error: string }).error).toContain("qemu.binary.ctime_ns");
  });
});

describe("probe again, or take the saved QEMU's version and machine type", () => {
  const path = "/usr/bin/qemu-system-x86_64";
  const saved = { path, version: "7.2.22", binary: BINARY, exe: { path, ...BINARY } };
  const noStat = () => null; // whyProbeAgain must not need it when QEMU ran the file at `path`

  test("the same path and the same file: not probed", () => {
    expect(whyProbeAgain(saved, path, { ...BINARY }, noStat)).toBeNull();
    expect(sameBinary(BINARY, { ...BINARY })).toBe(true);
  });

  test("a wrapper script at the path: probed unless the file QEMU ran is unchanged too", () => {
    const real = { path: "/usr/bin/qemu-system-x86_64", ...BINARY, ino: "99" };
    const wrapped = { path: "/usr/bin/kvm", version: "7.2.22", binary: BINARY, exe: real };
    const { path: _, ...realId } = real;
    expect(whyProbeAgain(wrapped, "/usr/bin/kvm", BINARY, (p) => (p === real.path ? { ...realId } : null))).toBeNull();
    // the QEMU package upgraded behind an unchanged wrapper
    expect(whyProbeAgain(wrapped, "/usr/bin/kvm", BINARY, () => ({ ...realId, ctime_ns: "5" }))).toBe(
      "/usr/bin/qemu-system-x86_64, which QEMU ran, changed since the save (or is gone)",
    );
    expect(whyProbeAgain(wrapped, "/usr/bin/kvm", BINARY, noStat)).toContain("changed since the save (or is gone)");
  });

  test("a record without the identity, another path, a file that cannot be stat'ed: probed", () => {
    expect(whyProbeAgain({ path, version: "7.2.22" }, path, BINARY)).toBe("the start record does not identify the QEMU binary that saved the guest");
    expect(whyProbeAgain({ path, version: "7.2.22", binary: BINARY }, path, BINARY)).toBe("the start record does not identify the QEMU binary that saved the guest");
    expect(whyProbeAgain(saved, "/opt/qemu/bin/qemu-system-x86_64", BINARY)).toBe(
      "the guest was saved by /usr/bin/qemu-system-x86_64, this luo-qemu runs /opt/qemu/bin/qemu-system-x86_64",
    );
    expect(whyProbeAgain(saved, path, null)).toBe("cannot stat /usr/bin/qemu-system-x86_64");
  });

  test("any of inode, size, mtime, ctime changed: probed", () => {
    for (const field of ["ino", "size", "mtime_ns", "ctime_ns"] as const) {
      const now = { ...BINARY, [field]: "1" };
      expect(sameBinary(BINARY, now)).toBe(false);
      expect(whyProbeAgain(saved, path, now)).toBe("/usr/bin/qemu-system-x86_64 changed since the save (another inode, size or time)");
    }
  });

  test("a path from outside is escaped in the reason", () => {
    expect(whyProbeAgain(saved, "/tmp/q\nemu", BINARY)).not.toContain("\n");
  });

  test("a real file: rewritten in place or replaced (an upgrade), it is another binary", async () => {
    const path = fakeQemu("qemu-real", "7.2.22");
    const before = binaryIdentity(path)!;
    expect(before.ino).toMatch(/^\d+$/);
    expect(binaryIdentity(path)).toEqual(before);
    expect(binaryIdentity(join(dir, "absent"))).toBeNull();
    utimesSync(path, new Date(), new Date(Date.now() + 5000)); // the same inode, a new mtime
    expect(sameBinary(before, binaryIdentity(path)!)).toBe(false);
    const now = binaryIdentity(path)!;
    const next = fakeQemu("qemu-next", "8.2.0");
    renameSync(next, path); // what a package upgrade does: a new inode under the same name
    expect(binaryIdentity(path)!.ino).not.toBe(now.ino);
    expect(sameBinary(now, binaryIdentity(path)!)).toBe(false);
  });
});

describe("what the start record says of the QEMU that saved the guest", () => {
  test("its identities when QEMU runs the file at the path (symlinks resolved), nothing behind a wrapper", () => {
    const real = fakeQemu("qemu-direct", "7.2.22");
    const link = join(dir, "qemu-link");
    symlinkSync(real, link);
    const binary = binaryIdentity(real)!;
    const exe = { path: real, ...binary };
    expect(recordableIdentity(real, binary, exe)).toEqual({ binary, exe });
    expect(recordableIdentity(link, binary, exe)).toEqual({ binary, exe });
    // a wrapper that execs QEMU, or one that does not (QEMU runs as a child of the shell): probed after the boot
    expect(recordableIdentity(real, binary, { path: "/usr/bin/qemu-system-x86_64", ...binary })).toEqual({});
    expect(recordableIdentity(real, binary, { path: "/usr/bin/dash", ...binary })).toEqual({});
    expect(recordableIdentity(real, undefined, exe)).toEqual({});
    expect(recordableIdentity(real, binary, null)).toEqual({});
    expect(recordableIdentity(join(dir, "gone"), binary, exe)).toEqual({});
  });
});

describe("runningExe", () => {
  test("the file a live process runs, by the path /proc/PID/exe names; null for no such process", () => {
    const me = runningExe(process.pid)!;
    expect(me.path).toBe(process.execPath);
    expect({ ...me, path: undefined }).toEqual({ ...binaryIdentity(process.execPath)!, path: undefined });
    expect(runningExe(2 ** 22 + 1)).toBeNull(); // above pid_max
  });

  test("a process whose file was deleted (replaced by an upgrade) runs no file there now: null", async () => {
    const copy = join(dir, "sleep-copy");
    copyFileSync("/bin/sleep", copy);
    chmodSync(copy, 0o755);
    const p = Bun.spawn([copy, "30"], { stdout: "ignore", stderr: "ignore" });
    try {
      for (let i = 0; i < 100 && runningExe(p.pid)?.path !== copy; i++) await Bun.sleep(10); // until exec'd
      expect(runningExe(p.pid)).toMatchObject({ path: copy });
      rmSync(copy);
      // /proc/PID/exe now reads "… (deleted)": not a path, even if a file of that name is planted
      writeFileSync(`${copy} (deleted)`, "planted");
      expect(runningExe(p.pid)).toBeNull();
    } finally {
      p.kill("SIGKILL");
      await p.exited;
    }
  });
});

describe("probeQemu", () => {
  test("version, machine types, and the identity of the file it ran", async () => {
    const path = fakeQemu("qemu-72", "7.2.22");
    const probe = await probeQemu(path);
    expect(probe.version).toBe("7.2.22");
    expect(probe.machines.get("pc")).toBe("pc-i440fx-7.2");
    expect(probe.binary).toEqual(binaryIdentity(path)!);
  });

  test("a QEMU older than 5.0 is refused with the line luo-qemu always said", async () => {
    await expect(probeQemu(fakeQemu("qemu-42", "4.2.1"))).rejects.toThrow("QEMU 4.2.1 is too old: luo-qemu needs 5.0 or newer");
  });
});

describe("luo-qemu run refuses what it knows without QEMU or luod before connecting", () => {
  let server: Server;
  let socket: string;
  let connections = 0;
  beforeAll(async () => {
    socket = join(dir, "luod.sock");
    server = createServer((c) => {
      connections++;
      c.destroy();
    });
    await new Promise<void>((r) => server.listen(socket, r));
  });
  afterAll(() => server.close());

  async function luoQemu(args: string[]): Promise<{ code: number; stderr: string }> {
    const write = process.stderr.write;
    let stderr = "";
    process.stderr.write = ((s: string) => ((stderr += s), true)) as typeof process.stderr.write;
    try {
      const code = await luoQemuMain(["run", "vm-1", "--memory", "16M", "--socket", socket, "--run-dir", join(dir, "run"), "--connect-timeout", "0", ...args], {});
      return { code, stderr };
    } finally {
      process.stderr.write = write;
    }
  }

  test("a QEMU that is not there: exit 1, and luod is never connected to", async () => {
    const r = await luoQemu(["--qemu", join(dir, "no-such-qemu"), "--", "-bios", "g.bin"]);
    expect(r.stderr).toBe(`luo-qemu: no QEMU binary ${join(dir, "no-such-qemu")} (give one with --qemu PATH)\n`);
    expect(r.code).toBe(1);
    expect(connections).toBe(0);
  });

  test("a --machine that names no type or sets the memory backend: exit 2, luod never connected to", async () => {
    const qemu = fakeQemu("qemu-ok", "7.2.22");
    const r = await luoQemu(["--qemu", qemu, "--machine", "pc,memory-backend=m0", "--", "-bios", "g.bin"]);
    expect(r.stderr).toBe("luo-qemu: refusing this VM: --machine: memory-backend is luo-qemu's\n");
    expect(r.code).toBe(2);
    expect(connections).toBe(0);
    const noType = await luoQemu(["--qemu", qemu, "--machine", ",accel=tcg", "--", "-bios", "g.bin"]);
    expect(noType.stderr).toBe("luo-qemu: refusing this VM: --machine needs a machine type\n");
    expect(noType.code).toBe(2);
    expect(connections).toBe(0);
  });
});

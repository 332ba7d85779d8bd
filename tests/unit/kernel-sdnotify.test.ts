// sd_notify to a datagram socket we bind ourselves, and sd_listen_fds through a real exec.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { closeFd, fileSize, readFull, writeFull } from "../../src/kernel/fd.ts";
import { Errno } from "../../src/kernel/libc.ts";
import { memfdCreate } from "../../src/kernel/memfd.ts";
import { sdListenFds, sdNotify, sdNotifyWithFds } from "../../src/kernel/sdnotify.ts";
import { MessageIo } from "../../src/kernel/scm-rights.ts";
import { unixDatagramBind } from "../../src/kernel/unix.ts";

const dec = new TextDecoder();
const saved = { ...process.env };
let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "luo-kernel-"));
});
afterEach(() => {
  for (const k of ["NOTIFY_SOCKET", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"]) {
    if (saved[k] === undefined) delete process.env[k];
    else process.env[k] = saved[k];
  }
  rmSync(dir, { recursive: true, force: true });
});

/** Bind a datagram socket at path, run fn, return the one datagram it received (and its fds). */
function capture(path: string, fn: () => void): { text: string; fds: number[] } {
  const sock = unixDatagramBind(path);
  try {
    fn();
    const io = new MessageIo();
    const fds: number[] = [];
    const n = io.receive(sock, fds);
    expect(n).toBeGreaterThan(0);
    expect(io.receive(sock, [])).toBe(-Errno.EAGAIN); // exactly one datagram
    return { text: dec.decode(io.buffer.subarray(0, n)), fds };
  } finally {
    closeFd(sock);
  }
}

describe("sdNotify", () => {
  test("returns false when NOTIFY_SOCKET is unset", () => {
    delete process.env.NOTIFY_SOCKET;
    expect(sdNotify("READY=1")).toBe(false);
  });

  test("sends the state as one datagram to a filesystem NOTIFY_SOCKET", () => {
    const path = join(dir, "notify");
    process.env.NOTIFY_SOCKET = path;
    let ok = false;
    const got = capture(path, () => (ok = sdNotify("READY=1\nSTATUS=listening")));
    expect(ok).toBe(true);
    expect(got).toEqual({ text: "READY=1\nSTATUS=listening", fds: [] });
  });

  test("supports an @abstract NOTIFY_SOCKET", () => {
    const name = `@luo-kernel-notify-${process.pid}-${Math.random().toString(36).slice(2)}`;
    process.env.NOTIFY_SOCKET = name;
    expect(capture(name, () => sdNotify("STOPPING=1")).text).toBe("STOPPING=1");
  });

  test("throws a SysError when nobody listens on NOTIFY_SOCKET", () => {
    process.env.NOTIFY_SOCKET = join(dir, "nobody");
    expect(() => sdNotify("READY=1")).toThrow(`sd_notify ${join(dir, "nobody")}: ENOENT`);
  });

  test("sdNotifyWithFds attaches fds (FDSTORE=1) that arrive usable", () => {
    const path = join(dir, "notify");
    process.env.NOTIFY_SOCKET = path;
    const memfd = memfdCreate("kernel-fdstore");
    writeFull(memfd, new TextEncoder().encode("stored"));
    try {
      const got = capture(path, () => sdNotifyWithFds("FDSTORE=1\nFDNAME=luod-vm-42", [memfd]));
      expect(got.text).toBe("FDSTORE=1\nFDNAME=luod-vm-42");
      expect(got.fds).toHaveLength(1);
      const buf = new Uint8Array(fileSize(got.fds[0]!));
      readFull(got.fds[0]!, buf, 0);
      expect(dec.decode(buf)).toBe("stored");
      closeFd(got.fds[0]!);
    } finally {
      closeFd(memfd);
    }
  });
});

describe("sdListenFds", () => {
  test("adopts fds 3.. with their names when LISTEN_PID is ours, marks them CLOEXEC, unsets the vars", async () => {
    const a = join(dir, "a");
    const b = join(dir, "b");
    writeFileSync(a, "A");
    writeFileSync(b, "B");
    const fixture = join(import.meta.dir, "../fixtures/kernel-listen-fds.ts");
    // $$ is the shell's pid, which exec hands on to bun: LISTEN_PID names the process that reads it
    const script = 'LISTEN_PID=$$ LISTEN_FDS=2 LISTEN_FDNAMES=control:data exec "$0" "$1" 3<"$2" 4<"$3"';
    const proc = Bun.spawn(["sh", "-c", script, process.execPath, fixture, a, b], {
      stdout: "pipe",
      stderr: "pipe",
    });
    const [out, err, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    expect(err).toBe("");
    expect(code).toBe(0);
    expect(JSON.parse(out)).toEqual({
      fds: [
        { fd: 3, name: "control", target: a, cloexec: true },
        { fd: 4, name: "data", target: b, cloexec: true },
      ],
      left: [],
    });
  });

  test("ignores (and unsets) the variables when LISTEN_PID is another process", () => {
    process.env.LISTEN_PID = String(process.pid + 1);
    process.env.LISTEN_FDS = "2";
    process.env.LISTEN_FDNAMES = "x:y";
    expect(sdListenFds()).toEqual([]);
    expect(process.env.LISTEN_PID).toBeUndefined();
    expect(process.env.LISTEN_FDS).toBeUndefined();
    expect(process.env.LISTEN_FDNAMES).toBeUndefined();
  });

  test("returns nothing when the variables are absent", () => {
    delete process.env.LISTEN_PID;
    delete process.env.LISTEN_FDS;
    expect(sdListenFds()).toEqual([]);
  });
});

// Errno capture and SysError for failures provoked with real syscalls on this host.
import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { closeFd, openFile } from "../../src/kernel/fd.ts";
import { kexecFileLoad, kexecLoaded, unameRelease } from "../../src/kernel/kexec.ts";
import { check, Errno, errnoName, getgid, getpid, getuid, rcOrErrno, SysError, sys } from "../../src/kernel/libc.ts";
import { createSession } from "../../src/kernel/liveupdate.ts";
import { memfdCreate } from "../../src/kernel/memfd.ts";
import { unixConnect } from "../../src/kernel/unix.ts";
import { thrown as thrownOf } from "../support/thrown";

const thrown = (fn: () => unknown) => thrownOf(fn, SysError);


describe("errno names", () => {
  test("errnoName maps numbers to glibc names and unknown numbers to ERRNO_<n>", () => {
    expect(errnoName(Errno.EBADF)).toBe("EBADF");
    expect(errnoName(Errno.EBUSY)).toBe("EBUSY");
    expect(errnoName(Errno.ECONNREFUSED)).toBe("ECONNREFUSED");
    expect(errnoName(4095)).toBe("ERRNO_4095");
  });

  test("every Errno entry carries the number glibc names it by", () => {
    for (const [name, n] of Object.entries(Errno)) expect(errnoName(n)).toBe(name);
  });
});

describe("SysError from real failures", () => {
  test("close(-1) throws EBADF with message `close: EBADF (Bad file descriptor)`", () => {
    const e = thrown(() => closeFd(-1));
    expect(e.op).toBe("close");
    expect(e.errno).toBe(Errno.EBADF);
    expect(e.code).toBe("EBADF");
    expect(e.message).toBe("close: EBADF (Bad file descriptor)");
    expect(e.name).toBe("SysError");
  });

  test("connecting to a missing socket path throws ENOENT naming the path", () => {
    const dir = mkdtempSync(join(tmpdir(), "luo-kernel-"));
    try {
      const path = join(dir, "absent.sock");
      const e = thrown(() => unixConnect(path));
      expect(e.code).toBe("ENOENT");
      expect(e.op).toBe(`connect ${path}`);
      expect(e.message).toStartWith(`connect ${path}: ENOENT`);
    } finally {
      rmSync(dir, { recursive: true });
    }
  });

  test("opening a missing file throws ENOENT with op `open <path>`", () => {
    const e = thrown(() => openFile("/nonexistent/luo-kernel-test"));
    expect(e.message).toBe("open /nonexistent/luo-kernel-test: ENOENT (No such file or directory)");
  });

  test("a LUO ioctl on a memfd fails with the kernel's errno and the session name in op", () => {
    const fd = memfdCreate("not-a-luo-device");
    try {
      const e = thrown(() => createSession(fd, "luod:vm-42/1"));
      // shmem has no ioctl handler: vfs_ioctl answers ENOTTY
      expect(e.code).toBe("ENOTTY");
      expect(e.op).toBe("CREATE_SESSION luod:vm-42/1");
      expect(e.message).toBe("CREATE_SESSION luod:vm-42/1: ENOTTY (Inappropriate ioctl for device)");
    } finally {
      closeFd(fd);
    }
  });

  test("kexecFileLoad with invalid fds fails with an errno name, never loading anything", () => {
    // -1 / -1 can never be an image: the kernel answers EPERM, EBADF or ENOSYS depending on config
    const e = thrown(() => kexecFileLoad(-1, -1, "console=ttyS0"));
    expect(["EPERM", "EBADF", "ENOSYS", "EINVAL"]).toContain(e.code);
    expect(e.message).toMatch(/^kexec_file_load: E[A-Z0-9]+ \(.+\)$/);
  });

  test("check returns rc on success and throws on -1; rcOrErrno returns -errno", () => {
    expect(check("getpid", sys.getpid())).toBe(process.pid);
    expect(() => check("close", sys.close(-1))).toThrow("close: EBADF");
    expect(rcOrErrno(sys.close(-1))).toBe(-Errno.EBADF);
    sys.close(-1);
    expect(rcOrErrno(-1n)).toBe(-Errno.EBADF); // i64 results may come back as BigInt
    expect(rcOrErrno(5n)).toBe(5);
  });

  test("errno is read from the failing call even after other successful calls", () => {
    sys.close(-1);
    const e = thrown(() => openFile("/nonexistent/luo-kernel-test-2"));
    expect(e.code).toBe("ENOENT");
  });
});

describe("identity and system info", () => {
  test("getpid/getuid/getgid agree with process", () => {
    expect(getpid()).toBe(process.pid);
    expect(getuid()).toBe(process.getuid!());
    expect(getgid()).toBe(process.getgid!());
  });

  test("unameRelease is the running kernel's release", async () => {
    expect(unameRelease()).toBe((await Bun.file("/proc/sys/kernel/osrelease").text()).trim());
  });

  test("kexecLoaded reads 1/0 and gives null for an unreadable file", () => {
    const dir = mkdtempSync(join(tmpdir(), "luo-kernel-"));
    try {
      writeFileSync(join(dir, "yes"), "1\n");
      writeFileSync(join(dir, "no"), "0\n");
      expect(kexecLoaded(join(dir, "yes"))).toBe(true);
      expect(kexecLoaded(join(dir, "no"))).toBe(false);
      expect(kexecLoaded(join(dir, "absent"))).toBeNull();
    } finally {
      rmSync(dir, { recursive: true });
    }
  });
});

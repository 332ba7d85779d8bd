// fd plumbing and memfds, against real syscalls.
import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  closeFd,
  countOpenFds,
  dupFd,
  fdTarget,
  fileSize,
  findFdHolders,
  getCloexec,
  isTerminal,
  O_CLOEXEC,
  O_RDWR,
  openFile,
  readFull,
  setCloexec,
  writeFull,
} from "../../src/kernel/fd.ts";
import {
  addSeals,
  F_SEAL_GROW,
  F_SEAL_SEAL,
  F_SEAL_SHRINK,
  F_SEAL_WRITE,
  ftruncate,
  getSeals,
  MFD_CLOEXEC,
  memfdCreate,
} from "../../src/kernel/memfd.ts";
import { SysError } from "../../src/kernel/libc.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

function contentOf(fd: number): string {
  const buf = new Uint8Array(fileSize(fd));
  expect(readFull(fd, buf, 0)).toBe(buf.length);
  return dec.decode(buf);
}

describe("memfd", () => {
  test("memfdCreate gives a close-on-exec memfd named memfd:<name>", () => {
    const fd = memfdCreate("kernel-test");
    try {
      expect(fdTarget(fd)).toBe("/memfd:kernel-test (deleted)");
      expect(getCloexec(fd)).toBe(true);
      expect(fileSize(fd)).toBe(0);
    } finally {
      closeFd(fd);
    }
  });

  test("written bytes are read back and size follows writes and ftruncate", () => {
    const fd = memfdCreate("kernel-data");
    try {
      writeFull(fd, enc.encode("hello kexec world"));
      expect(fileSize(fd)).toBe(17);
      expect(contentOf(fd)).toBe("hello kexec world");
      writeFull(fd, enc.encode("HELLO"), 0); // pwrite at offset 0
      expect(contentOf(fd)).toBe("HELLO kexec world");
      ftruncate(fd, 1 << 20);
      expect(fileSize(fd)).toBe(1 << 20);
    } finally {
      closeFd(fd);
    }
  });

  test("readFull stops at EOF and reads from the given offset", () => {
    const fd = memfdCreate("kernel-eof");
    try {
      writeFull(fd, enc.encode("0123456789"));
      const buf = new Uint8Array(64);
      expect(readFull(fd, buf, 4)).toBe(6);
      expect(dec.decode(buf.subarray(0, 6))).toBe("456789");
    } finally {
      closeFd(fd);
    }
  });

  test("seals are added, reported, and enforced (EPERM on resize)", () => {
    const fd = memfdCreate("kernel-seals");
    try {
      writeFull(fd, enc.encode("abc"));
      addSeals(fd, F_SEAL_SHRINK | F_SEAL_GROW);
      expect(getSeals(fd)).toBe(F_SEAL_SHRINK | F_SEAL_GROW);
      expect(() => ftruncate(fd, 100)).toThrow("ftruncate: EPERM");
      addSeals(fd, F_SEAL_WRITE | F_SEAL_SEAL);
      expect(getSeals(fd)).toBe(F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
      expect(() => writeFull(fd, enc.encode("x"), 0)).toThrow("pwrite: EPERM");
      expect(() => addSeals(fd, F_SEAL_GROW)).toThrow("fcntl(F_ADD_SEALS): EPERM");
    } finally {
      closeFd(fd);
    }
  });

  test("a memfd created without MFD_ALLOW_SEALING refuses seals", () => {
    const fd = memfdCreate("kernel-nosealing", MFD_CLOEXEC);
    try {
      expect(getSeals(fd)).toBe(F_SEAL_SEAL);
      expect(() => addSeals(fd, F_SEAL_GROW)).toThrow("EPERM");
    } finally {
      closeFd(fd);
    }
  });

  test("a name with a NUL byte is rejected before the call", () => {
    expect(() => memfdCreate("a\0b")).toThrow(SysError);
  });
});

describe("fd plumbing", () => {
  test("isTerminal is true for a pseudo-terminal and false for a file or a memfd", () => {
    const ptmx = openFile("/dev/ptmx", O_RDWR | O_CLOEXEC);
    const devNull = openFile("/dev/null");
    const mfd = memfdCreate("not-a-tty");
    try {
      expect(isTerminal(ptmx)).toBe(true);
      expect(isTerminal(devNull)).toBe(false);
      expect(isTerminal(mfd)).toBe(false);
    } finally {
      for (const fd of [ptmx, devNull, mfd]) closeFd(fd);
    }
  });

  test("dupFd shares the open file, is close-on-exec and never lands on stdio", () => {
    const fd = memfdCreate("kernel-dup");
    const dup = dupFd(fd);
    try {
      expect(dup).toBeGreaterThanOrEqual(3);
      expect(dup).not.toBe(fd);
      expect(getCloexec(dup)).toBe(true);
      writeFull(dup, enc.encode("via dup"));
      expect(contentOf(fd)).toBe("via dup");
    } finally {
      closeFd(dup);
      closeFd(fd);
    }
  });

  test("setCloexec toggles FD_CLOEXEC", () => {
    const fd = memfdCreate("kernel-cloexec");
    try {
      setCloexec(fd, false);
      expect(getCloexec(fd)).toBe(false);
      setCloexec(fd, true);
      expect(getCloexec(fd)).toBe(true);
    } finally {
      closeFd(fd);
    }
  });

  test("closeFd closes: a second close is EBADF", () => {
    const fd = memfdCreate("kernel-close");
    closeFd(fd);
    expect(() => closeFd(fd)).toThrow("close: EBADF");
  });

  test("openFile opens read-only close-on-exec by default and honours flags", () => {
    const dir = mkdtempSync(join(tmpdir(), "luo-kernel-"));
    try {
      const path = join(dir, "f");
      writeFileSync(path, "on disk");
      const ro = openFile(path);
      expect(getCloexec(ro)).toBe(true);
      expect(contentOf(ro)).toBe("on disk");
      expect(() => writeFull(ro, enc.encode("x"))).toThrow("write: EBADF");
      closeFd(ro);
      const rw = openFile(path, O_RDWR | O_CLOEXEC);
      writeFull(rw, enc.encode("ON"));
      expect(contentOf(rw)).toBe("ON disk");
      expect(fdTarget(rw)).toBe(path);
      closeFd(rw);
    } finally {
      rmSync(dir, { recursive: true });
    }
  });

  test("countOpenFds counts exactly the fds this process opens and closes", () => {
    const before = countOpenFds();
    const a = memfdCreate("kernel-count-a");
    const b = memfdCreate("kernel-count-b");
    expect(countOpenFds()).toBe(before + 2);
    expect(countOpenFds(process.pid)).toBe(before + 2);
    closeFd(a);
    closeFd(b);
    expect(countOpenFds()).toBe(before);
  });

  test("fdTarget of a closed fd throws EBADF-or-ENOENT SysError", () => {
    const fd = memfdCreate("kernel-gone");
    closeFd(fd);
    expect(() => fdTarget(fd)).toThrow(SysError);
  });

  test("findFdHolders finds this process holding a file, with its comm", () => {
    const dir = mkdtempSync(join(tmpdir(), "luo-kernel-"));
    try {
      const path = join(dir, "held");
      writeFileSync(path, "");
      expect(findFdHolders(path)).toEqual([]);
      const fd = openFile(path);
      try {
        const holders = findFdHolders(path);
        expect(holders).toHaveLength(1);
        expect(holders[0]!.pid).toBe(process.pid);
        expect(holders[0]!.fd).toBe(fd);
        expect(holders[0]!.comm).toBe(readFileSync(`/proc/${process.pid}/comm`, "utf8").trim());
      } finally {
        closeFd(fd);
      }
    } finally {
      rmSync(dir, { recursive: true });
    }
  });
});

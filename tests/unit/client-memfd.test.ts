// The app-facing helpers of src/client/memfd.ts. A real LUO session needs the LUO kernel (VM
// tests); here: they reach the kernel layer and its errors come back as SysError.
import { describe, expect, test } from "bun:test";
import { readlinkSync } from "node:fs";
import {
  closeFd, createMemfd, fileSize, finishSession, preserveMemfd, readFull, retrieveMemfd, sessionName, SysError, writeFull,
} from "../../src/client";

describe("client memfd helpers", () => {
  test("createMemfd makes a sized, writable memfd", () => {
    const fd = createMemfd("vm-ram", 8192);
    try {
      expect(fileSize(fd)).toBe(8192);
      expect(readlinkSync(`/proc/self/fd/${fd}`)).toStartWith("/memfd:vm-ram");
      writeFull(fd, new TextEncoder().encode("hello"), 100);
      const b = new Uint8Array(5);
      readFull(fd, b, 100);
      expect(new TextDecoder().decode(b)).toBe("hello");
    } finally {
      closeFd(fd);
    }
  });

  test("the LUO wrappers call the kernel: a non-session fd is refused with a SysError", () => {
    const notSession = createMemfd("not-a-session");
    const memfd = createMemfd("data", 4096);
    try {
      for (const f of [
        () => preserveMemfd(notSession, memfd, 1n),
        () => retrieveMemfd(notSession, 1),
        () => finishSession(notSession),
        () => sessionName(notSession),
      ]) {
        let err: unknown;
        try {
          f();
        } catch (e) {
          err = e;
        }
        expect(err).toBeInstanceOf(SysError);
        expect((err as SysError).code).toMatch(/^E[A-Z]+$/); // ENOTTY on a memfd
      }
    } finally {
      closeFd(memfd);
      closeFd(notSession);
    }
  });

  test("tokens: numbers must be non-negative safe integers", () => {
    const fd = createMemfd("x");
    try {
      expect(() => preserveMemfd(fd, fd, -1)).toThrow(RangeError);
      expect(() => retrieveMemfd(fd, 1.5)).toThrow(RangeError);
    } finally {
      closeFd(fd);
    }
  });
});

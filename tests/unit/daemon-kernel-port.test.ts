// The real KernelPort on a host without LUO: its pure parts, and which failures are errors (its
// syscalls on the real device are proven in the VM tests).
import { describe, expect, test } from "bun:test";
import { dirtyKiB, realKernel } from "../../src/daemon/kernel-port";

describe("background sync before a real update", () => {
  test("counts Dirty and Writeback of /proc/meminfo, nothing else", () => {
    const meminfo = [
      "MemTotal:       24684544 kB",
      "Dirty:             81920 kB",
      "Writeback:          1024 kB",
      "WritebackTmp:       4096 kB",
      "NFS_Unstable:          0 kB",
    ].join("\n");
    expect(dirtyKiB(meminfo)).toBe(82944);
    expect(dirtyKiB("MemTotal: 1 kB\n")).toBe(0);
  });
});

describe("RETRIEVE_SESSION's outcomes", () => {
  // ENOENT of RETRIEVE_SESSION is "absent"; ENOENT of a missing device is not: it is an error
  test("a missing device throws ENOENT, it is never taken for an absent session", () => {
    const k = realKernel("/nonexistent/liveupdate");
    expect(() => k.retrieveSession("luod")).toThrow(expect.objectContaining({ code: "ENOENT" }));
    expect(() => k.takeBlob("luod", 0n)).toThrow(expect.objectContaining({ code: "ENOENT" }));
  });
  test("any other failure of the ioctl throws its SysError", () => {
    const k = realKernel("/dev/null");
    expect(() => k.retrieveSession("luod")).toThrow(expect.objectContaining({ code: "ENOTTY" }));
    expect(() => k.takeBlob("luod", 0n)).toThrow(expect.objectContaining({ code: "ENOTTY" }));
  });
});

// The real KernelPort's pure parts (its syscalls are proven in the VM tests).
import { describe, expect, test } from "bun:test";
import { dirtyKiB } from "../../src/daemon/kernel-port";

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

// The ABI strings and banners in a decompressed kernel, and the comparison of two kernels' strings
// (src/daemon/image-abi.ts).
import { describe, expect, test } from "bun:test";
import { compareAbi, scanKernelAbi } from "../../src/daemon/image-abi";
import { fakeVmlinux } from "../support/bzimage";

const enc = new TextEncoder();
const bytes = (s: string) => enc.encode(s);

describe("scanKernelAbi", () => {
  test("finds the three strings as the kernel stores them (memfd's inline after a pointer) and the banners", () => {
    const banner = "Linux version 7.2.13 (root@vm) (gcc 12) #1 SMP PREEMPT Thu Dec  3 20:37:16 UTC 2026\n";
    const r = scanKernelAbi(fakeVmlinux({}, [banner, "Linux version 7.2.13 (root@vm) (gcc 12) # SMP PREEMPT \n"]));
    expect(r).toEqual({
      luo: "luo-v5", memfd: "memfd-v2", kho: "kho-v4", ambiguous: {},
      banners: [banner, "Linux version 7.2.13 (root@vm) (gcc 12) # SMP PREEMPT \n"],
    });
  });

  test("a kernel without LUO has no strings (null, not a guess)", () => {
    expect(scanKernelAbi(fakeVmlinux({ luo: null, memfd: null, kho: null }, []))).toEqual({
      luo: null, memfd: null, kho: null, ambiguous: {}, banners: [],
    });
  });

  test("only whole C strings count: not a tail of a longer string, not without a NUL, not other suffixes", () => {
    const data = bytes(
      "\0xluo-v5\0" + // the tail of "xluo-v5"
        "\0luo-v5x\0" + // not /^luo-v[0-9]+$/
        "\0luo-v\0" +
        "\0kho-v4 \0" +
        "\0Linux version 1 no newline\0" + // a banner must end in "\n"
        "\0xLinux version 2 not at a string start\n\0" +
        "\0luo-v7", // no NUL before the end
    );
    expect(scanKernelAbi(data)).toEqual({ luo: null, memfd: null, kho: null, ambiguous: {}, banners: [] });
  });

  test("the same string twice is fine; two different values of one kind are ambiguous", () => {
    const r = scanKernelAbi(bytes("\0luo-v5\0luo-v5\0luo-v6\0kho-v4\0kho-v4\0memfd-v2\0"));
    expect(r.luo).toBeNull();
    expect(r.ambiguous).toEqual({ luo: ["luo-v5", "luo-v6"] });
    expect(r.kho).toBe("kho-v4");
    expect(r.memfd).toBe("memfd-v2");
  });

  test("a hostile image full of look-alikes yields a small result", () => {
    let text = "\0";
    for (let i = 0; i < 5000; i++) text += `luo-v${i}\0Linux version ${i}\n\0`;
    const r = scanKernelAbi(bytes(text));
    expect(r.luo).toBeNull();
    expect(r.ambiguous.luo).toHaveLength(8);
    expect(r.banners).toHaveLength(16);
  });

  test("a string at the very start of the data counts", () => {
    expect(scanKernelAbi(bytes("luo-v5\0")).luo).toBe("luo-v5");
  });
});

describe("compareAbi", () => {
  const A = { luo: "luo-v5", memfd: "memfd-v2", kho: "kho-v4" };

  test("equal strings: no problem", () => {
    expect(compareAbi(A, { ...A })).toEqual([]);
  });

  test("a LUO mismatch names both strings and the panic", () => {
    const [p, ...rest] = compareAbi(A, { ...A, luo: "luo-v6" });
    expect(rest).toEqual([]);
    expect(p).toEqual({
      kind: "luo", code: "mismatch", running: "luo-v5", next: "luo-v6", consequence: "panic",
      message: "LUO ABI mismatch: the running kernel has luo-v5, the new kernel luo-v6 (the new kernel would panic at boot)",
    });
  });

  test("memfd and KHO mismatches say what is lost", () => {
    const ps = compareAbi(A, { ...A, memfd: "memfd-v3", kho: "kho-v5" });
    expect(ps.map((p) => [p.kind, p.code, p.consequence])).toEqual([
      ["memfd", "mismatch", "sessions-unrestorable"],
      ["kho", "mismatch", "sessions-lost"],
    ]);
    expect(ps[0]!.message).toBe(
      "memfd ABI mismatch: the running kernel has memfd-v2, the new kernel memfd-v3 (no session could be restored: open(/dev/liveupdate) fails with EIO for that whole boot)",
    );
    expect(ps[1]!.message).toBe(
      "KHO ABI mismatch: the running kernel has kho-v4, the new kernel kho-v5 (the new kernel would ignore the handed-over data: every session would be lost)",
    );
  });

  test("a new kernel without the strings (Debian's: no CONFIG_LIVEUPDATE) is refused, naming the running strings", () => {
    const ps = compareAbi(A, { luo: null, memfd: null, kho: null });
    expect(ps.map((p) => p.code)).toEqual(["missing", "missing", "missing"]);
    expect(ps[0]!.message).toBe(
      "the new kernel has no LUO ABI string (built without CONFIG_LIVEUPDATE?), the running kernel has luo-v5: every session would be lost",
    );
    expect(ps[1]!.message).toContain("built without CONFIG_LIVEUPDATE_MEMFD?");
    expect(ps[2]!.message).toContain("built without CONFIG_KEXEC_HANDOVER?");
  });

  test("a running string that is not known is an 'unknown' problem", () => {
    const ps = compareAbi({ luo: null, memfd: "memfd-v2", kho: "kho-v4" }, A);
    expect(ps).toEqual([{
      kind: "luo", code: "unknown", running: null, next: "luo-v5", consequence: "unknown",
      message: "the running kernel's LUO ABI is unknown (the new kernel has luo-v5)",
    }]);
  });

  test("an ambiguous new kernel is refused, naming every value it has", () => {
    const ps = compareAbi(A, { ...A, luo: null, ambiguous: { luo: ["luo-v5", "luo-v6"] } });
    expect(ps.map((p) => [p.kind, p.code])).toEqual([["luo", "ambiguous"]]);
    expect(ps[0]!.message).toContain("luo-v5, luo-v6");
  });

  test("every message is one line", () => {
    const all = [
      ...compareAbi(A, { luo: "luo-v9", memfd: null, kho: "kho-v1" }),
      ...compareAbi({ luo: null, memfd: null, kho: null }, { luo: null, memfd: null, kho: null }),
    ];
    for (const p of all) expect(p.message).not.toContain("\n");
  });
});

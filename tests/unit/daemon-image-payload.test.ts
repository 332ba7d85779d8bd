// The compressed kernel of a bzImage: compression by magic, and decoding gzip, zstd and legacy lz4
// with a cap, typed failures on hostile input (src/daemon/image-payload.ts).
import { describe, expect, test } from "bun:test";
import { gzipSync, zstdCompressSync } from "node:zlib";
import { decompressPayload, detectCompression, LZ4_LEGACY_BLOCK_BYTES } from "../../src/daemon/image-payload";
import { concat, le32, lz4Legacy, lz4LegacyBlocks, lz4LiteralBlock } from "../support/lz4";
import { fakeVmlinux } from "../support/bzimage";

const vmlinux = fakeVmlinux();
/** Kbuild's payloads: gzip as is, the others with the uncompressed size appended (size_append). */
const gz = (d: Uint8Array) => new Uint8Array(gzipSync(d));
const zst = (d: Uint8Array) => concat([new Uint8Array(zstdCompressSync(d)), le32(d.length)]);

describe("detectCompression", () => {
  const cases: [string, number[]][] = [
    ["gzip", [0x1f, 0x8b, 0x08, 0]],
    ["zstd", [0x28, 0xb5, 0x2f, 0xfd, 0]],
    ["lz4", [0x02, 0x21, 0x4c, 0x18, 0]],
    ["xz", [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0]],
    ["lzma", [0x5d, 0x00, 0x00, 0x00, 0x04]],
    ["bzip2", [0x42, 0x5a, 0x68, 0x39, 0x31]],
    ["lzo", [0x89, 0x4c, 0x5a, 0x4f, 0x00, 0x0d, 0x0a, 0x1a, 0x0a]],
    ["unknown", [0x04, 0x22, 0x4d, 0x18]], // the lz4 frame format: Kbuild never makes it
    ["unknown", [0x42, 0x5a, 0x68, 0x30]], // "BZh0" is no bzip2 block size
    ["unknown", []],
    ["unknown", [0x28, 0xb5]], // a cut-off magic
  ];
  for (const [want, bytes] of cases) {
    test(`${JSON.stringify(bytes.slice(0, 4))}… is ${want}`, () => {
      expect(detectCompression(new Uint8Array(bytes))).toBe(want as ReturnType<typeof detectCompression>);
    });
  }
});

describe("decompressPayload", () => {
  test("gzip, zstd (size suffix stripped) and legacy lz4 decode to the same bytes", () => {
    for (const [name, payload] of [["gzip", gz(vmlinux)], ["zstd", zst(vmlinux)], ["lz4", lz4Legacy(vmlinux)]] as const) {
      const r = decompressPayload(payload, 8 << 20);
      if (!r.ok) throw new Error(`${name}: ${r.message}`);
      expect(r.compression).toBe(name);
      expect(Buffer.from(r.data).equals(Buffer.from(vmlinux))).toBe(true);
    }
  });

  test("lz4: several blocks and an end marker; the output must have the size the suffix says", () => {
    const data = vmlinux.subarray(0, 300_000);
    const r = decompressPayload(lz4Legacy(data, { blockBytes: 70_000 }), 1 << 20);
    expect(r.ok && Buffer.from(r.data).equals(Buffer.from(data))).toBe(true);
    const lying = decompressPayload(lz4Legacy(data, { blockBytes: 70_000, sizeSuffix: 10 }), 1 << 20);
    expect(lying).toMatchObject({ ok: false, code: "corrupt", message: expect.stringContaining("size suffix says 10") });
    // a zero chunk size ends the stream; what follows is ignored, as the kernel does
    const ended = concat([lz4Legacy(data.subarray(0, 100)).subarray(0, -4), le32(0), new Uint8Array([1, 2, 3, 4, 5]), le32(100)]);
    const e = decompressPayload(ended, 1 << 20);
    expect(e.ok && Buffer.from(e.data).equals(Buffer.from(data.subarray(0, 100)))).toBe(true);
  });

  test("lz4: matches, overlapping ones (a run) and long lengths, reaching into an earlier block", () => {
    // block 1: literals "abc"; block 2: literal "d", then a match of 300 bytes at offset 4 (overlapping)
    const b1 = lz4LiteralBlock(new TextEncoder().encode("abc"));
    const b2 = new Uint8Array([0x1f, 0x64, 4, 0, 255, 300 - 19 - 255, 0x00]); // token lit 1 match 15+…; then an empty last literals
    const r = decompressPayload(lz4LegacyBlocks([b1, b2], 304), 1 << 20);
    if (!r.ok) throw new Error(r.message);
    const want = "abcd".repeat(76);
    expect(new TextDecoder().decode(r.data)).toBe(want);
  });

  test("lz4: a match at offset 1 repeats the byte before it (not always zero), short and long", () => {
    // literals "xy", match offset 1 length 4 + 15 + 10 = 29; literal "z", match offset 1 length 5; last literals "!"
    const block = new Uint8Array([0x2f, 0x78, 0x79, 1, 0, 10, 0x11, 0x7a, 1, 0, 0x10, 33]);
    const r = decompressPayload(lz4LegacyBlocks([block], 2 + 29 + 1 + 5 + 1), 1 << 20);
    if (!r.ok) throw new Error(r.message);
    expect(new TextDecoder().decode(r.data)).toBe(`xy${"y".repeat(29)}z${"z".repeat(5)}!`);
  });

  test("lz4: long and short non-overlapping matches copy the right bytes", () => {
    const lits = Uint8Array.from({ length: 40 }, (_, i) => 65 + (i % 26));
    // literals 40 (15 + 25), match offset 40 length 40 (4 + 15 + 21); literal 0, match offset 8 length 4; last literals "!"
    const block = new Uint8Array([0xff, 25, ...lits, 40, 0, 21, 0x00, 8, 0, 0x10, 33]);
    const r = decompressPayload(lz4LegacyBlocks([block], 85), 1 << 20);
    if (!r.ok) throw new Error(r.message);
    const want = [...lits, ...lits, ...lits.slice(32, 36), 33];
    expect([...r.data]).toEqual(want);
  });

  test("unsupported compressions say exactly which", () => {
    for (const [magic, name] of [[[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], "xz"], [[0x5d, 0, 0, 0, 4], "lzma"], [[0x42, 0x5a, 0x68, 0x39], "bzip2"], [[0x89, 0x4c, 0x5a, 0x4f, 0x00, 0x0d, 0x0a, 0x1a, 0x0a], "lzo"], [[1, 2, 3, 4], "unknown"]] as const) {
      const r = decompressPayload(new Uint8Array([...magic, 0, 0, 0, 0, 0, 0]), 1 << 20);
      expect(r).toEqual({ ok: false, code: "unsupported", compression: name, message: `could not read the ABI of this image (compression ${name})` });
    }
  });

  test("a wrong magic is an unknown compression", () => {
    const good = lz4Legacy(vmlinux.subarray(0, 5000));
    expect(decompressPayload(concat([le32(0x184c2103), good.subarray(4)]), 1 << 20)).toMatchObject({ ok: false, code: "unsupported", compression: "unknown" });
  });

  test("a zip bomb stops at the cap, for every compression", () => {
    const zeros = new Uint8Array(32 << 20);
    const lz4Bomb = lz4LegacyBlocks(
      // per 8 MiB block: one literal 0, then a match at offset 1 of 8 MiB - 1 bytes
      Array.from({ length: 4 }, () => {
        const len = LZ4_LEGACY_BLOCK_BYTES - 1 - 4 - 15; // beyond token's 15
        const ext = [...Array(Math.floor(len / 255)).fill(255), len % 255];
        return new Uint8Array([0x1f, 0, 1, 0, ...ext, 0x00]);
      }),
      1000, // the size suffix lies: far smaller than the output
    );
    for (const payload of [gz(zeros), zst(zeros), lz4Bomb]) {
      const r = decompressPayload(payload, 4 << 20);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.code).toBe("too-large");
    }
    // a size suffix over the cap is refused before decoding
    const r = decompressPayload(lz4Legacy(new Uint8Array(10), { sizeSuffix: 5 << 20 }), 4 << 20);
    expect(!r.ok && r.code).toBe("too-large");
    const z = zst(new Uint8Array(10));
    z.set(le32(5 << 20), z.length - 4);
    expect(decompressPayload(z, 4 << 20)).toMatchObject({ ok: false, code: "too-large" });
  });

  test("an lz4 block may not decode to more than the legacy format's 8 MiB", () => {
    const len = LZ4_LEGACY_BLOCK_BYTES + 10 - 19;
    const ext = [...Array(Math.floor(len / 255)).fill(255), len % 255];
    const r = decompressPayload(lz4LegacyBlocks([new Uint8Array([0x1f, 0, 1, 0, ...ext, 0x00])], 100), 64 << 20);
    expect(!r.ok && r.code).toBe("corrupt");
  });

  test("hostile lz4: truncated, lying lengths, bad offsets are corrupt, never a throw or a read out of range", () => {
    const good = lz4Legacy(vmlinux.subarray(0, 5000));
    const cases: [string, Uint8Array, string][] = [
      ["cut in the middle", concat([good.subarray(0, 2000), le32(5000)]), "runs past"],
      ["a block size past the end", lz4LegacyBlocks([new Uint8Array([0x50, 1, 2, 3, 4, 5])], 5).map((b, i) => (i === 4 ? 200 : b)), "runs past"],
      ["literals past the block", lz4LegacyBlocks([new Uint8Array([0x50, 1, 2])], 5), "literals run past"],
      ["a literal length past the block", lz4LegacyBlocks([new Uint8Array([0xf0, 255, 255])], 5), "literal length"],
      ["offset 0", lz4LegacyBlocks([new Uint8Array([0x10, 7, 0, 0, 0x00])], 5), "offset 0"],
      ["offset before the output", lz4LegacyBlocks([new Uint8Array([0x10, 7, 9, 0, 0x00])], 5), "before the start"],
      ["a cut match offset", lz4LegacyBlocks([new Uint8Array([0x10, 7, 1])], 5), "offset runs past"],
      ["a match length past the block", lz4LegacyBlocks([new Uint8Array([0x1f, 7, 1, 0, 255])], 5), "match length"],
      ["no last literals", lz4LegacyBlocks([new Uint8Array([0x10, 7, 1, 0])], 5), "without its last literals"],
      ["too short", new Uint8Array([0x02, 0x21, 0x4c, 0x18]), "too short"],
    ];
    for (const [name, payload, why] of cases) {
      const r = decompressPayload(payload, 1 << 20);
      expect({ name, ok: r.ok }).toEqual({ name, ok: false });
      if (!r.ok) {
        expect({ name, code: r.code }).toEqual({ name, code: "corrupt" });
        expect(r.message).toContain(why);
      }
    }
  });

  test("hostile gzip and zstd: truncated or flipped bytes are corrupt", () => {
    const cutZst = concat([zst(vmlinux).subarray(0, 3000), le32(vmlinux.length)]); // Bun decodes a cut frame without error
    for (const payload of [gz(vmlinux).subarray(0, 3000), cutZst]) {
      const r = decompressPayload(payload, 8 << 20);
      expect(!r.ok && r.code).toBe("corrupt");
    }
    const flipped = gz(vmlinux);
    flipped[flipped.length - 9] ^= 0xff; // the CRC32
    const r = decompressPayload(flipped, 8 << 20);
    expect(!r.ok && r.code).toBe("corrupt");
  });

  test("random mutations of each format never throw and never exceed the cap", () => {
    let seed = 12345;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    const small = vmlinux.subarray(0, 20_000);
    for (const base of [gz(small), zst(small), lz4Legacy(small, { blockBytes: 3000 })]) {
      for (let i = 0; i < 300; i++) {
        const m = base.slice(0, Math.max(8, Math.floor(rnd() * base.length * 1.1)));
        for (let k = 0; k < 1 + rnd() * 8; k++) m[4 + Math.floor(rnd() * (m.length - 4))] = Math.floor(rnd() * 256);
        const r = decompressPayload(m, 64 << 10);
        if (r.ok) expect(r.data.length).toBeLessThanOrEqual(64 << 10);
        else expect(["corrupt", "too-large"]).toContain(r.code);
      }
    }
  });
});

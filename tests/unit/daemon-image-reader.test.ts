// readImageAbi: a bzImage's ABI strings read in a child process (src/daemon/image-reader.ts and
// image-child.ts; from source, bun src/main.ts --internal-image-abi), over synthetic images.
import { afterAll, describe, expect, test } from "bun:test";
import { closeSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync, zstdCompressSync } from "node:zlib";
import { inspectKernelImage } from "../../src/daemon/bzimage";
import { parseReply, readImageAbi } from "../../src/daemon/image-reader";
import { parseJob } from "../../src/daemon/image-child";
import { bzImageWithPayload, fakeVmlinux } from "../support/bzimage";
import { concat, le32, lz4Legacy } from "../support/lz4";

const dir = mkdtempSync(join(tmpdir(), "luo-image-reader-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const banner = "Linux version 7.2.13 (luo@test) (gcc 12) #1 SMP PREEMPT Thu Dec  3 20:37:16 UTC 2026\n";
const vmlinux = fakeVmlinux({}, [banner]);

/** Writes an image with `payload`, opens it, and runs `fn` with the fd and the header info. */
async function withImage<T>(payload: Uint8Array, fn: (fd: number, info: { payloadOffset: number; payloadLength: number }) => Promise<T>): Promise<T> {
  const path = join(dir, `img-${Math.random().toString(36).slice(2)}`);
  const img = bzImageWithPayload(payload);
  writeFileSync(path, img);
  const info = inspectKernelImage(img, img.length);
  if (!info.ok) throw new Error(info.reason);
  const fd = openSync(path, "r");
  try {
    return await fn(fd, info);
  } finally {
    closeSync(fd);
  }
}

describe("readImageAbi", () => {
  const payloads: [string, Uint8Array][] = [
    ["gzip", new Uint8Array(gzipSync(vmlinux))],
    ["zstd", concat([new Uint8Array(zstdCompressSync(vmlinux)), le32(vmlinux.length)])],
    ["lz4", lz4Legacy(vmlinux)],
  ];
  for (const [name, payload] of payloads) {
    test(`reads the strings and the banner of a ${name} image in a child process`, async () => {
      const r = await withImage(payload, (fd, info) => readImageAbi(fd, info));
      expect(r).toMatchObject({
        ok: true, compression: name, decompressedBytes: vmlinux.length,
        luo: "luo-v5", memfd: "memfd-v2", kho: "kho-v4", ambiguous: {}, banners: [banner],
      });
    });
  }

  test("an xz image: the exact message", async () => {
    const r = await withImage(new Uint8Array([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 1, 2, 3, 4]), (fd, info) => readImageAbi(fd, info));
    expect(r).toEqual({ ok: false, code: "unsupported", compression: "xz", message: "could not read the ABI of this image (compression xz)" });
  });

  test("the output cap applies", async () => {
    const r = await withImage(lz4Legacy(vmlinux), (fd, info) => readImageAbi(fd, info, { maxOutputBytes: 100_000 }));
    expect(r).toMatchObject({ ok: false, code: "too-large" });
    // a compressed kernel bigger than the cap is not even read
    const big = await withImage(new Uint8Array(gzipSync(vmlinux)), (fd, info) => readImageAbi(fd, info, { maxOutputBytes: 1000 }));
    expect(big).toMatchObject({ ok: false, code: "too-large", message: expect.stringContaining("is larger than the 1000-byte cap") });
  });

  test("a payload that runs past the end of the file, or a closed fd, is an I/O failure", async () => {
    const r = await withImage(lz4Legacy(vmlinux), (fd, info) =>
      readImageAbi(fd, { payloadOffset: info.payloadOffset, payloadLength: info.payloadLength + 10_000 }));
    expect(r).toMatchObject({ ok: false, code: "io", message: expect.stringContaining("the image ended after") });
    const bad = await readImageAbi(1 << 20, { payloadOffset: 0, payloadLength: 100 }); // above any fd limit here
    expect(bad).toMatchObject({ ok: false, code: "io", message: expect.stringContaining("EBADF") });
  });

  test("a child that does not answer in time is killed: a typed timeout", async () => {
    const started = performance.now();
    const r = await withImage(lz4Legacy(vmlinux), (fd, info) => readImageAbi(fd, info, { timeoutMs: 1 }));
    expect(r).toEqual({ ok: false, code: "timeout", message: "reading the image's ABI took longer than 1 ms" });
    expect(performance.now() - started).toBeLessThan(1000);
  });

  test("many calls in a row leave no child process behind (each is reaped, the slow ones killed)", async () => {
    const children = () =>
      readdirSync("/proc").filter((p) => {
        if (!/^\d+$/.test(p)) return false;
        try {
          // field 4 of stat is the parent's pid; the command name (field 2) may hold spaces
          return readFileSync(`/proc/${p}/stat`, "latin1").replace(/^.*\) /, "").split(" ")[1] === String(process.pid);
        } catch {
          return false; // gone meanwhile
        }
      }).length;
    const payload = lz4Legacy(vmlinux);
    const before = children();
    for (let i = 0; i < 10; i++) {
      const r = await withImage(payload, (fd, info) => readImageAbi(fd, info, { timeoutMs: i % 2 ? 1 : 30_000 }));
      expect(r.ok).toBe(i % 2 === 0);
    }
    expect(children()).toBe(before);
  });
});

describe("the child's command line", () => {
  test("three non-negative integers, nothing else", () => {
    expect(parseJob(["10", "20", "30"])).toEqual({ payloadOffset: 10, payloadLength: 20, maxOutputBytes: 30 });
    for (const bad of [[], ["1", "2"], ["1", "2", "3", "4"], ["-1", "2", "3"], ["1.5", "2", "3"], ["1", "0x10", "3"], ["1", "2", "9999999999999999"]]) {
      expect(parseJob(bad)).toBeNull();
    }
  });
});

describe("the child's reply, checked before luod uses it", () => {
  const good = { ok: true, compression: "lz4", decompressedBytes: 10, ms: 1, luo: "luo-v5", memfd: null, kho: "kho-v4", ambiguous: {}, banners: ["Linux version x\n"] };
  test("a well-formed answer is taken, success or failure", () => {
    expect(parseReply(JSON.stringify(good))).toEqual(good as never);
    expect(parseReply(JSON.stringify({ ...good, ambiguous: { memfd: ["memfd-v1", "memfd-v2"] } }))).not.toBeNull();
    expect(parseReply(JSON.stringify({ ok: false, code: "corrupt", compression: "lz4", message: "x" }))).not.toBeNull();
  });
  test("anything else is no answer: wrong shapes, unknown codes, kinds or compressions, not JSON", () => {
    for (const bad of [
      { ...good, ambiguous: { memfd: "memfd-v2" } },
      { ...good, ambiguous: { other: ["x"] } },
      { ...good, ambiguous: [] },
      { ...good, compression: "xz" },
      { ...good, banners: [1] },
      { ...good, luo: 5 },
      { ok: false, code: "oops", message: "x" },
      { ok: false, code: "io", message: "x", compression: "brotli" },
      [1, 2],
      null,
    ]) expect(parseReply(JSON.stringify(bad))).toBeNull();
    expect(parseReply("not json")).toBeNull();
    expect(parseReply("")).toBeNull();
  });
});

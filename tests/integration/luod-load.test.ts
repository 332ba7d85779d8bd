// LOAD of big images against the compiled luod (issue 14, hole 5): an image over the kernel's own
// maximum (KEXEC_FILE_SIZE_MAX, 4 GiB: docs/kernel.md#image-size-limit) is refused before luod
// reads it, and hashing an allowed one never stalls luod for the other clients. The images are
// sparse files with a valid bzImage header; every LOAD here carries a wrong sha256, so luod stops
// at the hash check and never calls kexec_file_load on this host.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { startDaemon, type Daemon } from "../support/binary";
import { sparseBzImage } from "../support/bzimage";
import { RawPeer } from "./raw-peer";
import { closeFd, openFile, O_RDONLY, O_CLOEXEC } from "../../src/kernel/fd";

const GiB = 1024 ** 3;
const WRONG_SHA = "0".repeat(64);
let luod: Daemon;

beforeAll(async () => {
  luod = await startDaemon(["--device", "/nonexistent/liveupdate", "--config", "/dev/null", "--verbose"]);
});
afterAll(async () => {
  await luod?.stop();
  rmSync(luod.dir, { recursive: true, force: true });
});

const code = (r: Record<string, unknown> | null) => (r?.error as { code?: string } | undefined)?.code;
const load = (initrd: boolean) => ({ cmd: "LOAD", cmdline: "console=ttyS0 liveupdate=on", initrd, fds: initrd ? 2 : 1, sha256: WRONG_SHA });

async function withFile<T>(path: string, body: (fd: number) => Promise<T>): Promise<T> {
  const fd = openFile(path, O_RDONLY | O_CLOEXEC);
  try {
    return await body(fd);
  } finally {
    closeFd(fd);
  }
}

test("a kernel image or initrd over the kernel's 4 GiB maximum is refused with EFBIG before luod reads it", async () => {
  const huge = join(luod.dir, "huge-bzImage");
  sparseBzImage(huge, 1024 * GiB); // 1 TiB: hashing it would take luod most of an hour
  const small = join(luod.dir, "small-bzImage");
  sparseBzImage(small, 8 << 20);
  const p = RawPeer.connect(luod.socket);
  try {
    await withFile(huge, async (fd) => {
      const r = await p.request(load(false), [fd], 10_000);
      expect(code(r)).toBe("EFBIG");
      expect((r!.error as { message: string }).message).toContain("over the kernel's maximum of 4294967296");
    });
    await withFile(small, (k) => withFile(huge, async (i) => {
      const r = await p.request(load(true), [k, i], 10_000);
      expect(code(r)).toBe("EFBIG");
      expect((r!.error as { message: string }).message).toContain("the initrd is");
    }));
  } finally {
    p.close();
    rmSync(huge);
    rmSync(small);
  }
});

test("while luod hashes a big image, another connection's STATUS is answered before the LOAD's reply", async () => {
  const big = join(luod.dir, "big-bzImage");
  sparseBzImage(big, 256 << 20);
  const loader = RawPeer.connect(luod.socket);
  const other = RawPeer.connect(luod.socket);
  try {
    await withFile(big, async (fd) => {
      expect(await loader.sendAll(JSON.stringify(load(false)) + "\n", [fd])).toBe(true);
      // luod says (--verbose) when it starts hashing; the STATUS goes out after that
      for (let i = 0; i < 500 && !luod.logs().includes("LOAD: hashing the kernel image"); i++) await Bun.sleep(10);
      const status = await other.request({ cmd: "STATUS" }, [], 30_000);
      expect(status).toMatchObject({ reply: "STATUS", ok: true });
      loader.pump();
      expect(loader.lines).toEqual([]); // the LOAD is still being hashed
      const r = await loader.next(60_000);
      expect(r).toMatchObject({ reply: "LOAD", ok: false });
      expect(code(r)).toBe("ENOEXEC"); // the wrong sha256: the whole image was hashed
      expect((r!.error as { message: string }).message).toContain(`expected ${WRONG_SHA}`);
    });
  } finally {
    loader.close();
    other.close();
    rmSync(big);
  }
});

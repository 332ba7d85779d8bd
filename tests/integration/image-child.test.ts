// luod reads a kernel image's ABI in a child process: this binary started again as
// `luo --internal-image-abi OFFSET LENGTH MAX` with the image on stdin (src/daemon/image-reader.ts,
// image-child.ts). Here with the compiled binary: the child's own command line, and luod using it
// for `luoctl check --kernel`, also after its own file was deleted (a package upgrade), since the
// child is /proc/self/exe, the running luod's version.
import { afterAll, describe, expect, test } from "bun:test";
import { copyFileSync, mkdtempSync, openSync, closeSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LUO, requireBinary, run, startDaemon } from "../support/binary";
import { bzImageWithPayload, fakeVmlinux } from "../support/bzimage";
import { lz4Legacy } from "../support/lz4";
import { inspectKernelImage } from "../../src/daemon/bzimage";

const dir = mkdtempSync(join(tmpdir(), "luo-image-child-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const bytes = bzImageWithPayload(lz4Legacy(fakeVmlinux()));
const image = join(dir, "bzImage");
writeFileSync(image, bytes);
const info = inspectKernelImage(bytes, bytes.length);
if (!info.ok) throw new Error(info.reason);
const expected = { luo: "luo-v5", memfd: "memfd-v2", kho: "kho-v4" };

/** dist/luo (or `exe`) as the child, the image on its stdin. */
function child(args: string[], exe = LUO) {
  const fd = openSync(image, "r");
  try {
    const r = Bun.spawnSync({ cmd: [exe, ...args], stdin: fd, stdout: "pipe", stderr: "pipe" });
    return { code: r.exitCode, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
  } finally {
    closeSync(fd);
  }
}

describe("the image reader's child", () => {
  test("reads the image on its stdin and prints one JSON line, whatever name it was started by", () => {
    requireBinary();
    const args = ["--internal-image-abi", String(info.payloadOffset), String(info.payloadLength), String(256 << 20)];
    for (const exe of [LUO, join(LUO, "../luod")]) {
      const r = child(args, exe);
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expect(r.stdout.trim().split("\n")).toHaveLength(1);
      expect(JSON.parse(r.stdout)).toMatchObject({ ok: true, compression: "lz4", ...expected });
    }
  });

  test("a bad command line is one usage line and exit 2", () => {
    requireBinary();
    const r = child(["--internal-image-abi", "1", "x"]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toContain("usage: luo --internal-image-abi OFFSET LENGTH MAX");
  });

  test("luod shows a new kernel's ABI through it, also once its own binary file is gone", async () => {
    requireBinary();
    const bin = mkdtempSync(join(dir, "bin-"));
    copyFileSync(LUO, join(bin, "luo"));
    symlinkSync("luo", join(bin, "luod"));
    const luod = await startDaemon(["--device", "/nonexistent/liveupdate"], { dir: bin, exe: join(bin, "luod") });
    try {
      const check = async () => JSON.parse((await run("luoctl", ["--socket", luod.socket, "check", "--kernel", image, "--json"])).stdout);
      expect((await check()).abi.next).toEqual(expected);
      rmSync(join(bin, "luo")); // what a package upgrade does to the running binary's file
      expect((await check()).abi.next).toEqual(expected);
    } finally {
      await luod.stop();
    }
  }, 30_000);
});

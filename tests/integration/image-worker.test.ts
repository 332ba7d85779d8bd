// readImageAbi's Worker (src/daemon/image-worker.ts) must load both from source and inside a
// `bun build --compile` binary, where it is a second entry point (scripts/build-binary.ts,
// docs/bun.md#the-compiled-binary). A test-only entry (tests/support/image-abi-entry.ts) runs the
// wrapper on a synthetic lz4 image, under bun and compiled the way dist/luo is.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LUO, REPO, requireBinary } from "../support/binary";
import { bzImageWithPayload, fakeVmlinux } from "../support/bzimage";
import { lz4Legacy } from "../support/lz4";

const dir = mkdtempSync(join(tmpdir(), "luo-image-worker-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const image = join(dir, "bzImage");
writeFileSync(image, bzImageWithPayload(lz4Legacy(fakeVmlinux())));
const ENTRY = "tests/support/image-abi-entry.ts";

function runJson(cmd: string[]): { code: number; out: Record<string, unknown>; stderr: string } {
  const r = Bun.spawnSync({ cmd, cwd: REPO, stdout: "pipe", stderr: "pipe" });
  const text = r.stdout.toString().trim();
  let out: Record<string, unknown> = {};
  try {
    out = JSON.parse(text) as Record<string, unknown>;
  } catch {
    out = { unparsed: text };
  }
  return { code: r.exitCode ?? -1, out, stderr: r.stderr.toString() };
}

const expected = { ok: true, compression: "lz4", luo: "luo-v5", memfd: "memfd-v2", kho: "kho-v4" };

describe("the image reader's worker", () => {
  test("runs from source under bun", () => {
    const r = runJson([process.execPath, ENTRY, image]);
    expect(r.stderr).toBe("");
    expect(r.out).toMatchObject(expected);
  });

  test("runs inside a compiled binary where it is a second entry point (as in dist/luo)", () => {
    const out = join(dir, "image-abi");
    const build = Bun.spawnSync({
      cmd: [process.execPath, "build", "--compile", "--minify", "--bytecode", "--format=esm",
        "--no-compile-autoload-dotenv", "--no-compile-autoload-bunfig", ENTRY, "src/daemon/image-worker.ts", "--outfile", out],
      cwd: REPO, stdout: "pipe", stderr: "pipe",
    });
    expect(build.exitCode).toBe(0);
    const r = runJson([out, image]);
    expect(r.stderr).toBe("");
    expect(r.out).toMatchObject(expected);
  }, 60_000);

  test("dist/luo embeds it where image-reader.ts looks for it", () => {
    requireBinary();
    expect(readFileSync(LUO).includes("$bunfs/root/daemon/image-worker.js")).toBe(true);
  });
});

// `luoctl load` (the compiled binary) with files that are not regular files: refused at once with
// one line, whatever the file is; nothing is sent to luod.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { requireBinary, run } from "../support/binary";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "luoctl-load-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function fifo(name: string): string {
  const path = join(dir, name);
  expect(spawnSync("mkfifo", [path]).status).toBe(0);
  return path;
}

describe("luoctl load refuses what is not a regular file", () => {
  // Opening a FIFO for reading blocks until a writer comes: luoctl opens with O_NONBLOCK and
  // checks the type on the open fd. The bound is generous; without O_NONBLOCK it never returns.
  test("a FIFO as the kernel: exit 1 with one line, within seconds", async () => {
    requireBinary();
    const kernel = fifo("vmlinuz");
    const t0 = Date.now();
    const r = await run("luoctl", ["--socket", join(dir, "no.sock"), "load", kernel, "--cmdline", "x"], { timeoutMs: 10_000 });
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(r.stderr).toBe(`luoctl: kernel ${kernel} is not a regular file\n`);
    expect(r.code).toBe(1);
  });

  test("a FIFO as the initrd, and a directory as the kernel: the same", async () => {
    requireBinary();
    const kernel = join(dir, "vmlinuz");
    writeFileSync(kernel, "K");
    const initrd = fifo("initrd");
    const r = await run("luoctl", ["--socket", join(dir, "no.sock"), "load", kernel, "--initrd", initrd, "--cmdline", "x"], { timeoutMs: 10_000 });
    expect(r.stderr).toBe(`luoctl: initrd ${initrd} is not a regular file\n`);
    expect(r.code).toBe(1);
    const sub = join(dir, "sub");
    mkdirSync(sub);
    const d = await run("luoctl", ["--socket", join(dir, "no.sock"), "load", sub, "--cmdline", "x"], { timeoutMs: 10_000 });
    expect(d.stderr).toBe(`luoctl: kernel ${sub} is not a regular file\n`);
    expect(d.code).toBe(1);
  });
});

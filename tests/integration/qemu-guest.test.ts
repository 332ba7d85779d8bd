// tests/vm/guest/guest-ram.ts, the reader of the QEMU test guest's RAM, tells a damaged RAM from a good one.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const REPO = resolve(import.meta.dir, "../..");
const GUEST_RAM = join(REPO, "tests/vm/guest/guest-ram.ts");
const MIB = 1024 * 1024;

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "qemu-guest-"));
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function run(argv: string[]): { code: number; out: string; err: string } {
  const p = Bun.spawnSync(argv, { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  return { code: p.exitCode ?? -1, out: p.stdout.toString(), err: p.stderr.toString() };
}

const guestRam = (file: string) => run([process.execPath, GUEST_RAM, file]);

/** A RAM image as the guest leaves it: counter, marker "LUO!" and the pattern, written here from the spec. */
function goodRam(counter: number): Buffer {
  const ram = Buffer.alloc(1 * MIB);
  ram.writeUInt32LE(counter, 0x500);
  ram.write("LUO!", 0x504, "latin1");
  for (let a = 0x10000; a < 0x90000; a += 4) ram.writeUInt32LE((a ^ 0x5a5a5a5a) >>> 0, a);
  return ram;
}

describe("guest-ram.ts", () => {
  test("a RAM holding the counter, the marker and the whole pattern passes", () => {
    const file = join(dir, "good.ram");
    writeFileSync(file, goodRam(123456789));
    const r = guestRam(file);
    expect(r.out).toBe("COUNTER 123456789\nMARKER ok\nPATTERN ok\n");
    expect(r.code).toBe(0);
  });

  test("one flipped dword in the pattern is reported at its address", () => {
    const file = join(dir, "flipped.ram");
    const ram = goodRam(7);
    ram.writeUInt32LE(ram.readUInt32LE(0x4567c) ^ 0x00010000, 0x4567c);
    writeFileSync(file, ram);
    const r = guestRam(file);
    expect(r.out).toBe("COUNTER 7\nMARKER ok\nPATTERN bad at 0x4567c\n");
    expect(r.code).toBe(1);
  });

  test("the last dword of the region is checked too", () => {
    const file = join(dir, "last.ram");
    const ram = goodRam(7);
    ram.writeUInt32LE(0, 0x8fffc);
    writeFileSync(file, ram);
    expect(guestRam(file).out).toContain("PATTERN bad at 0x8fffc\n");
  });

  test("a RAM without the boot marker fails", () => {
    const file = join(dir, "nomarker.ram");
    const ram = goodRam(7);
    ram.writeUInt32LE(0, 0x504);
    writeFileSync(file, ram);
    const r = guestRam(file);
    expect(r.out).toBe("COUNTER 7\nMARKER bad\nPATTERN ok\n");
    expect(r.code).toBe(1);
  });

  test("a file too short to be the guest's RAM is one line on stderr and exit 2", () => {
    const file = join(dir, "short.ram");
    writeFileSync(file, goodRam(7).subarray(0, 0x80000));
    const r = guestRam(file);
    expect(r.out).toBe("");
    expect(r.err).toBe(`guest-ram: ${JSON.stringify(file)}: the file ends before 0x90000: it is not the guest's RAM\n`);
    expect(r.code).toBe(2);
  });
});

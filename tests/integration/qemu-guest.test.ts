// The QEMU test guest (examples/qemu/counter-guest.S, built by build-guest.sh) on this host, no
// LUO involved: under plain TCG it boots once, counts, prints to COM1 and leaves its marker and
// its pattern in the RAM file QEMU maps, where tests/vm/guest/guest-ram.ts finds them (built
// --idle, it halts after the pattern instead); and
// guest-ram.ts tells a damaged RAM from a good one. The live update of this guest: tests/vm.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const REPO = resolve(import.meta.dir, "../..");
const BUILD = join(REPO, "examples/qemu/build-guest.sh");
const GUEST_RAM = join(REPO, "tests/vm/guest/guest-ram.ts");
const QEMU = Bun.which("qemu-system-x86_64");
if (!QEMU) console.warn("tests/integration/qemu-guest: SKIPPING the QEMU guest run: qemu-system-x86_64 is missing");

const MIB = 1024 * 1024;
const RAM_BYTES = 16 * MIB;

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

describe("build-guest.sh", () => {
  test("builds a 64 KiB image whose reset vector is the far jump to F000:0000", () => {
    const img = join(dir, "built.bin");
    const r = run([BUILD, img]);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    const bytes = readFileSync(img);
    expect(bytes.length).toBe(65536);
    expect([...bytes.subarray(0xfff0, 0xfff5)]).toEqual([0xea, 0x00, 0x00, 0x00, 0xf0]);
  });

  test("without OUT it says how to call it and fails", () => {
    const r = run([BUILD]);
    expect(r.err).toBe("build-guest: usage: build-guest.sh OUT [--idle]\n");
    expect(r.code).toBe(1);
  });

  test("an option other than --idle is refused the same way", () => {
    const r = run([BUILD, join(dir, "x.bin"), "--busy"]);
    expect(r.err).toBe("build-guest: usage: build-guest.sh OUT [--idle]\n");
    expect(r.code).toBe(1);
  });
});

/** Polls `file` until `done(text)`, at most `ms`; returns the last text seen. */
async function waitFile(file: string, done: (text: string) => boolean, ms: number, alive: () => boolean) {
  const until = Date.now() + ms;
  let text = "";
  while (Date.now() < until && alive()) {
    text = existsSync(file) ? readFileSync(file, "latin1") : "";
    if (done(text)) return text;
    await Bun.sleep(25);
  }
  return text;
}

/** Builds the guest (build-guest.sh OUT ...flags) and runs it under TCG on a 16 MiB RAM file of 0xA5 bytes. */
function startGuest(name: string, flags: string[] = []) {
  const img = join(dir, `${name}.bin`);
  expect(run([BUILD, img, ...flags]).err).toBe("");
  const ramFile = join(dir, `${name}.ram`);
  // 0xA5 everywhere: a guest that did not write its marker and pattern, or did not zero its
  // counter at boot, shows it (the counter would start at 0xa5a5a5a5)
  writeFileSync(ramFile, Buffer.alloc(RAM_BYTES, 0xa5));
  const log = join(dir, `${name}-serial.log`);
  const qemu = Bun.spawn([
    QEMU!, "-machine", "pc-i440fx-7.2,memory-backend=ram0", "-m", "16M",
    "-object", `memory-backend-file,id=ram0,size=16M,mem-path=${ramFile},share=on`,
    "-bios", img, "-display", "none", "-nodefaults", "-serial", `file:${log}`, "-accel", "tcg",
  ], { stdin: "ignore", stdout: "ignore", stderr: "pipe" });
  return { qemu, ramFile, log };
}

const counts = (log: string) => [...log.matchAll(/^COUNT ([0-9a-f]{8})\r$/gm)].map((m) => parseInt(m[1]!, 16));

describe.skipIf(!QEMU)("the guest under QEMU (TCG)", () => {
  test("boots once, fills its pattern, keeps counting on COM1 and leaves counter, marker and pattern in its RAM file", async () => {
    const { qemu, ramFile, log } = startGuest("guest");
    let text: string;
    try {
      text = await waitFile(log, (t) => t.includes("PATTERN\r\n") && counts(t).length >= 3, 15_000,
        () => qemu.exitCode === null);
    } finally {
      qemu.kill("SIGKILL");
      await qemu.exited;
    }
    text = readFileSync(log, "latin1");
    const why = `serial log: ${JSON.stringify(text.slice(0, 300))}; QEMU: ${await new Response(qemu.stderr).text()}`;
    expect(text.startsWith("BOOT\r\nPATTERN\r\nCOUNT "), why).toBe(true);
    expect(text.split("BOOT").length - 1).toBe(1);
    const seen = counts(text);
    expect(seen.length, why).toBeGreaterThanOrEqual(3);
    for (let i = 1; i < seen.length; i++) expect(seen[i]!).toBeGreaterThan(seen[i - 1]!);
    expect(seen[0]!).toBeLessThan(0xa5a5a5a5);

    const r = guestRam(ramFile);
    expect(r.out).toMatch(/^COUNTER \d+\nMARKER ok\nPATTERN ok\n$/);
    expect(r.code).toBe(0);
    expect(Number(/^COUNTER (\d+)/.exec(r.out)![1])).toBeGreaterThanOrEqual(seen.at(-1)!);
  }, 20_000);

  test("--idle: boots once, fills its pattern, then halts without counting (the blackout benchmark's tenant)", async () => {
    const { qemu, ramFile, log } = startGuest("idle", ["--idle"]);
    let ram: { code: number; out: string };
    try {
      await waitFile(log, (t) => t.includes("PATTERN\r\n"), 15_000, () => qemu.exitCode === null);
      // read while QEMU runs: a counting guest is past 0 microseconds after PATTERN
      ram = guestRam(ramFile);
    } finally {
      qemu.kill("SIGKILL");
      await qemu.exited;
    }
    expect(readFileSync(log, "latin1")).toBe("BOOT\r\nPATTERN\r\n");
    expect(ram.out).toBe("COUNTER 0\nMARKER ok\nPATTERN ok\n");
    expect(ram.code).toBe(0);
  }, 20_000);
});

// Reads the RAM of examples/qemu/counter-guest.S, as the file QEMU maps (the memfd through
// /proc/PID/fd/N, or a plain file), and says what the guest left there:
//
//   bun tests/vm/guest/guest-ram.ts FILE
//
//   COUNTER <decimal>                  the 32-bit counter at physical 0x500
//   MARKER ok|bad                      the boot marker 0x214F554C ("LUO!") at 0x504
//   PATTERN ok | PATTERN bad at 0x<a>  every dword A of 0x10000..0x8FFFF holds A ^ 0x5A5A5A5A;
//                                      else the first one that does not
//
// Exit 0 when the marker and the pattern are ok, 1 when not, 2 when FILE cannot be read (one
// line on stderr). Only the two ranges are read (pread), not the whole RAM.
import { closeSync, openSync, readSync } from "node:fs";

export const COUNTER_AT = 0x500;
export const MARKER_AT = 0x504;
export const MARKER_WORD = 0x214f554c;
export const PATTERN_FROM = 0x10000;
export const PATTERN_TO = 0x90000;
export const PATTERN_XOR = 0x5a5a5a5a;

export interface GuestRam {
  counter: number;
  markerOk: boolean;
  /** The physical address of the first dword that breaks the pattern, or null. */
  patternBadAt: number | null;
}

function readAt(fd: number, position: number, length: number): Buffer {
  const buf = Buffer.alloc(length);
  let got = 0;
  while (got < length) {
    const n = readSync(fd, buf, got, length - got, position + got);
    if (n === 0) throw new Error(`the file ends before 0x${(position + length).toString(16)}: it is not the guest's RAM`);
    got += n;
  }
  return buf;
}

export function readGuestRam(path: string): GuestRam {
  const fd = openSync(path, "r");
  try {
    const head = readAt(fd, COUNTER_AT, 8);
    const region = readAt(fd, PATTERN_FROM, PATTERN_TO - PATTERN_FROM);
    let patternBadAt: number | null = null;
    for (let off = 0; off < region.length; off += 4) {
      const addr = PATTERN_FROM + off;
      if (region.readUInt32LE(off) !== (addr ^ PATTERN_XOR) >>> 0) {
        patternBadAt = addr;
        break;
      }
    }
    return { counter: head.readUInt32LE(0), markerOk: head.readUInt32LE(4) === MARKER_WORD, patternBadAt };
  } finally {
    closeSync(fd);
  }
}

/** The three lines the script prints. */
export function describeGuestRam(ram: GuestRam): string {
  const pattern = ram.patternBadAt === null ? "PATTERN ok" : `PATTERN bad at 0x${ram.patternBadAt.toString(16)}`;
  return `COUNTER ${ram.counter}\nMARKER ${ram.markerOk ? "ok" : "bad"}\n${pattern}\n`;
}

if (import.meta.main) {
  const path = process.argv[2];
  if (process.argv.length !== 3 || !path) {
    process.stderr.write("usage: bun tests/vm/guest/guest-ram.ts FILE\n");
    process.exit(2);
  }
  let ram: GuestRam;
  try {
    ram = readGuestRam(path);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why = err.code ? `${err.syscall ?? "read"} failed: ${err.code}` : err.message;
    process.stderr.write(`guest-ram: ${JSON.stringify(path)}: ${why}\n`);
    process.exit(2);
  }
  process.stdout.write(describeGuestRam(ram));
  process.exit(ram.markerOk && ram.patternBadAt === null ? 0 : 1);
}

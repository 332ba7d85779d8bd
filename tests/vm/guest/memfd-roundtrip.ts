// Guest half of tests/vm/memfd-roundtrip.test.ts, run in the VM by jobs/memfd-roundtrip.sh:
//
//   bun memfd-roundtrip.ts stage1   cold boot: preserve a memfd full of a known pattern in a
//                                   LUO session, then kexec into the same kernel while this
//                                   process still holds the session fd
//   bun memfd-roundtrip.ts stage2   after the kexec: get the session and the memfd back,
//                                   check every byte, finish the session
//
// Only our own kernel layer (src/kernel) talks to the kernel. Env: MEMFD_MIB (default 16).
import { readFileSync } from "node:fs";
import { closeFd, fileSize, openFile, readFull, writeFull } from "../../../src/kernel/fd.ts";
import { kexecFileLoad, rebootKexec, syncFilesystems } from "../../../src/kernel/kexec.ts";
import {
  createSession,
  finishSession,
  getSessionName,
  preserveFd,
  retrieveFd,
  retrieveSession,
  withLiveupdateDevice,
} from "../../../src/kernel/liveupdate.ts";
import { memfdCreate } from "../../../src/kernel/memfd.ts";

const SESSION = "vm-memfd-roundtrip";
const TOKEN = 0x1234n;
const SIZE = Number(process.env.MEMFD_MIB ?? "16") * 1024 * 1024;
const CHUNK = 1024 * 1024;
const share = process.env.LUO_SHARE ?? "/mnt/share";

const t0 = performance.now();
const log = (msg: string) => console.log(`ROUNDTRIP[${process.argv[2]}] +${(performance.now() - t0).toFixed(0)}ms ${msg}`);

/**
 * The expected content of [offset, offset + out.length): xorshift32 of the byte offset of every
 * 4-byte word, so any chunk can be regenerated on its own and a misplaced page shows up.
 */
function pattern(offset: number, out: Uint8Array): Uint8Array {
  const words = new Uint32Array(out.buffer, out.byteOffset, out.length / 4);
  for (let i = 0; i < words.length; i++) {
    let x = (offset + i * 4) ^ 0x9e3779b9;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x >>> 0;
  }
  return out;
}

function stage1(): void {
  const memfd = memfdCreate("roundtrip");
  const buf = new Uint8Array(new ArrayBuffer(CHUNK));
  for (let off = 0; off < SIZE; off += CHUNK) writeFull(memfd, pattern(off, buf), off);
  log(`memfd filled with ${SIZE} bytes`);

  const session = withLiveupdateDevice((dev) => createSession(dev, SESSION));
  preserveFd(session, memfd, TOKEN, SESSION);
  closeFd(memfd); // LUO holds its own reference; the session fd is what must stay open
  log(`preserved in session "${getSessionName(session)}" (fd ${session}) as token 0x${TOKEN.toString(16)}`);

  const kernel = openFile(`${share}/boot/bzImage`);
  const initrd = openFile(`${share}/boot/initramfs`);
  const cmdline = readFileSync("/proc/cmdline", "utf8").trim();
  kexecFileLoad(kernel, initrd, cmdline);
  closeFd(kernel);
  closeFd(initrd);
  log(`kexec_file_load done, cmdline: ${cmdline}`);

  syncFilesystems();
  log("reboot(KEXEC)");
  rebootKexec(); // returns only by throwing
}

function stage2(): void {
  const session = withLiveupdateDevice((dev) => retrieveSession(dev, SESSION));
  const memfd = retrieveFd(session, TOKEN, SESSION);
  const size = fileSize(memfd);
  log(`retrieved session "${getSessionName(session)}" and token 0x${TOKEN.toString(16)}: ${size} bytes`);
  if (size !== SIZE) throw new Error(`size ${size}, expected ${SIZE}`);

  const got = new Uint8Array(new ArrayBuffer(CHUNK));
  const want = new Uint8Array(new ArrayBuffer(CHUNK));
  for (let off = 0; off < SIZE; off += CHUNK) {
    const n = readFull(memfd, got, off);
    pattern(off, want);
    if (n !== CHUNK) throw new Error(`short read at ${off}: ${n} bytes`);
    if (Buffer.compare(got, want) !== 0) {
      const i = got.findIndex((b, j) => b !== want[j]);
      throw new Error(`mismatch at byte ${off + i}: ${got[i]} != ${want[i]}`);
    }
  }
  finishSession(session, SESSION);
  closeFd(memfd);
  closeFd(session);
  console.log(`VERIFIED ${SIZE} bytes`);
  log("session finished");
}

const stage = process.argv[2];
if (stage === "stage1") stage1();
else if (stage === "stage2") stage2();
else {
  console.error("usage: memfd-roundtrip.ts stage1|stage2");
  process.exit(2);
}

// The floor of `luoctl status`: the smallest one-shot client a Bun binary can be. Blocking
// connect, one write, poll + read until the newline, print — no epoll worker, no cac, no
// valibot. Compiled like dist/luo (bench/run.ts), so its whole-process time next to luoctl's shows
// what luoctl adds on top of the runtime and luod's reply.
//   luo-probe SOCKET            print the STATUS reply
//   luo-probe SOCKET --client   the same through LuoClient (what luoctl uses)
//   luo-probe SOCKET --time N   N fresh connections in this process; print µs per connect→reply
//   luo-probe SOCKET --kexec-dry-run TIMEOUT_MS
//                               a lean admin: KEXEC dry run, PROGRESS lines counted but not parsed,
//                               prints {reply, progress_events, progress_bytes, wall_ms}. luoctl
//                               parses and prints every PROGRESS; at 1000 clients luod then drops it
//                               as a slow consumer, so the barrier numbers come from this one.
import { unixConnect, waitFd } from "../src/kernel/unix";
import { MessageIo } from "../src/kernel/scm-rights";
import { closeFd, writeFull } from "../src/kernel/fd";
import { Errno } from "../src/kernel/libc";

const socket = process.argv[2] ?? "/run/luod/liveupdate.sock";
const req = new TextEncoder().encode('{"cmd":"STATUS"}\n');
const buf = new Uint8Array(new ArrayBuffer(4 << 20)); // STATUS after a big restore is long
const io = new MessageIo();
const FOREVER_MS = 3_600_000;

/**
 * The next bytes from `fd` into io.buffer: their count, or <= 0 at EOF (-errno on an error).
 * Poll, then one recvmsg: the syscalls luoctl's one-shot client (src/client/oneshot.ts) makes.
 */
function receive(fd: number): number {
  for (;;) {
    waitFd(fd, "read", FOREVER_MS);
    const fds: number[] = [];
    const n = io.receive(fd, fds);
    for (const f of fds) closeFd(f); // luod sends none with these replies
    if (n !== -Errno.EAGAIN) return n;
  }
}

function once(): number {
  const fd = unixConnect(socket);
  try {
    writeFull(fd, req);
    let n = 0;
    for (;;) {
      const r = receive(fd);
      if (r <= 0) throw new Error(`read: ${r}`);
      if (n + r > buf.length) throw new Error(`the reply is longer than ${buf.length} bytes`);
      buf.set(io.buffer.subarray(0, r), n);
      n += r;
      if (buf.subarray(0, n).includes(10)) return n;
    }
  } finally {
    closeFd(fd);
  }
}

/** Reads until the KEXEC reply line; PROGRESS lines are only counted. */
function kexecDryRun(timeoutMs: number): void {
  const t0 = performance.now();
  const fd = unixConnect(socket);
  writeFull(fd, new TextEncoder().encode(JSON.stringify({ cmd: "KEXEC", dry_run: true, timeout_ms: timeoutMs }) + "\n"));
  const big = new Uint8Array(new ArrayBuffer(1 << 20));
  let have = 0;
  let events = 0;
  let bytes = 0;
  const dec = new TextDecoder();
  for (;;) {
    const r = receive(fd);
    if (r <= 0) {
      console.log(JSON.stringify({ reply: null, error: `connection closed by luod (read ${r})`, progress_events: events, progress_bytes: bytes, wall_ms: performance.now() - t0 }));
      process.exit(1);
    }
    if (have + r > big.length) throw new Error(`a line is longer than ${big.length} bytes`);
    big.set(io.buffer.subarray(0, r), have);
    bytes += r;
    have += r;
    let start = 0;
    for (let nl = big.indexOf(10, start); nl >= 0 && nl < have; nl = big.indexOf(10, start)) {
      // a reply starts with {"reply" (luod puts it first); anything else is an event
      const head = dec.decode(big.subarray(start, Math.min(nl, start + 12)));
      if (head.startsWith('{"reply"')) {
        const reply = JSON.parse(dec.decode(big.subarray(start, nl)));
        closeFd(fd);
        console.log(JSON.stringify({ reply, progress_events: events, progress_bytes: bytes, wall_ms: performance.now() - t0 }));
        process.exit(reply.ok ? 0 : 1);
      }
      events++;
      start = nl + 1;
    }
    big.copyWithin(0, start, have);
    have -= start;
  }
}

// The same one-shot STATUS through LuoClient (src/client: an EventLoop, i.e. an epoll Worker
// thread, per client), loaded only here: its whole-process time minus the blocking probe's is
// what the client library's machinery costs a one-shot command.
if (process.argv.includes("--client")) {
  const { LuoClient } = await import("../src/client");
  const c = await LuoClient.connect(socket);
  const r = await c.request({ cmd: "STATUS" });
  process.stdout.write(JSON.stringify(r) + "\n");
  c.close();
  process.exit(0);
}

const k = process.argv.indexOf("--kexec-dry-run");
if (k > 0) kexecDryRun(Number(process.argv[k + 1] ?? 300_000));

const i = process.argv.indexOf("--time");
if (i > 0) {
  const count = Number(process.argv[i + 1] ?? 100);
  const us: number[] = [];
  for (let k = 0; k < count; k++) {
    const t = performance.now();
    once();
    us.push((performance.now() - t) * 1000);
  }
  us.sort((a, b) => a - b);
  console.log(JSON.stringify({ count, p50_us: Math.round(us[count >> 1]!), p99_us: Math.round(us[Math.floor(count * 0.99)]!), min_us: Math.round(us[0]!) }));
} else {
  const n = once();
  process.stdout.write(new TextDecoder().decode(buf.subarray(0, n)));
}

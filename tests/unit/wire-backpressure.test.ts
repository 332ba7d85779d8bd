// Connection bounds against hostile or stalled peers: backpressure per line (a burst of small
// requests with large replies never piles up output), fds piling up behind a line that never
// ends, and stray fds charged to the line they came with.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Connection, type ConnectionHandler } from "../../src/wire/connection";
import { EventLoop } from "../../src/kernel/epoll";
import { MessageIo } from "../../src/kernel/scm-rights";
import { socketPair } from "../../src/kernel/unix";
import { closeFd } from "../../src/kernel/fd";
import { fdsOpenedSince, openFds } from "../support/open-fds";
import { memfdCreate } from "../../src/kernel/memfd";
import { Errno } from "../../src/kernel/libc";

const enc = new TextEncoder();
let loop: EventLoop;
beforeAll(async () => {
  loop = new EventLoop();
  // warm the loop's worker up so that fd counts are stable
  const [a, b] = socketPair({ nonblock: true });
  let fired = false;
  loop.watch(a!, 0x001, () => (fired = true));
  new MessageIo().send(b!, enc.encode("x"));
  await until(() => fired, "warm-up");
  loop.unwatch(a!);
  closeFd(a!);
  closeFd(b!);
});
afterAll(async () => {
  loop.close();
  await loop.closed;
});

async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(1);
  }
}

class Echo implements ConnectionHandler {
  conn!: Connection;
  received = 0;
  invalid: string[] = [];
  closes: string[] = [];
  maxQueued = 0;
  constructor(private readonly replyBytes: number) {}
  onMessage(msg: Record<string, unknown>, fds: number[]): void {
    for (const fd of fds) closeFd(fd);
    this.received++;
    this.conn.send({ reply: "X", ok: true, n: msg.n, pad: "p".repeat(this.replyBytes) });
    this.maxQueued = Math.max(this.maxQueued, this.conn.queuedBytes);
  }
  onInvalid(_code: string, message: string): void {
    this.invalid.push(message);
  }
  onClose(reason: string): void {
    this.closes.push(reason);
  }
}

function setup(handler: Echo, opts?: ConstructorParameters<typeof Connection>[3]) {
  const [a, b] = socketPair({ nonblock: true });
  handler.conn = new Connection(a!, loop, handler, opts);
  return { peerFd: b!, io: new MessageIo({ bufferSize: 1 << 16, maxFds: 32 }) };
}

describe("backpressure", () => {
  test("a burst of small requests with large replies is taken line by line as the peer reads; nothing is lost or dropped", async () => {
    const h = new Echo(2000);
    const { peerFd, io } = setup(h, { maxQueuedBytes: 256 * 1024 });
    const burst = enc.encode(Array.from({ length: 3000 }, (_, n) => JSON.stringify({ cmd: "STATUS", n }) + "\n").join(""));
    let sent = 0;
    const got: number[] = [];
    let partial = "";
    const dec = new TextDecoder();
    // the peer writes everything first (as far as the socket takes it), reading only when stuck
    while (got.length < 3000) {
      if (sent < burst.length) {
        const n = io.send(peerFd, burst.subarray(sent));
        if (n > 0) {
          sent += n;
          continue;
        }
        expect(n).toBe(-Errno.EAGAIN);
      }
      await Bun.sleep(2);
      for (;;) {
        const n = io.receive(peerFd, []);
        if (n <= 0) break;
        const parts = (partial + dec.decode(io.buffer.subarray(0, n), { stream: true })).split("\n");
        partial = parts.pop()!;
        for (const p of parts) got.push(JSON.parse(p).n);
      }
      if (h.closes.length) break;
    }
    expect(h.closes).toEqual([]);
    expect(got).toEqual(Array.from({ length: 3000 }, (_, n) => n));
    // output never went past a quarter of the slow-consumer limit by more than one reply
    expect(h.maxQueued).toBeLessThan(64 * 1024 + 2100);
    h.conn.close("done");
    closeFd(peerFd);
  });

  test("a peer that never reads stalls its own requests; the connection holds a bounded backlog", async () => {
    const h = new Echo(2000);
    const { peerFd, io } = setup(h, { maxQueuedBytes: 256 * 1024 });
    const line = enc.encode('{"cmd":"STATUS"}\n'.repeat(500));
    let stuck = 0;
    while (stuck < 20) {
      if (io.send(peerFd, line) > 0) stuck = 0;
      else {
        stuck++;
        await Bun.sleep(2);
      }
    }
    expect(h.closes).toEqual([]);
    expect(h.conn.queuedBytes).toBeLessThan(64 * 1024 + 2100);
    const served = h.received;
    await Bun.sleep(50);
    expect(h.received).toBe(served); // nothing more is taken while the peer does not read
    closeFd(peerFd);
    await until(() => h.closes.length === 1, "the close");
  });
});

describe("fds", () => {
  test("fds piling up behind a line that never ends are closed as they come; the line then fails", async () => {
    const h = new Echo(10);
    const { peerFd, io } = setup(h);
    const mine = [memfdCreate("a"), memfdCreate("b"), memfdCreate("c")];
    const base = openFds();
    io.send(peerFd, enc.encode('{"cmd":"LOAD",'), mine);
    for (let i = 0; i < 20; i++) {
      io.send(peerFd, enc.encode(" "), mine);
      await Bun.sleep(1);
    }
    await Bun.sleep(20);
    expect(fdsOpenedSince(base).length).toBeLessThanOrEqual(2); // at most one line's worth is held
    io.send(peerFd, enc.encode('"n":1}\n'));
    await until(() => h.invalid.length === 1, "the invalid line");
    expect(h.invalid[0]).toContain("more than the 2 a message may carry");
    expect(h.received).toBe(0);
    expect(h.conn.strayFds).toBe(63);
    expect(fdsOpenedSince(base)).toEqual([]); // the failed line's fds were closed too
    for (const fd of mine) closeFd(fd);
    h.conn.close("done");
    closeFd(peerFd);
  });

  test("surplus fds followed only by blank lines are charged to the line they came with", async () => {
    const h = new Echo(10);
    const { peerFd, io } = setup(h);
    const fd = memfdCreate("x");
    io.send(peerFd, enc.encode('{"cmd":"STATUS","n":1}\n\n \n'), [fd]);
    await until(() => h.invalid.length === 1, "the invalid line");
    expect(h.invalid[0]).toContain('1 fd(s) arrived that no line claimed; closed (the line says "fds": 0)');
    expect(h.received).toBe(0);
    closeFd(fd);
    h.conn.close("done");
    closeFd(peerFd);
  });
});

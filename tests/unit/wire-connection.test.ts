// Connection over real AF_UNIX socketpairs and the real epoll worker loop.
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { Connection, type ConnectionHandler } from "../../src/wire/connection";
import { LineFramer } from "../../src/wire/framing";
import { EventLoop } from "../../src/kernel/epoll";
import { MessageIo } from "../../src/kernel/scm-rights";
import { socketPair } from "../../src/kernel/unix";
import { closeFd, fdTarget, readFull, writeFull } from "../../src/kernel/fd";
import { fdsOpenedSince, openFds } from "../support/open-fds";
import { memfdCreate } from "../../src/kernel/memfd";

const enc = new TextEncoder();
let loop: EventLoop;
let baseline: Map<number, string>;

beforeAll(() => {
  loop = new EventLoop();
});
afterAll(async () => {
  loop.close();
  await loop.closed;
});

async function until(cond: () => boolean, what: string, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(1);
  }
}

/** Records everything a Connection reports. */
class Recorder implements ConnectionHandler {
  messages: { msg: Record<string, unknown>; fds: number[] }[] = [];
  invalid: { code: string; message: string; echo: object }[] = [];
  closes: string[] = [];
  onMessage(msg: Record<string, unknown>, fds: number[]): void {
    this.messages.push({ msg, fds });
  }
  onClose(reason: string): void {
    this.closes.push(reason);
  }
}
class RecorderWithInvalid extends Recorder {
  onInvalid(code: string, message: string, echo: object): void {
    this.invalid.push({ code, message, echo });
  }
}

function memfdWith(name: string, content: string): number {
  const fd = memfdCreate(name);
  writeFull(fd, enc.encode(content), 0);
  return fd;
}

function contentOf(fd: number): string {
  const buf = new Uint8Array(256);
  return new TextDecoder().decode(buf.subarray(0, readFull(fd, buf, 0)));
}

/** The raw far end of a socketpair, driven by hand. */
class Peer {
  readonly io = new MessageIo({ maxFds: 32 });
  readonly framer = new LineFramer();
  constructor(readonly fd: number) {}
  send(text: string | Uint8Array, fds: number[] = []): number {
    return this.io.send(this.fd, typeof text === "string" ? enc.encode(text) : text, fds);
  }
  /** Reads whatever is there now; returns complete lines (fds go to framer's queue). */
  readNow(): string[] {
    for (;;) {
      const fds: number[] = [];
      const n = this.io.receive(this.fd, fds);
      this.framer.pushFds(fds);
      if (n <= 0) break;
      this.framer.push(this.io.buffer.subarray(0, n));
    }
    const out: string[] = [];
    for (let l = this.framer.nextLine(); l !== null; l = this.framer.nextLine()) out.push(l);
    return out;
  }
  async readLines(n: number, ms = 3000): Promise<string[]> {
    const out: string[] = [];
    await until(() => (out.push(...this.readNow()), out.length >= n), `${n} lines from luod`, ms);
    return out;
  }
  close(): void {
    for (const fd of this.framer.drainFds()) closeFd(fd);
    closeFd(this.fd);
  }
}

function pair(handler: ConnectionHandler, opts?: ConstructorParameters<typeof Connection>[3]): { conn: Connection; peer: Peer } {
  const [a, b] = socketPair({ nonblock: true });
  return { conn: new Connection(a!, loop, handler, opts), peer: new Peer(b!) };
}

describe("Connection", () => {
  beforeAll(async () => {
    // Warm up: the loop's worker thread opens fds of its own (its event loop) when it starts;
    // measure the baseline only after one event went through it.
    const [a, b] = socketPair({ nonblock: true });
    let fired = false;
    loop.watch(a!, 0x001, () => (fired = true));
    new Peer(b!).send("x");
    await until(() => fired, "the warm-up event");
    loop.unwatch(a!);
    closeFd(a!);
    closeFd(b!);
    await Bun.sleep(10);
  });
  beforeEach(() => {
    baseline = openFds();
  });

  test("round trip between two connections carries fds and keeps the sender's", async () => {
    const [a, b] = socketPair({ nonblock: true });
    const ra = new Recorder();
    const rb = new Recorder();
    const ca = new Connection(a!, loop, ra);
    const cb = new Connection(b!, loop, rb);
    const m1 = memfdWith("wire-rt-1", "first");
    const m2 = memfdWith("wire-rt-2", "second");

    expect(ca.send({ cmd: "LOAD", cmdline: "x", initrd: true, fds: 2, tag: 1 }, [m1, m2])).toBe(true);
    expect(ca.send({ cmd: "STATUS", tag: 2 })).toBe(true);
    await until(() => rb.messages.length === 2, "two messages");
    const [load, status] = rb.messages;
    expect(load!.msg).toEqual({ cmd: "LOAD", cmdline: "x", initrd: true, fds: 2, tag: 1 });
    expect(load!.fds.map(contentOf)).toEqual(["first", "second"]);
    expect(fdTarget(load!.fds[0]!)).toContain("wire-rt-1");
    expect(status!.msg).toEqual({ cmd: "STATUS", tag: 2 });
    expect(status!.fds).toEqual([]);
    // the caller still owns its fds
    expect(contentOf(m1)).toBe("first");

    expect(cb.send({ event: "CLAIMED", reply: "CLAIM", ok: true, fds: 1 }, [m2])).toBe(true);
    await until(() => ra.messages.length === 1, "the reply");
    expect(contentOf(ra.messages[0]!.fds[0]!)).toBe("second");

    for (const fd of [m1, m2, ...load!.fds, ...ra.messages[0]!.fds]) closeFd(fd);
    ca.close("done");
    await until(() => rb.closes.length === 1, "the peer to see the close");
    expect(ra.closes).toEqual(["done"]);
    expect(rb.closes[0]).toMatch(/peer closed/);
    expect(ca.strayFds + cb.strayFds).toBe(0);
    expect(fdsOpenedSince(baseline)).toEqual([]);
  });

  test("a line and its fds split across two sendmsg calls are matched", async () => {
    const r = new Recorder();
    const { conn, peer } = pair(r);
    const m = memfdWith("wire-split", "split");
    expect(peer.send('{"cmd":"CLAIM","id":"vm', [m])).toBeGreaterThan(0);
    await Bun.sleep(20);
    expect(r.messages.length).toBe(0);
    peer.send('-42","fds":1}\n{"cmd":"READY"}\n');
    await until(() => r.messages.length === 2, "both lines");
    expect(r.messages[0]!.msg).toEqual({ cmd: "CLAIM", id: "vm-42", fds: 1 });
    expect(contentOf(r.messages[0]!.fds[0]!)).toBe("split");
    expect(r.messages[1]!.fds).toEqual([]);
    closeFd(r.messages[0]!.fds[0]!);
    closeFd(m);
    conn.close("done");
    peer.close();
    expect(conn.strayFds).toBe(0);
    expect(fdsOpenedSince(baseline)).toEqual([]);
  });

  test("queues writes when the peer does not read, then drains them on EPOLLOUT in order", async () => {
    const r = new Recorder();
    const { conn, peer } = pair(r, { maxQueuedBytes: 64 << 20 });
    const m = memfdWith("wire-queued", "queued");
    const pad = "p".repeat(4000);
    let sent = 0;
    // fill the socket buffer: keep sending until luod has to queue
    while (conn.queuedBytes === 0) {
      expect(conn.send({ event: "PROGRESS", n: sent++, pad })).toBe(true);
      if (sent > 100_000) throw new Error("the socket never filled");
    }
    // a few more, one carrying an fd that must arrive with its own line
    const withFd = sent;
    expect(conn.send({ event: "START_PRESERVATION", n: sent++, fds: 1 }, [m])).toBe(true);
    for (let i = 0; i < 5; i++) conn.send({ event: "PROGRESS", n: sent++, pad });
    expect(conn.queuedBytes).toBeGreaterThan(0);
    closeFd(m); // the connection holds a dup until it is sent

    const lines = await peer.readLines(sent, 10_000);
    const msgs = lines.map((l) => JSON.parse(l) as { n: number; fds?: number });
    expect(msgs.map((x) => x.n)).toEqual(Array.from({ length: sent }, (_, i) => i));
    // FIFO: the only line with fds gets the only fd
    for (const x of msgs) {
      const fds = peer.framer.takeFds(x.fds ?? 0);
      if (x.n === withFd) expect(contentOf(fds![0]!)).toBe("queued");
      for (const fd of fds ?? []) closeFd(fd);
    }
    expect(peer.framer.queuedFds).toBe(0);
    await until(() => conn.queuedBytes === 0, "the queue to drain");
    expect(conn.closed).toBe(false);
    conn.close("done");
    peer.close();
    expect(fdsOpenedSince(baseline)).toEqual([]);
  });

  test("closes a slow consumer once unsent output exceeds maxQueuedBytes", async () => {
    const r = new Recorder();
    const { conn, peer } = pair(r, { maxQueuedBytes: 100_000 });
    const m = memfdWith("wire-slow", "slow");
    const pad = "s".repeat(8000);
    let ok = true;
    let n = 0;
    while (ok && n < 10_000) ok = conn.send({ event: "PROGRESS", n: n++, pad, fds: n % 10 === 0 ? 1 : 0 }, n % 10 === 0 ? [m] : []);
    expect(ok).toBe(false);
    expect(conn.closed).toBe(true);
    expect(r.closes).toHaveLength(1);
    expect(r.closes[0]).toMatch(/slow consumer/);
    expect(conn.send({ event: "PROGRESS" })).toBe(false);
    closeFd(m);
    peer.close();
    // every queued dup was closed with the connection
    expect(fdsOpenedSince(baseline)).toEqual([]);
  });

  test("closes fds no line claims, counts them and reports EBADMSG for the line", async () => {
    const r = new RecorderWithInvalid();
    const { conn, peer } = pair(r);
    const m = memfdWith("wire-stray", "stray");
    peer.send('{"cmd":"STATUS","tag":"t1"}\n', [m]); // one fd, but the line claims none
    await until(() => r.invalid.length === 1, "the invalid report");
    expect(r.messages).toHaveLength(0);
    expect(r.invalid[0]).toMatchObject({ code: "EBADMSG", echo: { cmd: "STATUS", tag: "t1" } });
    expect(r.invalid[0]!.message).toMatch(/no line claimed/);
    expect(conn.strayFds).toBe(1);

    // a line that claims fds that never came
    peer.send('{"cmd":"CLAIM","id":"vm","fds":1}\n');
    await until(() => r.invalid.length === 2, "the second invalid report");
    expect(r.invalid[1]!.message).toMatch(/"fds": 1 but 0/);

    // bad fds values
    peer.send('{"cmd":"STATUS","fds":5}\n{"cmd":"STATUS","fds":"1"}\n');
    await until(() => r.invalid.length === 4, "fds value errors");
    expect(r.invalid[2]!.message).toMatch(/"fds" must be an integer from 0 to 2/);

    // the connection is still usable
    peer.send('{"cmd":"STATUS"}\n');
    await until(() => r.messages.length === 1, "a good message");
    expect(conn.closed).toBe(false);

    closeFd(m);
    // the stray dup luod received is closed: only the test's own fds are left
    conn.close("done");
    peer.close();
    expect(fdsOpenedSince(baseline)).toEqual([]);
  });

  test("without onInvalid, invalid lines get an EBADMSG error reply and the connection stays open", async () => {
    const r = new Recorder();
    const { conn, peer } = pair(r);
    peer.send('not json\n[1,2]\n{"cmd":"READY","tag":9,"fds":1}\n\n{"cmd":"READY"}\n');
    const lines = (await peer.readLines(3)).map((l) => JSON.parse(l));
    expect(lines[0]).toMatchObject({ reply: null, ok: false, error: { code: "EBADMSG" } });
    expect(lines[0].error.message).toMatch(/invalid JSON/);
    expect(lines[1]).toMatchObject({ reply: null, ok: false, error: { code: "EBADMSG" } });
    expect(lines[2]).toMatchObject({ reply: "READY", ok: false, tag: 9, error: { code: "EBADMSG" } });
    await until(() => r.messages.length === 1, "the valid line");
    expect(r.messages[0]!.msg).toEqual({ cmd: "READY" });
    expect(conn.invalidIn).toBe(3);
    expect(conn.closed).toBe(false);
    conn.close("done");
    peer.close();
  });

  test("a line over the limit gets EMSGSIZE, then the connection closes", async () => {
    const r = new Recorder();
    const { conn, peer } = pair(r);
    const m = memfdWith("wire-big", "big");
    peer.send('{"cmd":"STATUS"}\n');
    peer.send(new Uint8Array(70_000).fill(0x61), [m]);
    await until(() => r.closes.length === 1, "the close");
    expect(r.messages.map((x) => x.msg)).toEqual([{ cmd: "STATUS" }]); // lines before it were delivered
    expect(r.closes[0]).toMatch(/^EMSGSIZE/);
    const lines = peer.readNow();
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toMatchObject({ reply: null, ok: false, error: { code: "EMSGSIZE" } });
    expect(conn.closed).toBe(true);
    closeFd(m);
    peer.close();
    expect(fdsOpenedSince(baseline)).toEqual([]); // the fd that came with the long line was closed
  });

  test("MSG_CTRUNC (too many fds in one sendmsg) closes the connection and leaks nothing", async () => {
    const r = new Recorder();
    const { conn, peer } = pair(r);
    const m = memfdWith("wire-ctrunc", "x");
    peer.send('{"cmd":"STATUS"}\n', Array.from({ length: 20 }, () => m));
    await until(() => r.closes.length === 1, "the close");
    expect(r.closes[0]).toMatch(/MSG_CTRUNC/);
    expect(r.messages).toHaveLength(0);
    closeFd(m);
    peer.close();
    expect(conn.closed).toBe(true);
    expect(fdsOpenedSince(baseline)).toEqual([]);
  });

  test("close() is idempotent, calls onClose once and closes unclaimed received fds", async () => {
    const r = new Recorder();
    const { conn, peer } = pair(r);
    const m = memfdWith("wire-close", "c");
    peer.send('{"cmd":"LOAD","fds":1', [m]); // fds waiting for the rest of their line
    await Bun.sleep(30);
    conn.close("first");
    conn.close("second");
    expect(r.closes).toEqual(["first"]);
    expect(conn.closedReason).toBe("first");
    expect(conn.strayFds).toBe(1);
    expect(conn.send({ event: "X" })).toBe(false);
    closeFd(m);
    peer.close();
    expect(fdsOpenedSince(baseline)).toEqual([]);
  });

  test("the peer hanging up closes the connection with a reason", async () => {
    const r = new Recorder();
    const { conn, peer } = pair(r);
    peer.send('{"cmd":"SUBSCRIBE","id":"vm-1"}\n');
    peer.close();
    await until(() => r.closes.length === 1, "the close");
    expect(r.messages).toHaveLength(1);
    expect(r.closes[0]).toMatch(/peer closed the connection/);
    expect(conn.closed).toBe(true);
  });

  test("a handler that throws closes only its connection", async () => {
    const r = new Recorder();
    r.onMessage = () => {
      throw new Error("bug in handler");
    };
    const { conn, peer } = pair(r);
    const other = pair(new Recorder());
    peer.send('{"cmd":"STATUS"}\n');
    await until(() => r.closes.length === 1, "the close");
    expect(r.closes[0]).toMatch(/internal error.*bug in handler/);
    // the loop still serves other connections
    other.peer.send('{"cmd":"STATUS"}\n');
    await until(() => other.conn.messagesIn === 1, "the other connection");
    other.conn.close("done");
    other.peer.close();
    peer.close();
    expect(conn.closed).toBe(true);
  });

  test("send checks that fds and the fds field agree", () => {
    const r = new Recorder();
    const { conn, peer } = pair(r);
    const m = memfdWith("wire-check", "c");
    expect(() => conn.send({ event: "START_PRESERVATION" }, [m])).toThrow(RangeError);
    expect(() => conn.send({ event: "X", fds: 1 })).toThrow(RangeError);
    expect(() => conn.send({ event: "X", fds: 3 }, [m, m, m])).toThrow(RangeError);
    expect(() => conn.send({ pad: "x".repeat(70_000) })).toThrow(/EMSGSIZE|over the/);
    closeFd(m);
    conn.close("done");
    peer.close();
    expect(fdsOpenedSince(baseline)).toEqual([]);
  });
});

describe("Connection: sockets and waiting fds (issue 14, hole 1)", () => {
  test("refuseSockets: a received socket is closed at once and its line refused; other fds still match their lines", async () => {
    const h = new RecorderWithInvalid();
    const { conn, peer } = pair(h, { refuseSockets: true });
    const [s1, s2] = socketPair();
    const m = memfdWith("kept", "kept");
    try {
      peer.send('{"cmd":"A","fds":2}\n', [m, s1!]);
      peer.send('{"cmd":"B","fds":1}\n', [m]);
      await until(() => h.invalid.length === 1 && h.messages.length === 1, "one refused line and one message");
      expect(h.invalid[0]).toMatchObject({ code: "EBADMSG", echo: { cmd: "A" } });
      expect(h.invalid[0]!.message).toContain("socket");
      expect(h.messages[0]!.msg.cmd).toBe("B");
      expect(contentOf(h.messages[0]!.fds[0]!)).toBe("kept");
      closeFd(h.messages[0]!.fds[0]!);
      expect(conn.socketsRefused).toBe(1);
      expect(conn.strayFds).toBe(2); // the socket and the memfd that came with it
    } finally {
      conn.close("test");
      peer.close();
      for (const fd of [s1!, s2!, m]) closeFd(fd);
    }
  });

  test("fds ahead of a line that does not end in time are closed; the line, when it ends, is refused", async () => {
    const h = new RecorderWithInvalid();
    const { conn, peer } = pair(h, { partialLineFdTimeoutMs: 100 });
    const m = memfdWith("parked", "x");
    try {
      peer.send('{"cmd":"A","fds":1', [m]);
      await until(() => conn.strayFds === 1, "the parked fd closed");
      peer.send("}\n");
      await until(() => h.invalid.length === 1, "the refusal");
      expect(h.invalid[0]!.message).toContain("did not end within 100 ms");
      expect(h.messages).toHaveLength(0);
      expect(conn.closed).toBe(false);
    } finally {
      conn.close("test");
      peer.close();
      closeFd(m);
    }
  });

  /** A connection whose peer sends requests and never reads a reply, until luod's output waits. */
  async function backloggedConnection(opts: ConstructorParameters<typeof Connection>[3]) {
    const h = new RecorderWithInvalid();
    const [a, b] = socketPair({ nonblock: true });
    // tiny pause threshold: one reply stops reading
    const conn: Connection = new Connection(a!, loop, { ...h, onMessage: () => conn.send({ reply: "x".repeat(100) }), onInvalid: () => {}, onClose: (r) => h.closes.push(r) }, { refuseSockets: true, readPauseBytes: 1, maxQueuedBytes: 1 << 30, ...opts });
    const peer = new Peer(b!);
    for (let i = 0; i < 4000 && conn.queuedBytes === 0; i++) {
      peer.send('{"cmd":"S"}\n'.repeat(50));
      await Bun.sleep(0);
    }
    await until(() => conn.queuedBytes > 0, "output backlogged");
    return { conn, h, peer, peerFd: b! };
  }

  test("peerExited closes a connection whose replies are not read: its own socket parked unread in the queue cannot keep it", async () => {
    const { conn, h, peer, peerFd } = await backloggedConnection({});
    await Bun.sleep(20);
    expect(peer.send('{"cmd":"S"}\n', [peerFd])).toBeGreaterThan(0);
    closeFd(peerFd); // the peer "exits": its end survives only in flight, in conn's receive queue
    await Bun.sleep(50);
    expect(conn.closed).toBe(false); // paused: the socket waits unread, no EOF
    conn.peerExited();
    expect(conn.closed).toBe(true);
    expect(h.closes[0]).toMatch(/process has exited/);
    expect(fdsOpenedSince(baseline)).toEqual([]); // nothing parked in luod on the way out
  });

  test("peerExited of a peer that does not read parks nothing in luod: fds queued behind its unread requests are never taken", async () => {
    const { conn, peer, peerFd } = await backloggedConnection({});
    const m = memfdCreate("parked");
    for (let i = 0; i < 10; i++) expect(peer.send('{"cmd":"S","fds":2}\n', [m, m])).toBeGreaterThan(0);
    const before = openFds();
    conn.peerExited(); // a child still holds the peer's end: no EOF will come
    expect(conn.closed).toBe(true);
    expect(fdsOpenedSince(before)).toEqual([]);
    closeFd(m);
    closeFd(peerFd);
  });

  test("peerExited leaves a connection that luod still reads alone (a child may hold the socket)", async () => {
    const h = new Recorder();
    const { conn, peer } = pair(h, { refuseSockets: true });
    conn.peerExited();
    expect(conn.closed).toBe(false);
    peer.send('{"cmd":"STATUS"}\n');
    await until(() => h.messages.length === 1, "the request");
    conn.close("done");
    peer.close();
  });

  test("output that waits stalledOutputMs without the peer reading closes the connection (slow consumer)", async () => {
    const { conn, h, peerFd } = await backloggedConnection({ stalledOutputMs: 200 });
    await until(() => conn.closed, "the stall to close it", 3000);
    expect(h.closes[0]).toMatch(/slow consumer: .* nothing read for 200 ms/);
    closeFd(peerFd);
  });

  test("without stalledOutputMs a peer that does not read keeps its connection", async () => {
    const { conn, peerFd } = await backloggedConnection({});
    await Bun.sleep(400);
    expect(conn.closed).toBe(false);
    conn.close("done");
    closeFd(peerFd);
  });
});

// A scriptable stand-in for luod on a real unix socket, for tests of clients (ours and
// applications'): no root, no /dev/liveupdate. It speaks the framing of protocol v1 through the
// same Connection class luod uses, answers what its handlers say, and records every request.
//
//   const fake = await FakeLuod.start();                 // socket in a fresh temp dir
//   fake.handle("STATUS", () => ({ phase: "idle" }));    // → {"reply":"STATUS","ok":true,"phase":"idle"}
//   fake.handle("LOAD", () => { throw new FakeLuodError("EINVAL", "no liveupdate=on"); });
//   fake.handle("CLAIM", (req, fds, peer) => { peer.send({event:"CLAIMED", reply:"CLAIM", ok:true, fds:1}, [memfd]); return null; });
//   ... LuoClient.connect(fake.path) ...
//   fake.close();
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { acceptConnection, unixListen } from "../kernel/unix";
import { EPOLLIN, EventLoop } from "../kernel/epoll";
import { closeFd, closeQuietly } from "../kernel/fd";
import { Connection } from "../wire/connection";

export type FakeMessage = Record<string, unknown>;

/** Thrown by a handler: the fake answers `{"ok":false,"error":{code,message}}`. */
export class FakeLuodError extends Error {
  constructor(readonly code: string, message: string, readonly extra: FakeMessage = {}) {
    super(message);
  }
}

export interface FakePeer {
  readonly serial: number;
  send(msg: FakeMessage, fds?: number[]): boolean;
  close(reason?: string): void;
  readonly closed: boolean;
}

/**
 * A handler returns the fields of the ok reply (an object), or null when it replies itself (or
 * never: to test timeouts). Received fds are closed after the handler returns (dup to keep one).
 */
export type FakeHandler = (req: FakeMessage, fds: number[], peer: FakePeer) => FakeMessage | null | Promise<FakeMessage | null>;

export interface FakeRequestRecord {
  peer: number;
  msg: FakeMessage;
  /** How many fds came with it. */
  fds: number;
}

export class FakeLuod {
  readonly requests: FakeRequestRecord[] = [];
  readonly peers = new Set<FakePeer>();
  private readonly handlers = new Map<string, FakeHandler>();
  private serial = 0;
  private closedFlag = false;

  private constructor(
    readonly path: string,
    private readonly dir: string | null,
    private readonly listenFd: number,
    private readonly loop: EventLoop,
  ) {
    loop.watch(listenFd, EPOLLIN, () => this.acceptAll());
  }

  /** Listens on `path`, or on `<fresh temp dir>/luod.sock`. */
  static async start(path?: string): Promise<FakeLuod> {
    const dir = path ? null : mkdtempSync(join(tmpdir(), "fake-luod-"));
    const sock = path ?? join(dir!, "luod.sock");
    const fd = unixListen(sock);
    return new FakeLuod(sock, dir, fd, new EventLoop());
  }

  handle(cmd: string, h: FakeHandler): this {
    this.handlers.set(cmd, h);
    return this;
  }

  /** Sends an event to every connected peer. */
  broadcast(msg: FakeMessage, fds: number[] = []): void {
    for (const p of this.peers) p.send(msg, fds);
  }

  /** Resolves once `n` requests with this cmd were received. */
  async waitForRequest(cmd: string, n = 1, timeoutMs = 5000): Promise<FakeRequestRecord> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const found = this.requests.filter((r) => r.msg.cmd === cmd);
      if (found.length >= n) return found[n - 1]!;
      if (Date.now() > until) throw new Error(`fake luod: no ${cmd} #${n} within ${timeoutMs} ms`);
      await Bun.sleep(5);
    }
  }

  close(): void {
    if (this.closedFlag) return;
    this.closedFlag = true;
    for (const p of [...this.peers]) p.close("fake luod closing");
    this.loop.unwatch(this.listenFd);
    closeFd(this.listenFd);
    this.loop.close();
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  }

  private acceptAll(): void {
    for (;;) {
      const fd = acceptConnection(this.listenFd);
      if (fd === null) break;
      this.adopt(fd);
    }
    if (!this.closedFlag) this.loop.rearm(this.listenFd, EPOLLIN);
  }

  private adopt(fd: number): void {
    const serial = ++this.serial;
    let conn: Connection;
    const peer: FakePeer = {
      serial,
      send: (msg, fds = []) => conn.send(msg, fds),
      close: (reason = "closed by the fake luod") => conn.close(reason),
      get closed() {
        return conn.closed;
      },
    };
    conn = new Connection(fd, this.loop, {
      onMessage: (msg, fds) => void this.onMessage(peer, msg, fds),
      onClose: () => this.peers.delete(peer),
    });
    this.peers.add(peer);
  }

  private async onMessage(peer: FakePeer, msg: FakeMessage, fds: number[]): Promise<void> {
    this.requests.push({ peer: peer.serial, msg, fds: fds.length });
    const cmd = typeof msg.cmd === "string" ? msg.cmd : null;
    const echo = msg.tag !== undefined ? { tag: msg.tag } : {};
    try {
      const h = cmd ? this.handlers.get(cmd) : undefined;
      if (!h) {
        peer.send({ reply: cmd, ok: false, error: { code: "EOPNOTSUPP", message: `fake luod: no handler for ${String(cmd)}` }, ...echo });
        return;
      }
      const fields = await h(msg, fds, peer);
      if (fields !== null) peer.send({ reply: cmd, ok: true, ...fields, ...echo });
    } catch (e) {
      if (e instanceof FakeLuodError) {
        peer.send({ reply: cmd, ok: false, error: { code: e.code, message: e.message }, ...e.extra, ...echo });
      } else {
        peer.send({ reply: cmd, ok: false, error: { code: "EIO", message: `fake luod handler: ${(e as Error).message}` }, ...echo });
      }
    } finally {
      closeQuietly(fds); // the handler may have closed some
    }
  }
}

// A swarm of luod clients in ONE process: one EventLoop (one epoll worker thread) and one raw wire
// Connection per client. LuoClient would give every client its own loop and thread, which does not
// scale to 1000 clients; this driver does, with the same wire code luod uses (src/wire).
//
// preserve mode: every client SUBSCRIBEs with its own small memfd (created up front, so the
//   barrier only sees what a client must do: PRESERVE_FD + READY); on START_PRESERVATION it
//   preserves the memfd (token 1), answers READY at once and closes its copy of the session fd.
//   prepare(): every client PREPAREs and preserves its memfd into that session at once; from
//   then on START_PRESERVATION (prepared, no fd) is answered READY at once: the barrier holds no
//   ioctl of the clients' any more (docs/protocol.md, PREPARE).
// claim mode: after the jump, every client CLAIMs, RETRIEVE_FDs token 1 and holds the memfd; the
//   swarm reports when the last one holds it. finishAll() then checks the first bytes, FINISHes
//   the sessions and sends FINISHED.
import { EventLoop } from "../../src/kernel/epoll";
import { Connection } from "../../src/wire/connection";
import { unixConnect } from "../../src/kernel/unix";
import { preserveFd, retrieveFd, finishSession } from "../../src/kernel/liveupdate";
import { memfdCreate } from "../../src/kernel/memfd";
import { closeFd, dupFd, writeFull, readFull } from "../../src/kernel/fd";
import { Errno, SysError } from "../../src/kernel/libc";

export const TOKEN = 1n;

/** The first 8 bytes of an id's memfd: FNV-1a of the id, twice. */
export function stamp(id: string): Uint8Array {
  let x = 2166136261;
  for (const ch of id) x = Math.imul(x ^ ch.charCodeAt(0), 16777619) >>> 0;
  const out = new Uint8Array(new ArrayBuffer(8));
  new DataView(out.buffer).setUint32(0, x, true);
  new DataView(out.buffer).setUint32(4, ~x >>> 0, true);
  return out;
}

/** What every page of a bench memfd holds (grown to the largest size asked for). */
let filler = new Uint8Array(new ArrayBuffer(0));

/**
 * A memfd of `bytes` bytes, every page written, whose first 8 bytes are stamp(id). Written
 * through, like a VM's memory: PRESERVE_FD of a sparse memfd allocates and zeroes its holes
 * (docs/kernel.md#memfd-preservation), which would charge the floor (fresh memfds every run) for work that the
 * swarm's reused memfds do only once.
 */
export function makeMemfd(id: string, bytes: number): number {
  const size = Math.max(bytes, 8);
  if (filler.length < size) filler = new Uint8Array(new ArrayBuffer(size)).fill(0xa5);
  const fd = memfdCreate(`bench-${id}`);
  writeFull(fd, filler.subarray(0, size), 0);
  writeFull(fd, stamp(id), 0);
  return fd;
}

export function checkStamp(fd: number, id: string): boolean {
  const got = new Uint8Array(new ArrayBuffer(8));
  readFull(fd, got, 0);
  const want = stamp(id);
  return got.every((b, i) => b === want[i]);
}

interface Member {
  id: string;
  conn: Connection;
  memfd: number;
  sessionFd: number;
  restoredFd: number;
  subscribed: boolean;
}

export interface RoundStats {
  /** performance.now() of the first START_PRESERVATION / last READY sent / last READY reply. */
  firstStart: number;
  lastReadySent: number;
  lastReadyReply: number;
  lastAborted: number;
  starts: number;
  readyReplies: number;
  aborted: number;
  /** PRESERVE_FD time summed over the clients, ms. */
  preserveMs: number;
}

const newRound = (): RoundStats => ({
  firstStart: 0, lastReadySent: 0, lastReadyReply: 0, lastAborted: 0,
  starts: 0, readyReplies: 0, aborted: 0, preserveMs: 0,
});

export class Swarm {
  readonly loop: EventLoop;
  readonly members: Member[] = [];
  readonly errors: string[] = [];
  round: RoundStats = newRound();
  /** memfds recreated because PRESERVE_FD said EBUSY (the previous session not gone yet). */
  recreatedMemfds = 0;
  /** Members whose SUBSCRIBE was answered ok / who hold their restored memfd. */
  subscribed = 0;
  prepared = 0;
  restored = 0;
  /** performance.now() of the first CLAIMED, and when claim() had connected every client. */
  firstRestoredAt = 0;
  allConnectedAt = 0;
  private waiters: { pred: () => boolean; resolve: () => void; reject: (e: Error) => void }[] = [];
  private readonly ownLoop: boolean;

  /**
   * `kernel: false` skips the LUO ioctls (for luod with a fake kernel on a host without LUO: the
   * session fds are then plain memfds): START_PRESERVATION is answered READY at once, CLAIMED
   * counts as held.
   */
  constructor(readonly socket: string, readonly memfdBytes = 4096, loop?: EventLoop, readonly kernel = true) {
    this.ownLoop = !loop;
    this.loop = loop ?? new EventLoop({ onError: (e) => this.fatal(e) });
  }

  // ---- preserve mode ------------------------------------------------------------------------

  /** Connects and SUBSCRIBEs every id (in batches, so luod's backlog never overflows for long). */
  async subscribe(ids: string[], batch = 100): Promise<number> {
    const t0 = performance.now();
    for (let i = 0; i < ids.length; i += batch) {
      for (const id of ids.slice(i, i + batch)) {
        const m = this.add(id, makeMemfd(id, this.memfdBytes));
        m.conn.send({ cmd: "SUBSCRIBE", id });
      }
      await this.until(() => this.subscribed >= this.members.length, 120_000, "SUBSCRIBE replies");
    }
    return performance.now() - t0;
  }

  /** PREPARE for every member, each preserving its memfd into the session it gets. */
  async prepare(batch = 100): Promise<number> {
    const t0 = performance.now();
    for (let i = 0; i < this.members.length; i += batch) {
      for (const m of this.members.slice(i, i + batch)) m.conn.send({ cmd: "PREPARE" });
      await this.until(() => this.prepared >= Math.min(i + batch, this.members.length), 120_000, "PREPARE replies");
    }
    return performance.now() - t0;
  }

  /** Starts counting a new barrier round. */
  resetRound(): void {
    this.round = newRound();
  }

  /** Resolves once every member saw ABORTED for the current round (a dry run ended). */
  allAborted(timeoutMs = 120_000): Promise<void> {
    return this.until(() => this.round.aborted >= this.members.length, timeoutMs, "ABORTED for every client");
  }

  allReadyReplies(timeoutMs = 120_000): Promise<void> {
    return this.until(() => this.round.readyReplies >= this.members.length, timeoutMs, "READY replies");
  }

  // ---- claim mode ---------------------------------------------------------------------------

  /** Connects every id and sends CLAIM at once; resolves when every client holds its memfd. */
  async claim(ids: string[], timeoutMs = 300_000): Promise<void> {
    for (const id of ids) {
      const m = this.add(id, -1);
      m.conn.send({ cmd: "CLAIM", id });
    }
    this.allConnectedAt = performance.now();
    await this.until(() => this.restored >= this.members.length, timeoutMs, "CLAIMED + RETRIEVE_FD");
  }

  /** After claim(): verify, FINISH, close, FINISHED. Returns how many memfds had the right stamp. */
  async finishAll(): Promise<number> {
    let good = 0;
    let replies = 0;
    for (const m of this.members) {
      if (!this.kernel) good++;
      else if (checkStamp(m.restoredFd, m.id)) good++;
      else this.errors.push(`${m.id}: restored memfd has the wrong content`);
      if (this.kernel) finishSession(m.sessionFd);
      closeFd(m.sessionFd);
      closeFd(m.restoredFd);
      m.sessionFd = m.restoredFd = -1;
      m.conn.send({ cmd: "FINISHED", id: m.id });
    }
    this.onFinishedReply = () => replies++;
    await this.until(() => replies >= this.members.length, 120_000, "FINISHED replies");
    return good;
  }

  // ---- common -------------------------------------------------------------------------------

  /**
   * UNSUBSCRIBEs and closes every connection, and closes their memfds. A subscription outlives its
   * connection (luod expects it back and refuses the next KEXEC without it), so the next sweep's
   * swarm must not find this one's ids expected. close() writes the queued UNSUBSCRIBE first.
   */
  async closeAll(): Promise<void> {
    for (const m of this.members.splice(0)) {
      m.conn.send({ cmd: "UNSUBSCRIBE" });
      m.conn.close("bench done");
      for (const fd of [m.memfd, m.sessionFd, m.restoredFd]) if (fd >= 0) closeFd(fd);
    }
    if (this.ownLoop) {
      this.loop.close();
      await this.loop.closed;
    }
  }

  private onFinishedReply: () => void = () => {};

  private add(id: string, memfd: number): Member {
    const fd = unixConnect(this.socket);
    const m: Member = { id, conn: null as unknown as Connection, memfd, sessionFd: -1, restoredFd: -1, subscribed: false };
    m.conn = new Connection(fd, this.loop, {
      onMessage: (msg, fds) => this.onMessage(m, msg, fds),
      onClose: (reason) => {
        if (reason !== "bench done") this.errors.push(`${id}: connection closed: ${reason}`);
        this.check();
      },
    }, { maxLineBytes: 4 * 1024 * 1024 });
    this.members.push(m);
    return m;
  }

  private onMessage(m: Member, msg: Record<string, unknown>, fds: number[]): void {
    const now = performance.now();
    const r = this.round;
    if (msg.event === "START_PRESERVATION") {
      if (r.starts++ === 0) r.firstStart = now;
      if (msg.prepared === true) {
        m.conn.send({ cmd: "READY" }); // preserved at PREPARE: nothing left but to answer
        r.lastReadySent = performance.now();
        return this.check();
      }
      const sessionFd = fds[0]!;
      const t = performance.now();
      this.preserve(m, sessionFd);
      r.preserveMs += performance.now() - t;
      m.conn.send({ cmd: "READY" });
      r.lastReadySent = performance.now();
      closeFd(sessionFd); // luod holds its own copy until the jump
      return this.check();
    } else if (msg.reply === "PREPARE") {
      if (msg.ok && fds.length === 1) {
        m.sessionFd = fds[0]!; // kept: the prepared session lives as long as the subscription
        this.preserve(m, m.sessionFd);
        this.prepared++;
      } else {
        for (const fd of fds) closeFd(fd);
        this.errors.push(`${m.id}: PREPARE: ${JSON.stringify(msg.error ?? `${fds.length} fds`)}`);
      }
      return this.check();
    } else if (msg.event === "ABORTED") {
      r.aborted++;
      r.lastAborted = now;
    } else if (msg.event === "CLAIMED") {
      const sessionFd = fds[0]!;
      m.sessionFd = sessionFd;
      m.restoredFd = this.kernel ? retrieveFd(sessionFd, TOKEN) : dupFd(sessionFd);
      if (this.restored++ === 0) this.firstRestoredAt = performance.now();
      return this.check();
    } else if (msg.reply === "SUBSCRIBE") {
      if (msg.ok) {
        m.subscribed = true;
        this.subscribed++;
      }
      else this.errors.push(`${m.id}: SUBSCRIBE: ${JSON.stringify(msg.error)}`);
    } else if (msg.reply === "READY") {
      if (msg.ok) {
        r.readyReplies++;
        r.lastReadyReply = now;
      } else this.errors.push(`${m.id}: READY: ${JSON.stringify(msg.error)}`);
    } else if (msg.reply === "FINISHED") {
      if (!msg.ok) this.errors.push(`${m.id}: FINISHED: ${JSON.stringify(msg.error)}`);
      this.onFinishedReply();
    } else if (msg.reply !== undefined && msg.ok === false) {
      this.errors.push(`${m.id}: ${String(msg.reply)}: ${JSON.stringify(msg.error)}`);
    }
    else for (const fd of fds) closeFd(fd); // nothing else carries fds; never keep strays
    this.check();
  }

  private preserve(m: Member, sessionFd: number): void {
    if (!this.kernel) return;
    try {
      preserveFd(sessionFd, m.memfd, TOKEN);
    } catch (e) {
      if (!(e instanceof SysError && e.errno === Errno.EBUSY)) throw e;
      // the memfd is still preserved in the previous round's session: use a fresh one
      closeFd(m.memfd);
      m.memfd = makeMemfd(m.id, this.memfdBytes);
      this.recreatedMemfds++;
      preserveFd(sessionFd, m.memfd, TOKEN);
    }
  }

  private until(pred: () => boolean, timeoutMs: number, what: string): Promise<void> {
    if (pred()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const w = {
        pred,
        resolve: () => { clearTimeout(timer); resolve(); },
        reject: (e: Error) => { clearTimeout(timer); reject(e); },
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new Error(`swarm: timed out after ${timeoutMs} ms waiting for ${what}; errors: ${this.errors.slice(0, 5).join("; ")}`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  private check(): void {
    if (this.waiters.length === 0) return;
    const due = this.waiters.filter((w) => w.pred());
    if (due.length === 0) return;
    this.waiters = this.waiters.filter((w) => !due.includes(w));
    for (const w of due) w.resolve();
  }

  private fatal(e: unknown): void {
    const err = e instanceof Error ? e : new Error(String(e));
    this.errors.push(`event loop: ${err.message}`);
    for (const w of this.waiters.splice(0)) w.reject(err);
  }
}

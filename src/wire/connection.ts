// One protocol connection over a non-blocking AF_UNIX stream fd: reads lines + fds through the
// framing, writes queued lines + fds without ever blocking. Used by luod for every peer, and by
// any client that receives fds. Protocol only: requests are validated by the caller (requests.ts).
//
// Ownership rules (docs/protocol.md, "File descriptors: who owns what"):
// - the Connection owns its socket fd from the constructor on and closes it in close();
// - send(obj, fds): the caller keeps its own fds. They are sent at once when nothing is queued;
//   otherwise they are DUPed, and the dups are closed once the sendmsg that carried them
//   succeeded (or when the connection closes);
// - fds given to onMessage belong to the handler (it must close them, also when the request is
//   refused); every other received fd (strays, fds of invalid lines, fds queued at close) is
//   closed here. `strayFds` counts those closed because no line claimed them.
// - received fds wait in received-fds.ts until their line takes them. With refuseSockets (luod),
//   a received socket is closed the moment it arrives and the line it came with is refused
//   (EBADMSG): a socket held by the receiver can be the peer's own end, and then the peer's death
//   is never seen as EOF (docs/kernel.md#sockets-in-flight);
// - fds that arrived ahead of a line that does not end within partialLineFdTimeoutMs are closed,
//   and that line is refused (EBADMSG) when it ends; the connection stays open.
import { type ErrorCode, oneLine } from "./errors";
import { LineFramer, MAX_FDS_PER_MESSAGE, MAX_LINE_BYTES } from "./framing";
import { OutputQueue, encodeMessages } from "./output-queue";
import { echoOf, errorReply, type Tag } from "./replies";
import { decodeLine, echoOfLine, invalidLine, type Incoming } from "./incoming";
import { MessageIo } from "../kernel/scm-rights.ts";
import { EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT, EPOLLRDHUP, type EventLoop } from "../kernel/epoll.ts";
import { closeQuietly } from "../kernel/fd.ts";
import { ReceivedFds, REFUSED_FD } from "./received-fds";
import { Errno, errnoName } from "../kernel/libc.ts";

/** What a Connection reports to its owner. Handlers are never called from the constructor. */
export interface ConnectionHandler {
  /**
   * A complete line that is a JSON object whose `fds` (absent = 0) matched fds that arrived with
   * it. `msg` still holds every field, `fds` included; nothing else is validated.
   */
  onMessage(msg: Record<string, unknown>, fds: number[]): void;
  /**
   * A line that could not become a message (code EBADMSG): invalid JSON or UTF-8, not an object,
   * a bad `fds`, fds that did not arrive, or fds more than the line claimed. Any fds involved are
   * already closed. `echo` holds the line's `cmd` and `tag` when they could be read.
   * Optional: without it the connection replies `errorReply(echo.cmd, code, message, echo.tag)`.
   */
  onInvalid?(code: ErrorCode, message: string, echo: { cmd?: string; tag?: Tag }): void;
  /**
   * Called exactly once, when the connection is closed for any reason — the peer hung up, an
   * error, a limit, or close() by the owner. Every fd the connection held is closed by then.
   */
  onClose(reason: string): void;
}

export interface ConnectionOptions {
  /** Bytes of unsent output allowed before the peer counts as a slow consumer. Default 1 MiB. */
  maxQueuedBytes?: number;
  /**
   * Stop reading the peer's requests while more than this many bytes of output wait to be sent
   * (default a quarter of maxQueuedBytes): a peer that sends faster than it reads is slowed
   * down by its own socket buffer instead of making luod queue replies without bound. Reading
   * resumes once the output drains below it.
   */
  readPauseBytes?: number;
  /** Limit of a received line (tests lower it). Default MAX_LINE_BYTES. */
  maxLineBytes?: number;
  /** Limit of a sent line. Default maxLineBytes (luod: MAX_REPLY_BYTES). */
  maxSendLineBytes?: number;
  /**
   * Close every received fd that is a socket at once and refuse the line it came with (EBADMSG).
   * luod sets it; default false.
   */
  refuseSockets?: boolean;
  /**
   * fds that arrived ahead of a line still unfinished after this long are closed (the line is
   * refused when it ends). Default PARTIAL_LINE_FD_TIMEOUT_MS; 0: never.
   */
  partialLineFdTimeoutMs?: number;
  /** Close the connection when its output waits this long without the peer taking any (0: never). */
  stalledOutputMs?: number;
  /** sendmsg/recvmsg buffers; default one shared instance per thread. */
  io?: MessageIo;
}

/** The part of the event loop a Connection uses (EventLoop from src/kernel/epoll.ts fits). */
export type ConnectionLoop = Pick<EventLoop, "watch" | "rearm" | "unwatch">;

export const DEFAULT_MAX_QUEUED_BYTES = 1 << 20;
/** fds may wait this long for the rest of their line (a real client sends a line in one write). */
export const PARTIAL_LINE_FD_TIMEOUT_MS = 3000;
/** Full-buffer reads per readiness callback before yielding to other fds (the loop is
 *  level-triggered: what is left is reported again). */
const MAX_READS_PER_WAKE = 16;
const READ_EVENTS = EPOLLIN | EPOLLRDHUP;

let sharedIo: MessageIo | null = null;

export class Connection {
  /** Lines delivered to onMessage / onInvalid. */
  messagesIn = 0;
  invalidIn = 0;
  /** Lines queued by send(). */
  messagesOut = 0;

  private readonly framer: LineFramer;
  private readonly maxSendLineBytes: number;
  private readonly io: MessageIo;
  private readonly maxQueuedBytes: number;
  private readonly readPauseBytes: number;
  private readonly receivedFds: ReceivedFds;
  /** Set when more fds arrived for the pending partial line than a line may carry. */
  private poisoned: string | null = null;
  /** Complete lines wait in the framer because the output was backlogged. */
  private linesWaiting = false;
  private readonly output: OutputQueue;
  private wantOut = false;
  private readonly stalledOutputMs: number;
  private stallTimer: ReturnType<typeof setTimeout> | null = null;
  private inCallback = false;
  private closeReason: string | null = null;

  constructor(
    readonly fd: number,
    private readonly loop: ConnectionLoop,
    private readonly handler: ConnectionHandler,
    opts: ConnectionOptions = {},
  ) {
    this.maxQueuedBytes = opts.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES;
    this.readPauseBytes = opts.readPauseBytes ?? Math.floor(this.maxQueuedBytes / 4);
    this.framer = new LineFramer(opts.maxLineBytes ?? MAX_LINE_BYTES);
    this.maxSendLineBytes = opts.maxSendLineBytes ?? this.framer.maxLineBytes;
    this.io = opts.io ?? (sharedIo ??= new MessageIo());
    this.receivedFds = new ReceivedFds(
      this.framer, opts.refuseSockets ?? false, opts.partialLineFdTimeoutMs ?? PARTIAL_LINE_FD_TIMEOUT_MS, () => this.fdTimedOut(),
    );
    this.output = new OutputQueue(fd, this.io);
    this.stalledOutputMs = opts.stalledOutputMs ?? 0;
    loop.watch(fd, READ_EVENTS, (events: number) => this.onReady(events));
  }

  /** fds received that no line claimed (or that belonged to an invalid line), all closed. */
  get strayFds(): number {
    return this.receivedFds.strays;
  }

  /** Received sockets closed at once (refuseSockets); also counted in strayFds. */
  get socketsRefused(): number {
    return this.receivedFds.socketsRefused;
  }

  get closed(): boolean {
    return this.closeReason !== null;
  }

  /** Why the connection closed, or null while it is open. */
  get closedReason(): string | null {
    return this.closeReason;
  }

  /** Bytes accepted by send() and not yet written to the socket. */
  get queuedBytes(): number {
    return this.output.queuedBytes;
  }

  /**
   * Queues one message and writes as much as the socket takes now; never blocks. `fds` travel
   * with the line's first byte; the caller keeps its own (they are dup'ed if the line has to
   * wait in the queue). The object must say `fds: fds.length` (absent = 0).
   * An array of messages goes out in one write: the fds of all of them (in order) travel with
   * the first line's first byte, which the receiver's FIFO matches to lines all the same.
   * Returns false when the connection is (now) closed — including when this message pushed the
   * unsent output over maxQueuedBytes (slow consumer).
   * Throws ProtocolError EMSGSIZE for a line over the limit, RangeError for a bad fds list.
   */
  send(obj: object | readonly object[], fds: readonly number[] = []): boolean {
    if (this.closeReason !== null) return false;
    const objs = Array.isArray(obj) ? obj : [obj];
    const data = encodeMessages(objs, fds.length, this.maxSendLineBytes);
    this.messagesOut += objs.length;
    const r = this.output.push(data, fds);
    if (r === "done") return true;
    if (r !== "blocked") {
      this.shutdown(`send: ${errnoName(r)}`, false);
      return false;
    }
    this.setWantOut(true); // written on EPOLLOUT
    return this.withinQueueLimit();
  }

  /** False when the connection is closed, or is closed now for too much unsent output. */
  private withinQueueLimit(): boolean {
    if (this.closeReason !== null) return false;
    const queued = this.output.queuedBytes;
    if (queued > this.maxQueuedBytes) {
      this.close(`slow consumer: ${queued} bytes unsent, over the limit of ${this.maxQueuedBytes}`);
      return false;
    }
    return true;
  }

  /**
   * Closes the connection: stops watching, closes the socket and every fd still held (queued
   * dups, received fds no line claimed), then calls onClose(reason). Idempotent. Unsent output
   * gets one last non-blocking write attempt first.
   */
  close(reason: string): void {
    this.shutdown(reason, true);
  }

  /**
   * The peer's process has exited (its pidfd said so) but the connection is still open. Either
   * another process holds the peer's socket (handed to a child: a live client, left alone), or the
   * only reference left is in flight in this connection's receive queue. While luod reads the
   * connection, such a socket arrives and is refused (refuseSockets), and EOF follows. While it
   * does not (the peer stopped reading its replies, so luod stopped reading its requests), the
   * connection is closed now: its process is gone and nobody reads it. Reading the queue out
   * instead would let a peer park thousands of fds and megabytes in luod on its way out.
   */
  peerExited(): void {
    if (this.closeReason !== null) return;
    if (this.backlogged || this.linesWaiting) this.shutdown("its process has exited and its replies are not read", false);
  }

  // -- internals --------------------------------------------------------------------------------

  private fdTimedOut(): void {
    if (this.closeReason !== null) return;
    if (this.linesWaiting) {
      // complete lines wait for the output to drain: their fds are theirs, not a partial line's
      this.receivedFds.updateTimer(true);
      return;
    }
    if (!this.framer.hasPartialLine || this.framer.queuedFds === 0) return;
    const n = this.framer.queuedFds;
    this.receivedFds.dropQueued();
    this.poisoned = `${n} fd(s) arrived ahead of a line that did not end within ${this.receivedFds.partialLineTimeoutMs} ms; closed`;
  }

  private shutdown(reason: string, flushFirst: boolean): void {
    if (this.closeReason !== null) return;
    this.closeReason = oneLine(reason); // first: nothing below may re-enter (no re-arm, no second close)
    this.receivedFds.stopTimer();
    if (this.stallTimer) clearTimeout(this.stallTimer);
    this.stallTimer = null;
    if (flushFirst && !this.output.empty) this.writeQueued();
    try {
      this.loop.unwatch(this.fd);
    } catch {
      // the loop may already be gone (shutdown): closing the fd removes it from epoll anyway
    }
    closeQuietly(this.fd);
    this.output.clear();
    this.receivedFds.dropQueued();
    this.handler.onClose(this.closeReason);
  }

  private onReady(events: number): void {
    if (this.closeReason !== null) return; // a stale event after close (the fd may be reused)
    this.inCallback = true;
    try {
      if (events & EPOLLOUT) this.flush();
      if (this.closeReason === null && this.linesWaiting && !this.backlogged) this.processLines();
      if (this.closeReason === null && events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) this.readSome();
      // a peer that hung up while we held its lines back: nothing more can be sent to it
      if (this.closeReason === null && events & (EPOLLHUP | EPOLLERR) && (this.backlogged || this.linesWaiting)) {
        this.shutdown("peer hung up without reading its replies", false);
      }
    } finally {
      this.inCallback = false;
      if (this.closeReason === null) this.arm();
    }
  }

  /** The peer does not read its replies (more than readPauseBytes unsent): take no more lines. */
  private get backlogged(): boolean {
    return this.wantOut && this.output.queuedBytes > this.readPauseBytes;
  }

  private arm(): void {
    // While lines wait, only EPOLLOUT matters (EPOLLHUP and EPOLLERR are always reported, so a
    // peer that hangs up meanwhile is still seen). Lines waiting without output pending cannot
    // happen; should it, EPOLLOUT fires at once and onReady processes them.
    const hold = this.backlogged || this.linesWaiting;
    const events = hold ? EPOLLOUT : READ_EVENTS | (this.wantOut ? EPOLLOUT : 0);
    try {
      this.loop.rearm(this.fd, events);
    } catch (e) {
      // the loop was closed under us (luod stopping): nothing will ever wake this connection
      this.shutdown(`event loop: ${e instanceof Error ? e.message : String(e)}`, false);
    }
  }

  private setWantOut(on: boolean): void {
    if (this.wantOut === on) return;
    this.wantOut = on;
    this.watchStall(false);
    if (!this.inCallback && this.closeReason === null) this.arm();
  }

  /**
   * With stalledOutputMs: output that waits for the peer (the socket full) and makes no progress
   * for that long closes the connection. A peer that neither reads nor exits (or whose socket
   * lives on only in flight, where nothing reports its end) cannot hold a slot and its queued
   * requests forever. `progress`: some output was just written, the wait starts again.
   */
  private watchStall(progress: boolean): void {
    const waiting = this.stalledOutputMs > 0 && this.wantOut && this.closeReason === null;
    if (!waiting || progress) {
      if (this.stallTimer) clearTimeout(this.stallTimer);
      this.stallTimer = null;
    }
    if (!waiting || this.stallTimer) return;
    this.stallTimer = setTimeout(() => {
      this.stallTimer = null;
      this.shutdown(`slow consumer: ${this.output.queuedBytes} bytes unsent and nothing read for ${this.stalledOutputMs} ms`, false);
    }, this.stalledOutputMs);
    this.stallTimer.unref?.();
  }

  /** Writes queued output until done or EAGAIN; closes the connection on a send error. */
  private flush(): void {
    const err = this.writeQueued();
    if (err === null) return;
    this.shutdown(`send: ${errnoName(err)}`, false);
  }

  /** Returns null, or the errno of a failed send (EAGAIN is not a failure: it sets wantOut). */
  private writeQueued(): number | null {
    const before = this.output.queuedBytes;
    const r = this.output.flush();
    if (typeof r === "number") return r;
    this.setWantOut(r === "blocked");
    if (r === "blocked" && this.output.queuedBytes < before) this.watchStall(true);
    return null;
  }

  private readSome(): void {
    for (let i = 0; i < MAX_READS_PER_WAKE; i++) {
      if (this.backlogged || this.linesWaiting) return; // the peer is not reading its replies: let its requests wait
      const fds: number[] = [];
      const n = this.io.receive(this.fd, fds);
      if (fds.length > 0) this.receivedFds.admit(fds); // queued first: close() then closes them
      if (n > 0 && this.io.lastTruncated) {
        this.shutdown("MSG_CTRUNC: the peer sent more fds at once than luod accepts; fds were lost", false);
        return;
      }
      if (n === -Errno.EAGAIN) return;
      if (n > 0 && n < this.io.buffer.length) {
        // a short read took what was there; more is reported again (level-triggered)
        this.framer.push(this.io.buffer.subarray(0, n));
        this.processLines();
        return;
      }
      if (n < 0) {
        this.shutdown(`recv: ${errnoName(-n)}`, false);
        return;
      }
      if (n === 0) {
        this.shutdown(this.framer.hasPartialLine ? "peer closed the connection in the middle of a line" : "peer closed the connection", true);
        return;
      }
      this.framer.push(this.io.buffer.subarray(0, n));
      this.processLines();
      if (this.closeReason !== null) return;
    }
  }

  /**
   * Delivers the complete lines buffered, one at a time, in order, matching their fds. Stops while
   * the output is backlogged (the peer does not read its replies): the rest of the lines and their
   * fds wait in the framer, nothing more is read, and onReady resumes once the output drains.
   * So a burst of small requests with large replies never piles up output, however it arrives.
   */
  private processLines(): void {
    this.linesWaiting = false;
    for (;;) {
      if (this.closeReason !== null) return;
      if (this.backlogged) {
        this.linesWaiting = true;
        return;
      }
      let line: string | null;
      try {
        line = this.framer.nextLine();
      } catch (e) {
        this.receivedFds.dropQueued(); // a line we cannot read may have carried fds: none can be trusted now
        this.deliver(invalidLine((e as Error).message, {}));
        continue;
      }
      if (line === null) break;
      const blank = line.trim() === ""; // blank lines are ignored (handy with socat)
      if (this.poisoned !== null) {
        // this line's fds were closed when they exceeded the limit: it cannot be served (a blank
        // line gets no reply, as always; the fds were counted as strays either way)
        const why = this.poisoned;
        this.poisoned = null;
        this.receivedFds.dropQueued();
        if (!blank) this.deliver(invalidLine(why, echoOfLine(line)));
        continue;
      }
      if (blank) continue;
      let item = decodeLine(line, this.framer);
      if (item.kind === "invalid") this.receivedFds.dropQueued(); // see decodeLine
      if (item.kind === "message" && item.fds.includes(REFUSED_FD)) {
        this.receivedFds.closeStrays(item.fds);
        item = invalidLine("a socket arrived as payload; luod never accepts sockets (closed)", echoOf(item.msg));
      }
      // fds still queued when nothing but blank lines follows belong to no line (framing.ts):
      // they came with this line's bytes, so it is the request that carried more fds than it
      // said (docs/protocol.md). Both its own fds and the strays are closed.
      if (item.kind === "message" && this.framer.queuedFds > 0 && this.framer.onlyBlankPending) {
        const strays = this.framer.drainFds();
        this.receivedFds.closeStrays(strays);
        this.receivedFds.close(item.fds);
        item = invalidLine(
          `${strays.length} fd(s) arrived that no line claimed; closed (the line says "fds": ${item.fds.length})`,
          echoOf(item.msg),
        );
      }
      this.deliver(item);
    }

    // fds with no line to charge (they came with blank lines only): closed and counted, without
    // a reply, since every reply answers one line
    if (!this.framer.hasPartialLine && this.framer.queuedFds > 0) this.receivedFds.dropQueued();

    // A pending partial line may own at most MAX_FDS_PER_MESSAGE fds (they come with its first
    // byte). More means a broken or hostile peer: close them now, so that no connection can pile
    // up fds behind a line that never ends, and fail that line when it does end.
    if (this.framer.hasPartialLine && this.framer.queuedFds > MAX_FDS_PER_MESSAGE) {
      const n = this.framer.queuedFds;
      this.receivedFds.dropQueued();
      this.poisoned = `${n} fd(s) arrived for one line, more than the ${MAX_FDS_PER_MESSAGE} a message may carry; closed`;
    }

    this.receivedFds.updateTimer(this.closeReason === null);

    if (this.closeReason === null && this.framer.overLimit) {
      const limit = this.framer.maxLineBytes;
      // best effort: written now if the socket takes it, then the connection is closed
      this.send(errorReply(null, "EMSGSIZE", `line over ${limit} bytes; closing the connection`));
      this.shutdown(`EMSGSIZE: the peer sent a line over ${limit} bytes`, true);
    }
  }

  private deliver(item: Incoming): void {
    if (this.closeReason !== null) {
      if (item.kind === "message") this.receivedFds.close(item.fds); // never handed over
      return;
    }
    try {
      if (item.kind === "message") {
        this.messagesIn++;
        this.handler.onMessage(item.msg, item.fds);
      } else {
        this.invalidIn++;
        if (this.handler.onInvalid) this.handler.onInvalid("EBADMSG", item.message, item.echo);
        else this.send(errorReply(item.echo.cmd, "EBADMSG", item.message, item.echo.tag));
      }
    } catch (e) {
      // A handler bug must not take the event loop down; this connection cannot be trusted now.
      this.shutdown(`internal error while handling a message: ${e instanceof Error ? e.message : String(e)}`, true);
    }
  }
}

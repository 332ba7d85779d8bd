// LuoClient: the TypeScript client of luod's protocol v1 (docs/protocol.md), for luoctl, the
// tests, the demo and real applications.
//
// One client = one connection = one EventLoop (one epoll worker thread). The loop keeps the
// process alive while the connection is open; close() (or luod closing the connection) releases
// it, so a script that closes its client exits normally.
//
// Messages from luod are routed by inbox.ts: replies to the requests awaiting them, events to
// waitFor(), the on() listeners, or a small buffer (read its header for the rules).
//
// File descriptors that arrive with a message belong to whoever receives the message: the caller
// of call()/claim()/waitFor(), or the on() listeners. request() closes any it gets. Fds of
// buffered events are closed if the buffer overflows or the client closes.
import { EventLoop } from "../kernel/epoll";
import { Connection } from "../wire/connection";
import { LuoRequests, type Message, type Received, type RequestOptions } from "./requests";
import type { RequestOf } from "../wire/requests"; // types only: the schemas stay unloaded
import { Inbox, type EventListener, type Interceptor, type WaitOptions } from "./inbox";
import { closeQuietly } from "../kernel/fd";
import { MAX_REPLY_BYTES } from "../wire/framing";
import { LuoConnectionClosed, LuoError, LuoProtocolError } from "./errors";
import { DEFAULT_SOCKET, connectWithRetry } from "./connect";

export { DEFAULT_SOCKET, connectWithRetry };
export type { Message, Received, RequestOptions, LoadOptions } from "./requests";
export type { EventListener, WaitOptions } from "./inbox";
export type { Tag } from "../wire/replies";
export type {
  AbortReply, CheckReply, ClientInfo, ListReply, LoadReply, RestoredInfo, StatusReply, UpdateInfo,
} from "../wire/replies";

export interface ConnectOptions {
  /** How long to retry a connect that finds luod's backlog full (EAGAIN). Default 2000 ms. */
  connectTimeoutMs?: number;
  /** Events kept for a later waitFor() when nobody consumed them. Default 64. */
  maxBufferedEvents?: number;
  /**
   * Reply timeout of every request that sets none (KEXEC excepted: it lasts as long as the
   * update). Default 30000 ms, so that an application never hangs on a luod that stopped answering.
   */
  requestTimeoutMs?: number;
}

export interface KexecOptions {
  /** READY deadline for the clients (luod's default: 30000). */
  timeoutMs?: number;
  dryRun?: boolean;
  /** Run even while subscribed clients are not connected: they are left out of the update (luod says ENOTCONN otherwise). */
  force?: boolean;
  /** Every PROGRESS event of this update. */
  onProgress?: (ev: Message) => void;
  /** The REBOOTING event: luod is calling reboot(KEXEC) now. */
  onRebooting?: (ev: Message) => void;
}

export type KexecResult =
  /** A dry run completed (every client READY, then aborted on purpose), or an unexpected ok reply. */
  | { rebooting: false; dryRun: boolean; timings: Record<string, number>; reply: Message }
  /** luod sent REBOOTING and then the connection went away: the jump is under way. */
  | { rebooting: true; timings: Record<string, number>; event: Message };

export interface Preservation {
  /** The client id the session is for. */
  id: string;
  /** Session name, `luod:<id>/<attempt>`. */
  session: string;
  /**
   * The outgoing session fd: preserve memfds into it, then ready(). Close it after ABORTED,
   * unless it is `prepared`: then it is the fd prepare() returned, and it stays valid.
   */
  sessionFd: number;
  /** The session came from prepare(): memfds preserved then are in it already. */
  prepared: boolean;
  /** The update attempt. */
  update: number | null;
  /** PRESERVATION_REQUEST's deadline (ISO 8601), when it came first. */
  deadline: string | null;
}

export class LuoClient extends LuoRequests {
  private readonly inbox: Inbox;
  private closeReason: string | null = null;
  /** Why the client closed the connection itself (luod broke the protocol): what requests reject with. */
  private fatalError: LuoError | null = null;
  private conn!: Connection;
  /** The session fd prepare() returned: START_PRESERVATION of a prepared session brings none. */
  private preparedFd: number | null = null;

  private constructor(
    readonly path: string,
    private readonly loop: EventLoop,
    maxBuffered: number,
    private readonly requestTimeoutMs: number,
  ) {
    super();
    this.inbox = new Inbox(maxBuffered, (e) => this.fatal(e));
  }

  /** Connects to luod. Rejects with LuoConnectError (code = errno name) when that fails. */
  static async connect(path: string = DEFAULT_SOCKET, opts: ConnectOptions = {}): Promise<LuoClient> {
    const fd = await connectWithRetry(path, opts.connectTimeoutMs ?? 2000);
    let loop: EventLoop;
    try {
      loop = new EventLoop({ onError: (e) => client.fatal(e) });
    } catch (e) {
      closeQuietly(fd);
      throw e;
    }
    const client: LuoClient = new LuoClient(path, loop, opts.maxBufferedEvents ?? 64, opts.requestTimeoutMs ?? 30_000);
    try {
      client.conn = new Connection(fd, loop, {
        onMessage: (msg, fds) => client.inbox.deliver(msg, fds),
        onInvalid: (_code, message) => client.fatal(new LuoProtocolError(message)),
        onClose: (reason) => client.onClose(reason),
      }, { maxLineBytes: MAX_REPLY_BYTES });
    } catch (e) {
      closeQuietly(fd);
      loop.close();
      throw e;
    }
    return client;
  }

  /** True once the connection is closed (by close(), by luod, or by an error). */
  get closed(): boolean {
    return this.closeReason !== null;
  }

  get closedReason(): string | null {
    return this.closeReason;
  }

  // ---- low level ------------------------------------------------------------------------------

  /**
   * Sends a request and resolves with its reply and any fds that came with it (yours to close).
   * A reply with `ok: false` rejects with LuoError(error.code, error.message) (its fds closed).
   * `fds` are sent with the request (dup'ed: you keep yours); `obj.fds` is set for you.
   */
  call(obj: Message & { cmd: string }, fds: readonly number[] = [], opts: RequestOptions = {}): Promise<Received> {
    const msg: Message = { ...obj };
    if (fds.length > 0) msg.fds = fds.length;
    else delete msg.fds;
    const timeoutMs = opts.timeoutMs ?? (obj.cmd === "KEXEC" ? undefined : this.requestTimeoutMs);
    return this.inbox.expectReply(obj.cmd, obj.tag, timeoutMs, () => this.conn.send(msg, fds));
  }

  /**
   * Listen to events (`"PROGRESS"`, `"ABORTED"`…, or `"*"` for all). Events a waitFor() takes
   * are not seen here. Fds that come with an event are the listeners' to close.
   * `"close"` is special: cb({event:"close", reason}, []) once the connection closes.
   * Returns a function that removes the listener.
   */
  on(event: string, cb: EventListener): () => void {
    return this.inbox.on(event, cb);
  }

  /**
   * Resolves with the next event named `names` (one name or several), including one that arrived
   * earlier and was not consumed. Rejects with LuoTimeoutError after `timeoutMs`, or
   * LuoConnectionClosed when the connection closes first.
   */
  waitFor(names: string | readonly string[], opts: WaitOptions = {}): Promise<Received> {
    return this.inbox.waitFor(names, opts);
  }

  /** Closes the connection and the event loop. Outstanding requests and waits reject. Idempotent. */
  close(): void {
    if (this.closeReason === null) this.conn.close("closed by the client");
    this.dropBufferedEvents();
    this.loop.close();
  }

  // ---- client requests ------------------------------------------------------------------------

  /** SUBSCRIBE: register `id` on this connection. The reply says `restored` (a session awaits CLAIM). */
  subscribe(id: string, opts?: RequestOptions): Promise<Message> {
    return this.request({ cmd: "SUBSCRIBE", id } satisfies RequestOf<"SUBSCRIBE">, [], opts);
  }

  /**
   * PREPARE: this client's session for the next update, now, so that memfds can be preserved
   * before any update starts (their contents stay live; only their size is frozen). The fd is
   * yours and stays valid across aborted updates; START_PRESERVATION then only asks you to
   * quiesce (waitForSession() returns this fd with `prepared: true`). UNSUBSCRIBE or disconnecting
   * drops luod's copy; close yours too, and the kernel unpreserves the memfds.
   */
  async prepare(opts?: RequestOptions): Promise<Preservation> {
    const { msg, fds } = await this.call({ cmd: "PREPARE" } satisfies RequestOf<"PREPARE">, [], opts);
    if (fds.length !== 1) {
      closeQuietly(fds);
      throw new LuoError("EBADMSG", `PREPARE's reply came with ${fds.length} fds instead of the session fd`, msg);
    }
    if (this.preparedFd !== null) closeQuietly(fds[0]!); // the same session again: keep the first fd
    else this.preparedFd = fds[0]!;
    return { id: String(msg.id ?? ""), session: String(msg.session ?? ""), sessionFd: this.preparedFd, prepared: true, update: null, deadline: null };
  }

  /** READY: every memfd is preserved into the session luod sent. */
  ready(opts?: RequestOptions): Promise<Message> {
    return this.request({ cmd: "READY" } satisfies RequestOf<"READY">, [], opts);
  }

  /** FAIL: this client cannot preserve; the update is aborted. */
  fail(reason?: string, opts?: RequestOptions): Promise<Message> {
    const req: RequestOf<"FAIL"> = reason === undefined ? { cmd: "FAIL" } : { cmd: "FAIL", reason };
    return this.request(req, [], opts);
  }

  /** UNSUBSCRIBE. A prepared session's fd (prepare()) stays yours: close it to unpreserve. */
  async unsubscribe(opts?: RequestOptions): Promise<Message> {
    const reply = await this.request({ cmd: "UNSUBSCRIBE" } satisfies RequestOf<"UNSUBSCRIBE">, [], opts);
    this.preparedFd = null;
    return reply;
  }

  /**
   * CLAIM after a live-update boot: the restored session of `id`. Retrieve the memfds from
   * `sessionFd` (retrieveMemfd), finishSession() it, close it, then finished(id).
   */
  async claim(id: string, opts?: RequestOptions): Promise<{ session: string; sessionFd: number }> {
    const { msg, fds } = await this.call({ cmd: "CLAIM", id } satisfies RequestOf<"CLAIM">, [], opts);
    if (fds.length !== 1) {
      closeQuietly(fds);
      throw new LuoError("EBADMSG", `CLAIMED for ${id} came with ${fds.length} fds instead of the session fd`, msg);
    }
    return { session: String(msg.session ?? ""), sessionFd: fds[0]! };
  }

  /** FINISHED: the restored session of `id` is finished; luod drops its copy. */
  finished(id: string, opts?: RequestOptions): Promise<Message> {
    return this.request({ cmd: "FINISHED", id } satisfies RequestOf<"FINISHED">, [], opts);
  }

  /**
   * Waits for the next update's session: PRESERVATION_REQUEST (optional) then START_PRESERVATION
   * with the session fd. Rejects with LuoError ECANCELED if ABORTED comes first.
   */
  async waitForSession(opts: WaitOptions = {}): Promise<Preservation> {
    const until = opts.timeoutMs === undefined ? Infinity : Date.now() + opts.timeoutMs;
    let deadline: string | null = null;
    for (;;) {
      const left = until === Infinity ? undefined : Math.max(0, until - Date.now());
      const { msg, fds } = await this.waitFor(["PRESERVATION_REQUEST", "START_PRESERVATION", "ABORTED"], { timeoutMs: left });
      if (msg.event === "PRESERVATION_REQUEST") {
        closeQuietly(fds);
        deadline = typeof msg.deadline === "string" ? msg.deadline : null;
        continue;
      }
      if (msg.event === "ABORTED") {
        closeQuietly(fds);
        throw new LuoError("ECANCELED", `update aborted: ${String(msg.reason ?? "no reason given")}`, msg);
      }
      const prepared = msg.prepared === true;
      if (fds.length !== (prepared ? 0 : 1) || (prepared && this.preparedFd === null)) {
        closeQuietly(fds);
        throw new LuoError("EBADMSG", `START_PRESERVATION${prepared ? " of a prepared session" : ""} came with ${fds.length} fds`, msg);
      }
      return {
        id: String(msg.id ?? ""),
        session: String(msg.session ?? ""),
        sessionFd: prepared ? this.preparedFd! : fds[0]!,
        prepared,
        update: typeof msg.update === "number" ? msg.update : null,
        deadline,
      };
    }
  }

  // ---- admin requests -------------------------------------------------------------------------

  /**
   * KEXEC. Resolves when a dry run completes, or once luod sent REBOOTING and the connection went
   * away (the machine is jumping; on a real jump this process usually vanishes first). Rejects
   * with LuoError ECANCELED / ETIMEDOUT / … (reply in `.reply`, with `timings`) when the update
   * was aborted, including when reboot() returned after REBOOTING.
   */
  kexec(o: KexecOptions = {}): Promise<KexecResult> {
    const req: RequestOf<"KEXEC"> = { cmd: "KEXEC" };
    if (o.timeoutMs !== undefined) req.timeout_ms = o.timeoutMs;
    if (o.dryRun) req.dry_run = true;
    if (o.force) req.force = true;
    let rebooting: Message | null = null;
    const intercept: Interceptor = (msg, fds) => {
      if (msg.event === "PROGRESS") {
        closeQuietly(fds);
        o.onProgress?.(msg);
        return true;
      }
      if (msg.event === "REBOOTING") {
        closeQuietly(fds);
        rebooting = msg;
        o.onRebooting?.(msg);
        return true;
      }
      return false;
    };
    const stopIntercepting = this.inbox.intercept(intercept);
    return this.call(req).then(
      ({ msg, fds }) => {
        stopIntercepting();
        closeQuietly(fds);
        return { rebooting: false as const, dryRun: msg.dry_run === true, timings: timingsOf(msg), reply: msg };
      },
      (e: unknown) => {
        stopIntercepting();
        if (rebooting && e instanceof LuoConnectionClosed) {
          const ev: Message = rebooting;
          return { rebooting: true as const, timings: timingsOf(ev), event: ev };
        }
        throw e;
      },
    );
  }

  // ---- the connection ------------------------------------------------------------------------

  private onClose(reason: string): void {
    this.closeReason = reason;
    const byUs = reason === "closed by the client";
    // the Connection closes on a line over MAX_REPLY_BYTES and on more fds than a read takes:
    // luod broke the protocol, it did not just go away
    const broken = /^(EMSGSIZE|MSG_CTRUNC):/.exec(reason);
    const error =
      this.fatalError ??
      (broken
        ? new LuoProtocolError(broken[1] === "EMSGSIZE" ? `a line over ${MAX_REPLY_BYTES} bytes` : "more fds in one message than a reply may carry")
        : new LuoConnectionClosed(
            byUs ? "ESHUTDOWN" : "ECONNRESET",
            byUs ? "the client was closed" : `lost the connection to luod (${reason})`,
          ));
    this.inbox.closed(error, reason); // buffered events stay readable; close() closes their fds
    // No connection, no reason to keep an epoll worker: let the process exit.
    this.loop.close();
  }

  private fatal(e: unknown): void {
    const message = e instanceof Error ? e.message : String(e);
    if (this.closeReason === null && this.fatalError === null) this.fatalError = e instanceof LuoError ? e : new LuoError("EIO", message);
    if (this.closeReason === null) this.conn?.close(`client error: ${message}`);
    this.loop.close();
  }

  /** Closes fds of events nobody took (call when you no longer want them). */
  dropBufferedEvents(): void {
    this.inbox.dropBuffered();
  }
}

function timingsOf(msg: Message): Record<string, number> {
  const t = msg.timings;
  if (typeof t !== "object" || t === null) return {};
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(t)) if (typeof v === "number") out[k] = v;
  return out;
}


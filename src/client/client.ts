// LuoClient: the TypeScript client of luod's protocol v1 (docs/protocol.md), for luoctl, the
// tests, the demo and real applications.
//
// One client = one connection = one EventLoop (one epoll worker thread). The loop keeps the
// process alive while the connection is open; close() (or luod closing the connection) releases
// it, so a script that closes its client exits normally.
//
// Messages from luod are dispatched like this:
//  * a reply (`reply` + boolean `ok`) goes to the oldest outstanding request with the same `tag`
//    (when the reply has one) or else the same `cmd` (FIFO). `CLAIMED` is the reply to CLAIM (the
//    seed protocol's form without `reply` is accepted too);
//  * an event goes to the first waitFor() waiting for it, else to the on() listeners, else into a
//    small buffer that later waitFor() calls look at first (an event can arrive in the same read as
//    the reply that precedes it, before the caller had a chance to call waitFor).
//
// File descriptors that arrive with a message belong to whoever receives the message: the caller
// of call()/claim()/waitFor(), or the on() listeners. request() closes any it gets. Fds of
// buffered events are closed if the buffer overflows or the client closes.
import { EventLoop } from "../kernel/epoll";
import { Connection } from "../wire/connection";
import { LuoRequests } from "./requests";
import { closeQuietly } from "../kernel/fd";
import { errorCodeOf } from "../wire/errors";
import { MAX_REPLY_BYTES } from "../wire/framing";
import { LuoConnectionClosed, LuoError, LuoTimeoutError } from "./errors";
import { DEFAULT_SOCKET, connectWithRetry } from "./connect";

export { DEFAULT_SOCKET, connectWithRetry };

export type Message = Record<string, unknown>;
export type Tag = string | number;

export interface Received {
  msg: Message;
  /** File descriptors that came with the message; the receiver owns (and must close) them. */
  fds: number[];
}

export type EventListener = (msg: Message, fds: number[]) => void;

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

export interface RequestOptions {
  /** Reject with LuoTimeoutError when no reply came in time (the late reply is then dropped). */
  timeoutMs?: number;
}

export interface WaitOptions {
  /** Default: wait forever (until the connection closes). */
  timeoutMs?: number;
}

export interface LoadOptions {
  kernelFd: number;
  initrdFd?: number | null;
  cmdline: string;
  force?: boolean;
  sha256?: string;
}

export interface KexecOptions {
  /** READY deadline for the clients (luod's default: 30000). */
  timeoutMs?: number;
  dryRun?: boolean;
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

// ---- reply shapes (protocol v1 as luod sends it; not validated here: luod may add fields) ----

export interface ClientInfo extends Message {
  id: string;
  uid: number;
  gid: number;
  pid: number;
  unit?: string | null;
  /** subscribed | prepared | preserving | ready */
  state: string;
  connected?: boolean;
  /** ISO 8601: when it subscribed. */
  since: string;
  /** The session name during an update. */
  session?: string | null;
}

export interface RestoredInfo extends Message {
  id: string;
  session: string;
  /** unclaimed | claimed | finished | discarded */
  state: string;
  uid?: number;
  unit?: string | null;
  age_s?: number;
}

export interface UpdateInfo extends Message {
  attempt: number;
  dry_run?: boolean;
  ready: number;
  total: number;
  waiting: string[];
  remaining_ms: number;
}

export interface StatusReply extends Message {
  phase: string;
  update: UpdateInfo | null;
  clients: { subscribed: number; ready: number } & Message;
  kernel: ({ loaded: boolean; version?: string; sha256?: string; cmdline?: string; loaded_at?: string } & Message) | null;
  restored: RestoredInfo[];
}

export interface ListReply extends Message {
  clients: ClientInfo[];
}

export interface LoadReply extends Message {
  kernel: { version: string; size: number; sha256: string } & Message;
  initrd: ({ size: number } & Message) | null;
  /** The command line as loaded (normalized by luod). */
  cmdline: string;
}

export interface CheckReply extends Message {
  ready: boolean;
  checks: ({ name: string; ok: boolean; detail: string } & Message)[];
}

export interface AbortReply extends Message {
  /** Whether an update was running. */
  aborted: boolean;
}

interface Pending {
  cmd: string;
  tag?: Tag;
  /** Timed out: the reply is still expected (it keeps its FIFO place) but is dropped. */
  abandoned: boolean;
  resolve(r: Received): void;
  reject(e: Error): void;
}

interface Waiter {
  names: ReadonlySet<string>;
  resolve(r: Received): void;
  reject(e: Error): void;
  timer: ReturnType<typeof setTimeout> | null;
}

/** Internal consumers that see events before waiters and listeners (kexec progress). */
type Interceptor = (msg: Message, fds: number[]) => boolean;



export class LuoClient extends LuoRequests {
  private readonly pending: Pending[] = [];
  private readonly waiters: Waiter[] = [];
  private readonly listeners = new Map<string, Set<EventListener>>();
  private readonly buffered: Received[] = [];
  private readonly interceptors = new Set<Interceptor>();
  private readonly closeListeners = new Set<(reason: string) => void>();
  private closeReason: string | null = null;
  private closeError: LuoConnectionClosed | null = null;
  private conn!: Connection;
  /** The session fd prepare() returned: START_PRESERVATION of a prepared session brings none. */
  private preparedFd: number | null = null;

  private constructor(
    readonly path: string,
    private readonly loop: EventLoop,
    private readonly maxBuffered: number,
    private readonly requestTimeoutMs: number,
  ) {
    super();
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
        onMessage: (msg, fds) => client.onMessage(msg, fds),
        onInvalid: (code, message) => client.fatal(new LuoError(code, `invalid message from luod: ${message}`)),
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
    if (this.closeError) return Promise.reject(this.closeError);
    const msg: Message = { ...obj };
    if (fds.length > 0) msg.fds = fds.length;
    else delete msg.fds;
    return new Promise<Received>((resolve, reject) => {
      const p: Pending = { cmd: obj.cmd, abandoned: false, resolve, reject };
      if (typeof obj.tag === "string" || typeof obj.tag === "number") p.tag = obj.tag;
      this.pending.push(p);
      let sent: boolean;
      try {
        sent = this.conn.send(msg, fds);
      } catch (e) {
        this.pending.splice(this.pending.indexOf(p), 1);
        reject(e instanceof LuoError ? e : new LuoError(errorCodeOf(e, "EINVAL"), (e as Error).message));
        return;
      }
      if (!sent) return; // the connection closed: onClose rejected p already
      const timeoutMs = opts.timeoutMs ?? (obj.cmd === "KEXEC" ? undefined : this.requestTimeoutMs);
      if (timeoutMs !== undefined) {
        const timer = setTimeout(() => {
          if (p.abandoned || !this.pending.includes(p)) return;
          p.abandoned = true;
          reject(new LuoTimeoutError(`no reply to ${obj.cmd} within ${timeoutMs} ms`));
        }, timeoutMs);
        const settle = <T>(f: (x: T) => void) => (x: T) => {
          clearTimeout(timer);
          f(x);
        };
        p.resolve = settle(resolve);
        p.reject = settle(reject);
      }
    });
  }



  /**
   * Listen to events (`"PROGRESS"`, `"ABORTED"`…, or `"*"` for all). Events a waitFor() takes
   * are not seen here. Fds that come with an event are the listeners' to close.
   * `"close"` is special: cb({event:"close", reason}, []) once the connection closes.
   * Returns a function that removes the listener.
   */
  on(event: string, cb: EventListener): () => void {
    if (event === "close") {
      const f = (reason: string) => cb({ event: "close", reason }, []);
      this.closeListeners.add(f);
      return () => this.closeListeners.delete(f);
    }
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(cb);
    return () => set!.delete(cb);
  }

  /**
   * Resolves with the next event named `names` (one name or several), including one that arrived
   * earlier and was not consumed. Rejects with LuoTimeoutError after `timeoutMs`, or
   * LuoConnectionClosed when the connection closes first.
   */
  waitFor(names: string | readonly string[], opts: WaitOptions = {}): Promise<Received> {
    const set = new Set(typeof names === "string" ? [names] : names);
    const i = this.buffered.findIndex((r) => set.has(r.msg.event as string));
    if (i >= 0) return Promise.resolve(this.buffered.splice(i, 1)[0]!);
    if (this.closeError) return Promise.reject(this.closeError);
    return new Promise<Received>((resolve, reject) => {
      const w: Waiter = { names: set, resolve, reject, timer: null };
      if (opts.timeoutMs !== undefined && Number.isFinite(opts.timeoutMs)) {
        w.timer = setTimeout(() => {
          const at = this.waiters.indexOf(w);
          if (at >= 0) this.waiters.splice(at, 1);
          reject(new LuoTimeoutError(`no ${[...set].join("/")} within ${opts.timeoutMs} ms`));
        }, opts.timeoutMs);
      }
      this.waiters.push(w);
    });
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
    return this.request({ cmd: "SUBSCRIBE", id }, [], opts);
  }

  /**
   * PREPARE: this client's session for the next update, now, so that memfds can be preserved
   * before any update starts (their contents stay live; only their size is frozen). The fd is
   * yours and stays valid across aborted updates; START_PRESERVATION then only asks you to
   * quiesce (waitForSession() returns this fd with `prepared: true`). UNSUBSCRIBE or disconnecting
   * drops luod's copy; close yours too, and the kernel unpreserves the memfds.
   */
  async prepare(opts?: RequestOptions): Promise<Preservation> {
    const { msg, fds } = await this.call({ cmd: "PREPARE" }, [], opts);
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
    return this.request({ cmd: "READY" }, [], opts);
  }

  /** FAIL: this client cannot preserve; the update is aborted. */
  fail(reason?: string, opts?: RequestOptions): Promise<Message> {
    return this.request(reason === undefined ? { cmd: "FAIL" } : { cmd: "FAIL", reason }, [], opts);
  }

  /** UNSUBSCRIBE. A prepared session's fd (prepare()) stays yours: close it to unpreserve. */
  async unsubscribe(opts?: RequestOptions): Promise<Message> {
    const reply = await this.request({ cmd: "UNSUBSCRIBE" }, [], opts);
    this.preparedFd = null;
    return reply;
  }

  /**
   * CLAIM after a live-update boot: the restored session of `id`. Retrieve the memfds from
   * `sessionFd` (retrieveMemfd), finishSession() it, close it, then finished(id).
   */
  async claim(id: string, opts?: RequestOptions): Promise<{ session: string; sessionFd: number }> {
    const { msg, fds } = await this.call({ cmd: "CLAIM", id }, [], opts);
    if (fds.length !== 1) {
      closeQuietly(fds);
      throw new LuoError("EBADMSG", `CLAIMED for ${id} came with ${fds.length} fds instead of the session fd`, msg);
    }
    return { session: String(msg.session ?? ""), sessionFd: fds[0]! };
  }

  /** FINISHED: the restored session of `id` is finished; luod drops its copy. */
  finished(id: string, opts?: RequestOptions): Promise<Message> {
    return this.request({ cmd: "FINISHED", id }, [], opts);
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
    const req: Message & { cmd: string } = { cmd: "KEXEC" };
    if (o.timeoutMs !== undefined) req.timeout_ms = o.timeoutMs;
    if (o.dryRun) req.dry_run = true;
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
    this.interceptors.add(intercept);
    return this.call(req).then(
      ({ msg, fds }) => {
        this.interceptors.delete(intercept);
        closeQuietly(fds);
        return { rebooting: false as const, dryRun: msg.dry_run === true, timings: timingsOf(msg), reply: msg };
      },
      (e: unknown) => {
        this.interceptors.delete(intercept);
        if (rebooting && e instanceof LuoConnectionClosed) {
          const ev: Message = rebooting;
          return { rebooting: true as const, timings: timingsOf(ev), event: ev };
        }
        throw e;
      },
    );
  }

  // ---- dispatch -------------------------------------------------------------------------------

  private onMessage(msg: Message, fds: number[]): void {
    if ("reply" in msg && typeof msg.ok === "boolean") {
      this.onReply(msg, fds);
      return;
    }
    const name = typeof msg.event === "string" ? msg.event : null;
    if (name === null) {
      closeQuietly(fds); // neither reply nor event: protocol v1 lets us ignore it
      return;
    }
    // The seed protocol's CLAIMED has no `reply`: it answers the oldest CLAIM.
    if (name === "CLAIMED" && this.pending.some((p) => p.cmd === "CLAIM")) {
      this.onReply({ ...msg, reply: "CLAIM", ok: true }, fds);
      return;
    }
    for (const f of this.interceptors) if (f(msg, fds)) return;
    const wi = this.waiters.findIndex((w) => w.names.has(name));
    if (wi >= 0) {
      const w = this.waiters.splice(wi, 1)[0]!;
      if (w.timer) clearTimeout(w.timer);
      w.resolve({ msg, fds });
      return;
    }
    const ls = [...(this.listeners.get(name) ?? []), ...(this.listeners.get("*") ?? [])];
    if (ls.length > 0) {
      for (const cb of ls) {
        try {
          cb(msg, fds);
        } catch (e) {
          queueMicrotask(() => {
            throw e; // a listener's bug is the application's, not the connection's
          });
        }
      }
      return;
    }
    this.buffered.push({ msg, fds });
    while (this.buffered.length > this.maxBuffered) closeQuietly(this.buffered.shift()!.fds);
  }

  private onReply(msg: Message, fds: number[]): void {
    let i = -1;
    if (msg.tag !== undefined) i = this.pending.findIndex((p) => p.tag === msg.tag);
    if (i < 0) i = this.pending.findIndex((p) => p.cmd === msg.reply);
    if (i < 0 && msg.reply === null) i = 0; // luod could not read our cmd: the oldest request
    if (i < 0 || i >= this.pending.length) {
      closeQuietly(fds); // a reply to nothing we sent: ignore it
      return;
    }
    const p = this.pending.splice(i, 1)[0]!;
    if (p.abandoned) {
      closeQuietly(fds);
      return;
    }
    if (msg.ok === true) {
      p.resolve({ msg, fds });
      return;
    }
    closeQuietly(fds);
    const err = (typeof msg.error === "object" && msg.error !== null ? msg.error : {}) as Message;
    const code = typeof err.code === "string" ? err.code : "EIO";
    const message = typeof err.message === "string" && err.message !== "" ? err.message : `${p.cmd} failed with ${code}`;
    p.reject(new LuoError(code, message, msg));
  }

  private onClose(reason: string): void {
    this.closeReason = reason;
    const byUs = reason === "closed by the client";
    this.closeError = new LuoConnectionClosed(
      byUs ? "ESHUTDOWN" : "ECONNRESET",
      byUs ? "the client was closed" : `lost the connection to luod (${reason})`,
    );
    for (const p of this.pending.splice(0)) if (!p.abandoned) p.reject(this.closeError);
    for (const w of this.waiters.splice(0)) {
      if (w.timer) clearTimeout(w.timer);
      w.reject(this.closeError);
    }
    // Buffered events stay readable by waitFor() (a START_PRESERVATION + fd may be in there);
    // close() closes their fds.
    for (const f of this.closeListeners) {
      try {
        f(reason);
      } catch (e) {
        queueMicrotask(() => {
          throw e;
        });
      }
    }
    // No connection, no reason to keep an epoll worker: let the process exit.
    this.loop.close();
  }

  private fatal(e: unknown): void {
    const message = e instanceof Error ? e.message : String(e);
    if (this.closeReason === null) this.conn?.close(`client error: ${message}`);
    this.loop.close();
  }

  /** Closes fds of events nobody took (call when you no longer want them). */
  dropBufferedEvents(): void {
    for (const r of this.buffered.splice(0)) closeQuietly(r.fds);
  }
}

function timingsOf(msg: Message): Record<string, number> {
  const t = msg.timings;
  if (typeof t !== "object" || t === null) return {};
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(t)) if (typeof v === "number") out[k] = v;
  return out;
}


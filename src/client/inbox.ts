// Where LuoClient's incoming messages go: the replies awaited by requests, the events awaited by
// waitFor(), the on() listeners, and a small buffer for events nobody took yet.
//
//  * a reply (a message with `reply`, or `ok` and no `event`) goes to the oldest outstanding request with the same `tag`
//    (when the reply has one) or else the same `cmd` (FIFO). `CLAIMED` is the reply to CLAIM (the
//    seed protocol's form without `reply` is accepted too). It must be a valid reply to that
//    request (replyProblem: envelope, tag, fds, field types); one that is not, or that answers
//    nothing we sent, is a protocol error: onInvalid (LuoClient closes the connection);
//  * an event goes to the interceptors (KEXEC's progress), then to the first waitFor() waiting for
//    it, else to the on() listeners, else into a small buffer that later waitFor() calls look at
//    first (an event can arrive in the same read as the reply that precedes it, before the caller
//    had a chance to call waitFor).
//
// File descriptors that arrive with a message belong to whoever receives the message. Fds of
// buffered events are closed if the buffer overflows, or by dropBuffered().
import { closeQuietly } from "../kernel/fd";
import { errorCodeOf, oneLine } from "../wire/errors";
import { replyProblem, type Tag } from "../wire/replies";
import { isEvent } from "../wire/events";
import { LuoError, LuoProtocolError, LuoTimeoutError, replyFailure } from "./errors";
import type { Message, Received } from "./requests";

export type EventListener = (msg: Message, fds: number[]) => void;

/** Consumers that see events before waiters and listeners (kexec progress); true: taken. */
export type Interceptor = (msg: Message, fds: number[]) => boolean;

export interface WaitOptions {
  /** Default: wait forever (until the connection closes). */
  timeoutMs?: number;
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

export class Inbox {
  private readonly pending: Pending[] = [];
  private readonly waiters: Waiter[] = [];
  private readonly listeners = new Map<string, Set<EventListener>>();
  private readonly buffered: Received[] = [];
  private readonly interceptors = new Set<Interceptor>();
  private readonly closeListeners = new Set<(reason: string) => void>();
  private closeError: LuoError | null = null;

  /** `onInvalid`: luod sent something that is not protocol v1; the connection cannot be trusted. */
  constructor(private readonly maxBuffered: number, private readonly onInvalid: (e: LuoProtocolError) => void = () => {}) {}

  /**
   * Resolves with the reply to the request `send` writes (its cmd and tag say which reply that
   * is). A send that throws rejects at once (as a LuoError); one that returns false found the
   * connection closed, which rejected the request already. After `timeoutMs` (undefined: never)
   * it rejects with LuoTimeoutError and the late reply is dropped.
   */
  expectReply(cmd: string, tag: unknown, timeoutMs: number | undefined, send: () => boolean): Promise<Received> {
    if (this.closeError) return Promise.reject(this.closeError);
    return new Promise<Received>((resolve, reject) => {
      const p: Pending = { cmd, abandoned: false, resolve, reject };
      if (typeof tag === "string" || typeof tag === "number") p.tag = tag;
      this.pending.push(p); // first: a send that closes the connection must find it
      let sent: boolean;
      try {
        sent = send();
      } catch (e) {
        this.pending.splice(this.pending.indexOf(p), 1);
        reject(e instanceof LuoError ? e : new LuoError(errorCodeOf(e, "EINVAL"), (e as Error).message));
        return;
      }
      if (!sent) return; // the connection closed: closed() rejected p already
      if (timeoutMs !== undefined) {
        const timer = setTimeout(() => {
          if (p.abandoned || !this.pending.includes(p)) return;
          p.abandoned = true;
          reject(new LuoTimeoutError(`no reply to ${cmd} within ${timeoutMs} ms`));
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

  /** See LuoClient.on(). */
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

  /** See LuoClient.waitFor(). */
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

  /** Adds an interceptor; returns the function that removes it. */
  intercept(f: Interceptor): () => void {
    this.interceptors.add(f);
    return () => this.interceptors.delete(f);
  }

  /** One message from luod, with the fds that came with it. */
  deliver(msg: Message, fds: number[]): void {
    // a reply has `reply`, or `ok` without being an event (an event may gain fields, even `ok`)
    if ("reply" in msg || ("ok" in msg && !isEvent(msg))) {
      this.onReply(msg, fds);
      return;
    }
    const name = isEvent(msg) ? msg.event : null;
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

  /**
   * The connection closed: every request and wait rejects with `error`, the close listeners hear
   * `reason`. Buffered events stay readable by waitFor() (a START_PRESERVATION + fd may be in
   * there); dropBuffered() closes their fds.
   */
  closed(error: LuoError, reason: string): void {
    this.closeError = error;
    for (const p of this.pending.splice(0)) if (!p.abandoned) p.reject(error);
    for (const w of this.waiters.splice(0)) {
      if (w.timer) clearTimeout(w.timer);
      w.reject(error);
    }
    for (const f of this.closeListeners) {
      try {
        f(reason);
      } catch (e) {
        queueMicrotask(() => {
          throw e;
        });
      }
    }
  }

  /** Closes the fds of events nobody took. */
  dropBuffered(): void {
    for (const r of this.buffered.splice(0)) closeQuietly(r.fds);
  }

  private onReply(msg: Message, fds: number[]): void {
    let i = -1;
    if (msg.tag !== undefined) i = this.pending.findIndex((p) => p.tag === msg.tag);
    if (i < 0) i = this.pending.findIndex((p) => p.cmd === msg.reply);
    if (i < 0 && msg.reply === null) i = 0; // luod could not read our cmd: the oldest request
    if (i < 0 || i >= this.pending.length) {
      closeQuietly(fds);
      this.onInvalid(new LuoProtocolError(`a reply to ${oneLine(String(JSON.stringify(msg.reply)), 40)} that nothing asked for`));
      return;
    }
    const problem = replyProblem(msg, this.pending[i]!.cmd, this.pending[i]!.tag);
    if (problem !== null) {
      closeQuietly(fds);
      this.onInvalid(new LuoProtocolError(oneLine(problem, 200))); // the request rejects with it as the connection closes
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
    p.reject(replyFailure(msg, p.cmd));
  }
}

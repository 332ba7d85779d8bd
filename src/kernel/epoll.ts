// Readiness for raw fds without starving Bun's own event loop (docs/bun.md#the-event-loop, the
// "worker" design).
// Idle: a Worker blocks in epoll_wait. When something is ready it wakes this thread, which then
// polls the same epoll fd itself (epoll_wait with timeout 0) until nothing is ready, while the
// worker waits on a shared flag; only then does the worker block again. So a burst of events
// costs one thread handoff, not one per batch.
// Registrations are level-triggered, and "fires once until rearm" is kept in userspace: rearm()
// with the mask already registered makes no syscall. A watch that is reported while disarmed is
// switched off in the kernel then (EPOLL_CTL_MOD), so nothing spins on an fd nobody reads.
import { ptr } from "bun:ffi";
import { check, Errno, lastErrno, SysError, sys } from "./libc.ts";
import { workerUrl } from "../worker-url";

export const EPOLLIN = 0x001;
export const EPOLLPRI = 0x002;
export const EPOLLOUT = 0x004;
export const EPOLLERR = 0x008;
export const EPOLLHUP = 0x010;
export const EPOLLRDHUP = 0x2000;
const EPOLLONESHOT = 1 << 30;

const EPOLL_CTL_ADD = 1;
const EPOLL_CTL_DEL = 2;
const EPOLL_CTL_MOD = 3;
const EPOLL_CLOEXEC = 0o2000000;
const EFD_CLOEXEC = 0o2000000;
const EFD_NONBLOCK = 0o4000;

/** struct epoll_event is PACKED on x86_64: u32 events at 0, u64 data at 4 (12 bytes). */
export const EPOLL_EVENT_SIZE = 12;
/** epoll data of the stop eventfd; registration keys are positive. */
export const STOP_KEY = -1;

/** Values of the flag shared with the worker: who waits for events now. */
export const WORKER_POLLS = 0;
export const MAIN_POLLS = 1;
export const STOP = 2;

function putEvent(view: DataView, events: number, key: number): void {
  view.setUint32(0, events >>> 0, true);
  view.setInt32(4, key, true);
  view.setInt32(8, key < 0 ? -1 : 0, true); // sign-extend: data is (int64)key
}

interface Watch {
  readonly fd: number;
  readonly key: number;
  readonly onReady: (events: number) => void;
  /** What the owner waits for; 0 from the moment onReady is called until rearm(). */
  armed: number;
  /** The mask registered in the kernel (level-triggered), or OFF. */
  inKernel: number;
}

/** inKernel of a watch switched off: EPOLLONESHOT with no events reports ERR/HUP once at most. */
const OFF = EPOLLONESHOT;
/** epoll_wait rounds this thread makes in one task before letting timers and I/O of Bun run. */
const ROUNDS_PER_TASK = 32;
const MAX_EVENTS = 256;

export interface EventLoopOptions {
  /**
   * Called with an exception thrown by an onReady callback (after the rest of that batch was
   * dispatched) or with a fatal worker error. Default: rethrow, which crashes the process.
   */
  onError?: (err: unknown) => void;
}

/**
 * One epoll instance, served by one Worker while idle and by this thread while busy.
 *
 * - watch(fd, events, cb): cb(events) fires once; call rearm(fd, events) when ready for more.
 *   Readiness is level-triggered: data left unread is reported again after rearm, so a reader
 *   need not drain to EAGAIN. EPOLLERR/EPOLLHUP are always reported.
 * - Events are matched by a per-registration key, not by fd number, so an event queued for an
 *   fd that was unwatched (and possibly closed and reused) before it was dispatched is dropped.
 * - unwatch(fd) before close(fd). If the fd was already closed, unwatch still forgets it — but
 *   if its file lives on in a dup (or another process), its level-triggered registration stays
 *   in epoll and keeps waking this thread for nothing: never close a watched fd first.
 *
 * Liveness (ref/unref): like a Node handle, the loop keeps the process alive while it watches at
 * least one fd and has not been unref()'d; with nothing watched, or after unref(), it does not
 * (the worker thread blocked in epoll_wait is then unref'd and does not delay exit). close()
 * holds the process only until the woken worker acknowledges, then the worker is terminated and
 * `closed` resolves: a daemon's main module can simply return after close().
 */
export class EventLoop {
  /** Resolves once the worker has stopped and the epoll and eventfd fds are closed. */
  readonly closed: Promise<void>;
  /** epoll_wait calls made by this thread (while busy): a loop that spins shows here. */
  polls = 0;

  private readonly epfd: number;
  private readonly stopFd: number;
  private readonly worker: Worker;
  /** Shared with the worker: WORKER_POLLS, MAIN_POLLS or STOP (epoll-worker.ts). */
  private readonly turn = new Int32Array(new SharedArrayBuffer(4));
  private readonly ctlEvent = new DataView(new ArrayBuffer(EPOLL_EVENT_SIZE));
  private readonly ctlEventAddr = ptr(this.ctlEvent);
  private readonly events = new DataView(new ArrayBuffer(EPOLL_EVENT_SIZE * MAX_EVENTS));
  private readonly eventsAddr = ptr(this.events);
  private readonly byFd = new Map<number, Watch>();
  private readonly byKey = new Map<number, Watch>();
  private readonly onError: (err: unknown) => void;
  private nextKey = 1;
  private pollScheduled = false;
  private state: "open" | "closing" | "closed" = "open";
  private wantRef = true;
  private isRefed = true;
  private resolveClosed!: () => void;

  constructor(opts: EventLoopOptions = {}) {
    this.onError =
      opts.onError ??
      ((err) => {
        throw err;
      });
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
    this.epfd = check("epoll_create1", sys.epoll_create1(EPOLL_CLOEXEC));
    try {
      this.stopFd = check("eventfd", sys.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    } catch (e) {
      sys.close(this.epfd);
      throw e;
    }
    this.ctl(EPOLL_CTL_ADD, this.stopFd, EPOLLIN, STOP_KEY);
    this.worker = new Worker(workerUrl(import.meta.url, "kernel", "epoll-worker"));
    this.worker.onmessage = (e: MessageEvent<number>) => this.onWorkerMessage(e.data);
    this.worker.onerror = (e: ErrorEvent) => this.fail(e.error ?? new Error(e.message));
    this.worker.postMessage({ epfd: this.epfd, turn: this.turn });
    this.syncRef();
  }

  /** Register fd for `events` (level-triggered, fires once until rearm). Throws if already watched. */
  watch(fd: number, events: number, onReady: (events: number) => void): void {
    this.assertOpen("watch");
    if (this.byFd.has(fd)) throw new Error(`EventLoop.watch: fd ${fd} is already watched`);
    const key = this.allocKey();
    this.ctl(EPOLL_CTL_ADD, fd, events, key);
    const w: Watch = { fd, key, onReady, armed: events, inKernel: events };
    this.byFd.set(fd, w);
    this.byKey.set(key, w);
    this.syncRef();
    this.pollSoon();
  }

  /** Arm fd again for one event of `events`; no syscall when the mask is unchanged. */
  rearm(fd: number, events: number): void {
    this.assertOpen("rearm");
    const w = this.byFd.get(fd);
    if (!w) throw new Error(`EventLoop.rearm: fd ${fd} is not watched`);
    w.armed = events;
    this.register(w, events);
  }

  /** Forget fd; a queued event for it is dropped. Safe if fd is unknown or already closed. */
  unwatch(fd: number): void {
    const w = this.byFd.get(fd);
    if (!w) return;
    this.byFd.delete(fd);
    this.byKey.delete(w.key);
    if (this.state === "open") {
      putEvent(this.ctlEvent, 0, 0);
      if (sys.epoll_ctl(this.epfd, EPOLL_CTL_DEL, fd, this.ctlEventAddr) === -1) {
        const e = lastErrno();
        // EBADF/ENOENT: the fd was closed first and epoll already dropped it
        if (e !== Errno.EBADF && e !== Errno.ENOENT) throw new SysError(`epoll_ctl(DEL, fd ${fd})`, e);
      }
    }
    this.syncRef();
  }

  /** Stop the worker and close the epoll fd. Watched fds are forgotten, not closed. Idempotent. */
  close(): void {
    if (this.state !== "open") return;
    this.state = "closing";
    this.byFd.clear();
    this.byKey.clear();
    this.syncRef();
    // The worker is either waiting for its turn (woken by the flag) or in epoll_wait (woken by
    // the eventfd, data = STOP_KEY). The fds are closed only when it acknowledges: closing the
    // eventfd now could unregister it before the wakeup is seen.
    Atomics.store(this.turn, 0, STOP);
    Atomics.notify(this.turn, 0);
    const one = new BigUint64Array(new ArrayBuffer(8));
    one[0] = 1n;
    check("write(eventfd)", sys.write(this.stopFd, one, 8));
  }

  /** Keep the process alive while fds are watched (the default). */
  ref(): void {
    this.wantRef = true;
    this.syncRef();
  }

  /** Do not keep the process alive on account of this loop. */
  unref(): void {
    this.wantRef = false;
    this.syncRef();
  }

  /**
   * The worker saw events and now waits: poll here until nothing is ready. Its own events are
   * not used — they may predate a rearm() made since — the poll here reports them afresh.
   */
  private onWorkerMessage(msg: number): void {
    if (msg === STOP_KEY) this.finish();
    else if (this.state === "open") this.pollHere();
  }

  /**
   * Look at the epoll set from this thread on the next turn, without waiting for the worker: an
   * fd that is ready when it is watched (a backlog of connections at luod's start, while the
   * worker thread is still starting) is served at once.
   */
  private pollSoon(): void {
    if (this.pollScheduled) return;
    this.pollScheduled = true;
    setImmediate(() => {
      this.pollScheduled = false;
      // take the turn only from a worker that waits for events (not from STOP or ourselves)
      if (this.state === "open" && Atomics.compareExchange(this.turn, 0, WORKER_POLLS, MAIN_POLLS) === WORKER_POLLS) this.pollHere();
    });
  }

  private pollHere(): void {
    for (let round = 0; round < ROUNDS_PER_TASK; round++) {
      if (this.state !== "open") return; // close() has told the worker to stop
      this.polls++;
      const n = sys.epoll_wait(this.epfd, this.eventsAddr, MAX_EVENTS, 0);
      if (n === -1) {
        const e = lastErrno();
        if (e === Errno.EINTR) continue;
        this.fail(new SysError("epoll_wait", e));
        return;
      }
      if (n === 0) {
        // nothing ready: hand the waiting back to the worker (unless close() took the flag). A
        // worker still in epoll_wait at that point just goes on waiting.
        if (Atomics.compareExchange(this.turn, 0, MAIN_POLLS, WORKER_POLLS) === MAIN_POLLS) Atomics.notify(this.turn, 0);
        return;
      }
      this.dispatch(n);
    }
    // still busy: let Bun's timers and I/O run, keep the turn (the worker stays parked)
    setImmediate(() => this.pollHere());
  }

  private dispatch(n: number): void {
    const ev = this.events;
    let firstError: unknown;
    let failed = false;
    for (let i = 0; i < n; i++) {
      if (this.state !== "open") return;
      const key = ev.getInt32(EPOLL_EVENT_SIZE * i + 4, true); // low half of the u64 data
      const w = this.byKey.get(key);
      if (!w) continue; // the stop eventfd, or unwatched by an earlier callback of this batch
      const events = ev.getUint32(EPOLL_EVENT_SIZE * i, true);
      if (w.armed === 0 || (events & (w.armed | EPOLLERR | EPOLLHUP)) === 0) {
        // the owner does not wait for this (yet): stop the kernel reporting it until rearm()
        this.register(w, w.armed === 0 ? OFF : w.armed);
        continue;
      }
      w.armed = 0;
      try {
        w.onReady(events);
      } catch (e) {
        if (!failed) {
          failed = true;
          firstError = e;
        }
      }
    }
    if (failed) this.onError(firstError);
  }

  private register(w: Watch, mask: number): void {
    if (w.inKernel === mask) return;
    this.ctl(EPOLL_CTL_MOD, w.fd, mask, w.key);
    w.inKernel = mask;
  }

  private finish(): void {
    if (this.state === "closed") return;
    this.state = "closed";
    this.byFd.clear();
    this.byKey.clear();
    this.syncRef();
    sys.close(this.epfd);
    sys.close(this.stopFd);
    this.worker.terminate();
    this.resolveClosed();
  }

  private fail(err: unknown): void {
    if (this.state === "closed") return;
    this.finish();
    this.onError(err);
  }

  private syncRef(): void {
    // While closing, hold the process for the worker's acknowledgement (it is already woken, so
    // this lasts well under a millisecond); that is what makes `closed` settle.
    const want = this.state === "closing" || (this.state === "open" && this.wantRef && this.byFd.size > 0);
    if (want === this.isRefed) return;
    this.isRefed = want;
    if (want) this.worker.ref();
    else this.worker.unref();
  }

  private allocKey(): number {
    for (;;) {
      const key = this.nextKey;
      this.nextKey = key >= 0x7fffffff ? 1 : key + 1;
      if (!this.byKey.has(key)) return key;
    }
  }

  private ctl(op: number, fd: number, events: number, key: number): void {
    putEvent(this.ctlEvent, events, key);
    const name = op === EPOLL_CTL_ADD ? "ADD" : op === EPOLL_CTL_MOD ? "MOD" : "DEL";
    if (sys.epoll_ctl(this.epfd, op, fd, this.ctlEventAddr) === -1)
      throw new SysError(`epoll_ctl(${name}, fd ${fd})`, lastErrno());
  }

  private assertOpen(what: string): void {
    if (this.state !== "open") throw new Error(`EventLoop.${what}: the loop is closed`);
  }
}

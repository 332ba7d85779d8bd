// Readiness for raw fds without starving Bun's own event loop (bun-ffi.md §4, "worker" design):
// a Worker blocks in epoll_wait and posts (key, events) pairs; this thread does all I/O and
// re-arms. Every registration is EPOLLONESHOT, otherwise the worker would spin on a ready fd
// until this thread gets round to reading it.
import { existsSync } from "node:fs";
import { ptr } from "bun:ffi";
import { check, Errno, lastErrno, SysError, sys } from "./libc.ts";

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

function putEvent(view: DataView, events: number, key: number): void {
  view.setUint32(0, events >>> 0, true);
  view.setInt32(4, key, true);
  view.setInt32(8, key < 0 ? -1 : 0, true); // sign-extend: data is (int64)key
}

/**
 * From source the worker sits next to this file. In a `bun build --compile` binary all modules
 * are bundled into the entry, so import.meta.url is the binary's root (/$bunfs/root/<outfile>),
 * while the worker — a second entry point — keeps its path relative to the entries' common
 * directory, as .js: `bun build --compile src/main.ts src/kernel/epoll-worker.ts` embeds it as
 * /$bunfs/root/kernel/epoll-worker.js. (Verified with Bun 1.4.5; "./epoll-worker.ts" alone fails
 * there with ModuleNotFound.)
 */
function workerUrl(): string {
  const beside = new URL("./epoll-worker.ts", import.meta.url);
  if (!import.meta.url.startsWith("file:///$bunfs/")) return beside.href;
  for (const rel of ["./epoll-worker.js", "./kernel/epoll-worker.js", "./src/kernel/epoll-worker.js"]) {
    const url = new URL(rel, import.meta.url);
    if (existsSync(url.pathname)) return url.href;
  }
  throw new Error(
    "EventLoop: epoll-worker is not embedded in this binary; build with " +
      "`bun build --compile src/main.ts src/kernel/epoll-worker.ts`",
  );
}

interface Watch {
  readonly fd: number;
  readonly key: number;
  readonly onReady: (events: number) => void;
}

export interface EventLoopOptions {
  /**
   * Called with an exception thrown by an onReady callback (after the rest of that batch was
   * dispatched) or with a fatal worker error. Default: rethrow, which crashes the process.
   */
  onError?: (err: unknown) => void;
}

/**
 * One epoll instance served by one Worker.
 *
 * - watch(fd, events, cb): cb(events) fires once; call rearm(fd, events) when ready for more
 *   (after draining to EAGAIN). EPOLLERR/EPOLLHUP are always reported.
 * - Events are matched by a per-registration key, not by fd number, so an event queued for an
 *   fd that was unwatched (and possibly closed and reused) before it was dispatched is dropped.
 * - unwatch(fd) before close(fd). If the fd was already closed, unwatch still forgets it.
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

  private readonly epfd: number;
  private readonly stopFd: number;
  private readonly worker: Worker;
  private readonly ctlEvent = new DataView(new ArrayBuffer(EPOLL_EVENT_SIZE));
  private readonly ctlEventAddr = ptr(this.ctlEvent);
  private readonly byFd = new Map<number, Watch>();
  private readonly byKey = new Map<number, Watch>();
  private readonly onError: (err: unknown) => void;
  private nextKey = 1;
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
    this.worker = new Worker(workerUrl());
    this.worker.onmessage = (e: MessageEvent<Int32Array>) => this.dispatch(e.data);
    this.worker.onerror = (e: ErrorEvent) => this.fail(e.error ?? new Error(e.message));
    this.worker.postMessage({ epfd: this.epfd });
    this.syncRef();
  }

  /** Register fd (EPOLLONESHOT added here). Throws if fd is already watched. */
  watch(fd: number, events: number, onReady: (events: number) => void): void {
    this.assertOpen("watch");
    if (this.byFd.has(fd)) throw new Error(`EventLoop.watch: fd ${fd} is already watched`);
    const key = this.allocKey();
    this.ctl(EPOLL_CTL_ADD, fd, events | EPOLLONESHOT, key);
    const w: Watch = { fd, key, onReady };
    this.byFd.set(fd, w);
    this.byKey.set(key, w);
    this.syncRef();
  }

  /** Arm fd again for one event of `events`. */
  rearm(fd: number, events: number): void {
    this.assertOpen("rearm");
    const w = this.byFd.get(fd);
    if (!w) throw new Error(`EventLoop.rearm: fd ${fd} is not watched`);
    this.ctl(EPOLL_CTL_MOD, fd, events | EPOLLONESHOT, w.key);
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
    // Wake the worker through the eventfd (data = STOP_KEY). The fds are closed only when the
    // worker acknowledges: closing the eventfd now could unregister it before the wakeup is seen.
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

  private dispatch(pairs: Int32Array): void {
    let firstError: unknown;
    let failed = false;
    for (let i = 0; i + 1 < pairs.length; i += 2) {
      const key = pairs[i]!;
      if (key === STOP_KEY) {
        this.finish();
        return;
      }
      if (this.state !== "open") continue; // closing: only the STOP_KEY matters now
      const w = this.byKey.get(key);
      if (!w) continue; // unwatched after the worker saw the event
      try {
        w.onReady(pairs[i + 1]! >>> 0);
      } catch (e) {
        if (!failed) {
          failed = true;
          firstError = e;
        }
      }
    }
    if (failed) this.onError(firstError);
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

// Worker half of EventLoop (epoll.ts): while it has the turn, block in epoll_wait; on events,
// give the turn to the main thread (message 1) and wait on the shared flag until the main thread
// has polled the epoll set empty. The main thread may also take the turn by itself. Never does
// I/O. STOP (flag or the eventfd) ends the thread with a STOP_KEY message. Built as a second
// entry point of the binary.
// This module gets its own copy of libc.ts, hence its own thread's errno location.
import { ptr } from "bun:ffi";
import { Errno, lastErrno, SysError, sys } from "./libc.ts";
import { EPOLL_EVENT_SIZE, MAIN_POLLS, STOP, STOP_KEY, WORKER_POLLS } from "./epoll.ts";

const MAX_EVENTS = 1; // only "something is ready" matters here

function run(epfd: number, turn: Int32Array): void {
  const events = new DataView(new ArrayBuffer(EPOLL_EVENT_SIZE * MAX_EVENTS));
  const eventsAddr = ptr(events); // ArrayBuffer-backed: the address is stable
  for (;;) {
    const now = Atomics.load(turn, 0);
    if (now === STOP) break;
    if (now === MAIN_POLLS) {
      Atomics.wait(turn, 0, MAIN_POLLS); // until the main thread hands the turn back (or STOP)
      continue;
    }
    const n = sys.epoll_wait(epfd, eventsAddr, MAX_EVENTS, -1);
    if (n === -1) {
      const e = lastErrno();
      if (e === Errno.EINTR) continue;
      throw new SysError("epoll_wait", e);
    }
    // Give the turn to the main thread. If it already took it (it polls on its own when an fd
    // is watched), it is polling now: just wait for the turn to come back.
    const was = Atomics.compareExchange(turn, 0, WORKER_POLLS, MAIN_POLLS);
    if (was === STOP) break;
    if (was === WORKER_POLLS) postMessage(1); // "events are ready": the main thread polls them itself
  }
  postMessage(STOP_KEY);
}

addEventListener("message", (e: MessageEvent<{ epfd: number; turn: Int32Array }>) => {
  run(e.data.epfd, e.data.turn);
  process.exit(0); // inside a Worker this ends only the worker
});

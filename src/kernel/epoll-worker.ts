// Worker half of EventLoop (epoll.ts): block in epoll_wait, post (key, events) pairs, never do
// I/O. The STOP_KEY eventfd ends the thread. Built as a second entry point of the binary.
// This module gets its own copy of libc.ts, hence its own thread's errno location.
import { ptr } from "bun:ffi";
import { Errno, lastErrno, SysError, sys } from "./libc.ts";
import { EPOLL_EVENT_SIZE, STOP_KEY } from "./epoll.ts";

const MAX_EVENTS = 256;

function run(epfd: number): void {
  const events = new DataView(new ArrayBuffer(EPOLL_EVENT_SIZE * MAX_EVENTS));
  const eventsAddr = ptr(events); // ArrayBuffer-backed: the address is stable
  for (;;) {
    const n = sys.epoll_wait(epfd, eventsAddr, MAX_EVENTS, -1);
    if (n === -1) {
      const e = lastErrno();
      if (e === Errno.EINTR) continue;
      throw new SysError("epoll_wait", e);
    }
    const pairs = new Int32Array(2 * n);
    let stop = false;
    for (let i = 0; i < n; i++) {
      const key = events.getInt32(EPOLL_EVENT_SIZE * i + 4, true); // low half of the u64 data
      pairs[2 * i] = key;
      pairs[2 * i + 1] = events.getUint32(EPOLL_EVENT_SIZE * i, true);
      if (key === STOP_KEY) stop = true;
    }
    postMessage(pairs, [pairs.buffer]);
    if (stop) return;
  }
}

addEventListener("message", (e: MessageEvent<{ epfd: number }>) => {
  run(e.data.epfd);
  process.exit(0); // inside a Worker this ends only the worker
});

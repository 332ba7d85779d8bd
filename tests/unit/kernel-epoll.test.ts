// EventLoop: a Worker blocked in epoll_wait, ONESHOT re-arming, stale events, liveness.
import { afterEach, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { closeFd } from "../../src/kernel/fd.ts";
import { EPOLLHUP, EPOLLIN, EPOLLOUT, EPOLLRDHUP, EventLoop } from "../../src/kernel/epoll.ts";
import { MessageIo } from "../../src/kernel/scm-rights.ts";
import { socketPair } from "../../src/kernel/unix.ts";

const enc = new TextEncoder();
const io = new MessageIo();
const loops: EventLoop[] = [];
const fds: number[] = [];

function pair(): [number, number] {
  const p = socketPair();
  fds.push(...p);
  return p;
}
function newLoop(opts?: ConstructorParameters<typeof EventLoop>[0]): EventLoop {
  const l = new EventLoop(opts);
  loops.push(l);
  return l;
}
/** Watch fd; next() resolves with the events of the following onReady call. */
function watched(loop: EventLoop, fd: number, events: number) {
  const seen: number[] = [];
  let wake: (() => void) | null = null;
  loop.watch(fd, events, (ev) => {
    seen.push(ev);
    wake?.();
  });
  return {
    async next(): Promise<number> {
      while (seen.length === 0) await new Promise<void>((r) => (wake = r));
      return seen.shift()!;
    },
  };
}
const within = <T>(p: Promise<T>, ms = 2000) =>
  Promise.race([p, Bun.sleep(ms).then(() => Promise.reject(new Error(`nothing within ${ms} ms`)))]);

afterEach(async () => {
  for (const l of loops.splice(0)) {
    l.close();
    await l.closed;
  }
  for (const fd of fds.splice(0)) closeFd(fd);
});

describe("EventLoop", () => {
  test("the callback fires with EPOLLIN when the other end writes", async () => {
    const loop = newLoop();
    const [a, b] = pair();
    const ready = new Promise<number>((resolve) => loop.watch(b, EPOLLIN, resolve));
    io.send(a, enc.encode("ping"));
    const events = await within(ready);
    expect(events & EPOLLIN).toBe(EPOLLIN);
    expect(io.receive(b, [])).toBe(4);
  });

  test("registrations are one-shot until rearm", async () => {
    const loop = newLoop();
    const [a, b] = pair();
    let calls = 0;
    let wake: () => void = () => {};
    loop.watch(b, EPOLLIN, () => {
      calls++;
      wake();
    });
    const first = new Promise<void>((r) => (wake = r));
    io.send(a, enc.encode("1"));
    await within(first);
    io.send(a, enc.encode("2")); // still unread data, but the fd is disarmed
    await Bun.sleep(50);
    expect(calls).toBe(1);
    const second = new Promise<void>((r) => (wake = r));
    loop.rearm(b, EPOLLIN);
    await within(second);
    expect(calls).toBe(2);
  });

  test("EPOLLOUT and hang-up events are reported", async () => {
    const loop = newLoop();
    const [a, b] = pair();
    const w = watched(loop, a, EPOLLOUT);
    expect((await within(w.next())) & EPOLLOUT).toBe(EPOLLOUT);
    closeFd(fds.splice(fds.indexOf(b), 1)[0]!);
    loop.rearm(a, EPOLLIN | EPOLLRDHUP);
    const events = await within(w.next());
    expect(events & EPOLLRDHUP).toBe(EPOLLRDHUP);
    expect(events & EPOLLHUP).toBe(EPOLLHUP);
  });

  test("an event queued for an unwatched registration never reaches a new watcher of the same fd", async () => {
    const loop = newLoop();
    const [a, b] = pair();
    let old = 0;
    loop.watch(b, EPOLLIN, () => old++);
    io.send(a, enc.encode("x"));
    Bun.sleepSync(50); // the worker sees the event and posts it while this thread is busy
    expect(io.receive(b, [])).toBe(1); // drained: b is no longer readable
    loop.unwatch(b);
    const fresh = watched(loop, b, EPOLLIN); // same fd number, e.g. after close + accept reuse
    let freshCalls = 0;
    const first = fresh.next().then((ev) => (freshCalls++, ev));
    await Bun.sleep(30); // the stale message is dispatched in here
    expect(old).toBe(0);
    expect(freshCalls).toBe(0);
    io.send(a, enc.encode("y"));
    expect((await within(first)) & EPOLLIN).toBe(EPOLLIN);
  });

  test("watching an fd twice, or rearming an unwatched fd, throws", () => {
    const loop = newLoop();
    const [a] = pair();
    loop.watch(a, EPOLLIN, () => {});
    expect(() => loop.watch(a, EPOLLIN, () => {})).toThrow("already watched");
    loop.unwatch(a);
    loop.unwatch(a); // unknown fd: no-op
    expect(() => loop.rearm(a, EPOLLIN)).toThrow("not watched");
  });

  test("unwatch after the fd was closed is harmless", () => {
    const loop = newLoop();
    const [, b] = socketPair();
    loop.watch(b, EPOLLIN, () => {});
    closeFd(b);
    expect(() => loop.unwatch(b)).not.toThrow();
  });

  test("watching a bad fd is a SysError naming epoll_ctl", () => {
    const loop = newLoop();
    expect(() => loop.watch(-1, EPOLLIN, () => {})).toThrow("epoll_ctl(ADD, fd -1): EBADF");
  });

  test("a throwing callback goes to onError and does not stop the other callbacks", async () => {
    const errors: unknown[] = [];
    const loop = newLoop({ onError: (e) => errors.push(e) });
    const [a1, b1] = pair();
    const [a2, b2] = pair();
    loop.watch(b1, EPOLLIN, () => {
      throw new Error("handler bug");
    });
    const other = new Promise<number>((resolve) => loop.watch(b2, EPOLLIN, resolve));
    io.send(a1, enc.encode("x"));
    io.send(a2, enc.encode("y"));
    await within(other);
    await Bun.sleep(20);
    expect(errors.map(String)).toEqual(["Error: handler bug"]);
  });

  test("a disarmed fd that stays readable does not keep the loop busy", async () => {
    const loop = newLoop();
    const [a, b] = pair();
    let calls = 0;
    loop.watch(b, EPOLLIN, () => calls++); // never rearmed, never read
    io.send(a, enc.encode("unread"));
    await Bun.sleep(50);
    const before = loop.polls;
    await Bun.sleep(300);
    expect(calls).toBe(1);
    // level-triggered epoll reports the fd for as long as it is readable: unless the loop
    // switches it off, it polls thousands of times here instead of not at all
    expect(loop.polls - before).toBeLessThan(10);
    loop.rearm(b, EPOLLIN); // the data is still there: reported again
    await within((async () => { while (calls < 2) await Bun.sleep(5); })());
  });

  test("a burst over many fds reaches every callback, with rearms in between", async () => {
    const loop = newLoop();
    const n = 200;
    const pairs = Array.from({ length: n }, () => pair());
    const got = new Array<number>(n).fill(0);
    pairs.forEach(([, b], i) =>
      loop.watch(b, EPOLLIN, () => {
        for (let r; (r = io.receive(b, [])) > 0; ) got[i]! += r; // bytes: one per send below
        loop.rearm(b, EPOLLIN);
      }),
    );
    for (let round = 0; round < 5; round++) {
      for (const [a] of pairs) io.send(a, enc.encode("x"));
      await Bun.sleep(round === 2 ? 30 : 0); // some rounds land while the loop is still busy
    }
    await within((async () => { while (got.some((g) => g < 5)) await Bun.sleep(5); })());
    expect(got.every((g) => g === 5)).toBe(true);
  });

  test("close() resolves `closed`, forgets watches and rejects new ones", async () => {
    const loop = newLoop();
    const [a, b] = pair();
    let calls = 0;
    loop.watch(b, EPOLLIN, () => calls++);
    loop.close();
    loop.close(); // idempotent
    io.send(a, enc.encode("late"));
    await within(loop.closed);
    await Bun.sleep(20);
    expect(calls).toBe(0);
    expect(() => loop.watch(a, EPOLLIN, () => {})).toThrow("closed");
  });
});

describe("EventLoop and process lifetime", () => {
  const fixture = join(import.meta.dir, "../fixtures/kernel-loop-exit.ts");
  const run = (mode: string) => Bun.spawn([process.execPath, fixture, mode], { stdout: "pipe", stderr: "inherit" });
  const exitsWithin = (p: ReturnType<typeof run>, ms: number) =>
    Promise.race([p.exited.then((code) => ({ code })), Bun.sleep(ms).then(() => null)]);

  test("a process exits on its own after close()", async () => {
    const p = run("close");
    expect(await exitsWithin(p, 3000)).toEqual({ code: 0 });
    expect(await new Response(p.stdout).text()).toBe("ready\n");
  });

  test("an unref()'d loop does not keep the process alive", async () => {
    expect(await exitsWithin(run("unref"), 3000)).toEqual({ code: 0 });
  });

  test("a loop watching an fd keeps the process alive", async () => {
    const p = run("watching");
    try {
      expect(await exitsWithin(p, 400)).toBeNull();
    } finally {
      p.kill();
      await p.exited;
    }
  });
});

// AF_UNIX sockets, SCM_RIGHTS and SO_PEERCRED with real sockets, in-process and across processes.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { closeFd, fdTarget, fileSize, getCloexec, readFull, writeFull } from "../../src/kernel/fd.ts";
import { Errno, getgid, getuid, SysError } from "../../src/kernel/libc.ts";
import { memfdCreate } from "../../src/kernel/memfd.ts";
import { MessageIo } from "../../src/kernel/scm-rights.ts";
import {
  acceptConnection,
  peerCredentials,
  setNonblocking,
  shutdownSocket,
  socketPair,
  unixConnect,
  unixListen,
} from "../../src/kernel/unix.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const PEER = join(import.meta.dir, "../fixtures/kernel-fdpass-peer.ts");

let dir: string;
const open: number[] = [];
const track = (fd: number) => (open.push(fd), fd);

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "luo-kernel-"));
});
afterEach(() => {
  for (const fd of open.splice(0)) {
    try {
      closeFd(fd);
    } catch {
      // closed by the test
    }
  }
  rmSync(dir, { recursive: true, force: true });
});

function memfdWith(name: string, content: string): number {
  const fd = memfdCreate(name);
  writeFull(fd, enc.encode(content));
  return fd;
}

function contentOf(fd: number): string {
  const buf = new Uint8Array(fileSize(fd));
  readFull(fd, buf, 0);
  return dec.decode(buf);
}

async function acceptWithin(listenFd: number, ms = 3000): Promise<number> {
  const deadline = Date.now() + ms;
  for (;;) {
    const fd = acceptConnection(listenFd);
    if (fd !== null) return fd;
    if (Date.now() > deadline) throw new Error("no connection arrived");
    await Bun.sleep(2);
  }
}

async function receiveLine(io: MessageIo, fd: number, fds: number[], ms = 3000): Promise<string> {
  const deadline = Date.now() + ms;
  let text = "";
  for (;;) {
    const n = io.receive(fd, fds);
    if (n === -Errno.EAGAIN) {
      if (Date.now() > deadline) throw new Error("no line arrived");
      await Bun.sleep(2);
      continue;
    }
    if (n <= 0) throw new Error(`receive returned ${n}`);
    text += dec.decode(io.buffer.subarray(0, n));
    if (text.endsWith("\n")) return text;
  }
}

function spawnPeer(...args: string[]) {
  return Bun.spawn([process.execPath, PEER, ...args], { stdout: "pipe", stderr: "pipe" });
}

async function peerReport(proc: ReturnType<typeof spawnPeer>): Promise<Record<string, unknown>> {
  const [out, err, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  if (code !== 0) throw new Error(`peer exited ${code}: ${err}`);
  return JSON.parse(out) as Record<string, unknown>;
}

describe("fd passing between two processes", () => {
  test("a child receives our memfd with a JSON line and reads its content", async () => {
    const path = join(dir, "s.sock");
    const listenFd = track(unixListen(path));
    const child = spawnPeer("receive", path);
    const conn = track(await acceptWithin(listenFd));
    const memfd = track(memfdWith("kernel-parent", "from parent\n"));
    const line = enc.encode(JSON.stringify({ fds: 1 }) + "\n");
    expect(new MessageIo().send(conn, line, [memfd])).toBe(line.length);
    const report = await peerReport(child);
    expect(report).toMatchObject({
      announced: 1,
      received: 1,
      truncated: false,
      target: "/memfd:kernel-parent (deleted)",
      cloexec: true, // MSG_CMSG_CLOEXEC
      content: "from parent\n",
    });
  });

  test("a child sends a memfd it created and we read it back", async () => {
    const path = join(dir, "s.sock");
    const listenFd = track(unixListen(path));
    const child = spawnPeer("send", path, "from child");
    const conn = track(await acceptWithin(listenFd));
    const io = new MessageIo();
    const fds: number[] = [];
    const line = await receiveLine(io, conn, fds);
    fds.forEach(track);
    expect(JSON.parse(line)).toEqual({ fds: 1 });
    expect(fds).toHaveLength(1);
    expect(io.lastTruncated).toBe(false);
    expect(fdTarget(fds[0]!)).toBe("/memfd:kernel-child (deleted)");
    expect(getCloexec(fds[0]!)).toBe(true);
    expect(contentOf(fds[0]!)).toBe("from child");
    const report = await peerReport(child);
    expect(report.sent).toBe(line.length);
  });

  test("SO_PEERCRED reports the child's pid and our uid/gid", async () => {
    const path = join(dir, "s.sock");
    const listenFd = track(unixListen(path));
    const child = spawnPeer("send", path, "x");
    const conn = track(await acceptWithin(listenFd));
    expect(peerCredentials(conn)).toEqual({ pid: child.pid, uid: getuid(), gid: getgid() });
    const fds: number[] = [];
    await receiveLine(new MessageIo(), conn, fds);
    fds.forEach(track);
    expect((await peerReport(child)).pid).toBe(child.pid);
  });
});

describe("MessageIo over a socketpair", () => {
  test("sends bytes with fds and receives both; MSG_CTRUNC not set", () => {
    const [a, b] = socketPair().map(track) as [number, number];
    const m1 = track(memfdWith("kernel-one", "one"));
    const m2 = track(memfdWith("kernel-two", "two"));
    const io = new MessageIo();
    expect(io.send(a, enc.encode("hello\n"), [m1, m2])).toBe(6);
    const fds: number[] = [];
    expect(io.receive(b, fds)).toBe(6);
    fds.forEach(track);
    expect(dec.decode(io.buffer.subarray(0, 6))).toBe("hello\n");
    expect(io.lastTruncated).toBe(false);
    expect(fds.map(contentOf)).toEqual(["one", "two"]);
    expect(fds.every(getCloexec)).toBe(true);
    expect(fds).not.toContain(m1); // new fd numbers in the receiver
  });

  test("the receive buffer is 64 KiB by default and a number sets its size", () => {
    expect(new MessageIo().buffer.length).toBe(65536);
    expect(new MessageIo(1024).buffer.length).toBe(1024);
  });

  test("preallocated msghdr/iovec/cmsg buffers stay valid across garbage collections", () => {
    const [a, b] = socketPair().map(track) as [number, number];
    const io = new MessageIo();
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 2000; i++) new ArrayBuffer(64); // churn
      Bun.gc(true);
      const m = track(memfdWith(`kernel-gc${round}`, `gc${round}`));
      expect(io.send(a, enc.encode(`round ${round}\n`), [m])).toBe(8);
      Bun.gc(true);
      const fds: number[] = [];
      expect(io.receive(b, fds)).toBe(8);
      fds.forEach(track);
      expect(dec.decode(io.buffer.subarray(0, 8))).toBe(`round ${round}\n`);
      expect(fds.map(contentOf)).toEqual([`gc${round}`]);
    }
  });

  test("receive returns -EAGAIN when drained and 0 at EOF", () => {
    const [a, b] = socketPair().map(track) as [number, number];
    const io = new MessageIo();
    expect(io.receive(b, [])).toBe(-Errno.EAGAIN);
    shutdownSocket(a);
    expect(io.receive(b, [])).toBe(0);
  });

  test("fds beyond the control room set lastTruncated; the ones that fit still arrive", () => {
    const [a, b] = socketPair().map(track) as [number, number];
    const memfds = [1, 2, 3].map((i) => track(memfdWith(`kernel-t${i}`, `t${i}`)));
    expect(new MessageIo().send(a, enc.encode("x"), memfds)).toBe(1);
    const small = new MessageIo({ maxFds: 1 });
    const fds: number[] = [];
    expect(small.receive(b, fds)).toBe(1);
    fds.forEach(track);
    expect(small.lastTruncated).toBe(true);
    expect(fds.length).toBeGreaterThan(0);
    expect(fds.length).toBeLessThan(3);
    expect(fds.map(contentOf)).toEqual(["t1", "t2"].slice(0, fds.length));
  });

  test("fds arrive with the read that covers the first byte of their sendmsg", () => {
    const [a, b] = socketPair().map(track) as [number, number];
    const io = new MessageIo();
    const m = track(memfdWith("kernel-later", "later"));
    io.send(a, enc.encode("plain\n"));
    io.send(a, enc.encode("with-fd\n"), [m]);
    const fds: number[] = [];
    let text = "";
    while (!text.includes("with-fd")) {
      const n = io.receive(b, fds);
      expect(n).toBeGreaterThan(0);
      text += dec.decode(io.buffer.subarray(0, n));
    }
    fds.forEach(track);
    expect(text).toBe("plain\nwith-fd\n");
    expect(fds.map(contentOf)).toEqual(["later"]);
  });

  test("send reports -EAGAIN on a full socket and -EPIPE (no SIGPIPE) to a closed peer", () => {
    const [a, b] = socketPair().map(track) as [number, number];
    const io = new MessageIo();
    const chunk = new Uint8Array(new ArrayBuffer(65536));
    let n = 0;
    for (let i = 0; i < 10000 && n >= 0; i++) n = io.send(a, chunk);
    expect(n).toBe(-Errno.EAGAIN);
    closeFd(b);
    expect(io.send(a, chunk)).toBe(-Errno.EPIPE);
  });

  test("too many fds or fds without data are refused before sendmsg", () => {
    const [a] = socketPair().map(track) as [number, number];
    const io = new MessageIo({ maxFds: 2 });
    expect(() => io.send(a, enc.encode("x"), [0, 1, 2])).toThrow(RangeError);
    expect(() => io.send(a, new Uint8Array(0), [0])).toThrow(RangeError);
  });
});

describe("listening and connecting", () => {
  test("unixListen is non-blocking: accept returns null with nobody waiting", () => {
    const listenFd = track(unixListen(join(dir, "idle.sock")));
    expect(acceptConnection(listenFd)).toBeNull();
  });

  test("accepted fds are non-blocking and close-on-exec; connect is blocking by default", () => {
    const path = join(dir, "s.sock");
    const listenFd = track(unixListen(path));
    const client = track(unixConnect(path));
    const conn = track(acceptConnection(listenFd)!);
    expect(getCloexec(conn)).toBe(true);
    expect(getCloexec(client)).toBe(true);
    const nonblocking = (fd: number) =>
      (parseInt(/^flags:\s+(\d+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, "utf8"))![1]!, 8) & 0o4000) !== 0;
    expect(nonblocking(conn)).toBe(true);
    expect(nonblocking(client)).toBe(false);
    setNonblocking(client, true);
    expect(nonblocking(client)).toBe(true);
    setNonblocking(client, false);
    expect(nonblocking(client)).toBe(false);
  });

  test("unixListen leaves an existing socket file alone (EADDRINUSE)", () => {
    const path = join(dir, "s.sock");
    track(unixListen(path));
    expect(() => unixListen(path)).toThrow(SysError);
    expect(() => unixListen(path)).toThrow(`bind ${path}: EADDRINUSE`);
    expect(existsSync(path)).toBe(true);
  });

  test("abstract @names work for listen and connect", () => {
    const name = `@luo-kernel-test-${process.pid}-${Math.random().toString(36).slice(2)}`;
    const listenFd = track(unixListen(name));
    const client = track(unixConnect(name));
    const conn = track(acceptConnection(listenFd)!);
    expect(peerCredentials(conn).pid).toBe(process.pid);
    expect(peerCredentials(client).pid).toBe(process.pid);
  });

  test("a path longer than sun_path is rejected with ENAMETOOLONG", () => {
    expect(() => unixConnect("/" + "x".repeat(107))).toThrow("ENAMETOOLONG");
  });
});

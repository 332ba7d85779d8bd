// AF_UNIX sockets over raw FFI: socket, bind, listen, accept, connect, socketpair, SO_PEERCRED and
// SO_PEERGROUPS. Bun's own sockets read with recv() and silently drop passed fds
// (docs/bun.md#unix-sockets-and-scm_rights), so luod makes its own; scm-rights.ts sends and receives
// on them, fds included.
import { ptr } from "bun:ffi";
import { check, Errno, lastErrno, rcOrErrno, SysError, sys } from "./libc.ts";
import { O_NONBLOCK } from "./fd.ts";

const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_DGRAM = 2;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_PEERCRED = 17;
const SO_PEERGROUPS = 59;
const ERANGE = 34;
const SHUT_RDWR = 2;
const F_GETFL = 3;
const F_SETFL = 4;

// x86_64: struct sockaddr_un = u16 family + sun_path[108].
const SOCKADDR_UN_SIZE = 110;
const SUN_PATH_MAX = 108;

const utf8 = new TextEncoder();

export interface SockaddrUn {
  /** Keep referenced while its address is in use. */
  readonly buffer: ArrayBuffer;
  readonly length: number;
}

/**
 * struct sockaddr_un for a filesystem path, or for an abstract name written "@name"
 * (leading NUL, exact length, no terminator — systemd's NOTIFY_SOCKET convention).
 */
export function sockaddrUn(path: string, op = `sockaddr ${path}`): SockaddrUn {
  const abstract = path.startsWith("@");
  const bytes = utf8.encode(abstract ? path.slice(1) : path);
  // a filesystem path needs a byte for its NUL; an abstract name needs one for its leading NUL
  const room = SUN_PATH_MAX - 1;
  if (path.length === 0) throw new SysError(op, Errno.EINVAL, "empty socket path");
  if (bytes.length > room)
    throw new SysError(op, Errno.ENAMETOOLONG, `unix socket path is ${bytes.length} bytes, at most ${room} fit`);
  if (!abstract && bytes.includes(0)) throw new SysError(op, Errno.EINVAL, "socket path contains a NUL byte");
  const buffer = new ArrayBuffer(SOCKADDR_UN_SIZE);
  new DataView(buffer).setUint16(0, AF_UNIX, true);
  new Uint8Array(buffer).set(bytes, abstract ? 3 : 2);
  return { buffer, length: 2 + (abstract ? 1 + bytes.length : bytes.length + 1) };
}

function unixSocket(type: number, nonblock: boolean): number {
  return check("socket", sys.socket(AF_UNIX, type | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0));
}

/**
 * A listening SOCK_STREAM socket, non-blocking and close-on-exec. It does not unlink a stale
 * socket file (EADDRINUSE): whether that is safe is the daemon's decision.
 */
export function unixListen(path: string, opts: { backlog?: number } = {}): number {
  const addr = sockaddrUn(path, `bind ${path}`);
  const fd = unixSocket(SOCK_STREAM, true);
  try {
    check(`bind ${path}`, sys.bind(fd, ptr(addr.buffer), addr.length));
    check(`listen ${path}`, sys.listen(fd, opts.backlog ?? 128));
  } catch (e) {
    sys.close(fd);
    throw e;
  }
  return fd;
}

/**
 * Connect a close-on-exec SOCK_STREAM socket. Blocking by default (connecting to a unix socket
 * never waits for a handshake; a full backlog blocks, or gives EAGAIN when nonblock).
 */
export function unixConnect(path: string, opts: { nonblock?: boolean } = {}): number {
  const op = `connect ${path}`;
  const addr = sockaddrUn(path, op);
  const fd = unixSocket(SOCK_STREAM, opts.nonblock ?? false);
  for (;;) {
    if (sys.connect(fd, ptr(addr.buffer), addr.length) === 0) return fd;
    const e = lastErrno();
    if (e === Errno.EINTR) continue;
    sys.close(fd);
    throw new SysError(op, e);
  }
}

/** A bound SOCK_DGRAM socket (non-blocking, close-on-exec); receive with MessageIo (scm-rights.ts). */
export function unixDatagramBind(path: string): number {
  const op = `bind ${path}`;
  const addr = sockaddrUn(path, op);
  const fd = unixSocket(SOCK_DGRAM, true);
  if (sys.bind(fd, ptr(addr.buffer), addr.length) !== 0) {
    const e = lastErrno();
    sys.close(fd);
    throw new SysError(op, e);
  }
  return fd;
}

const ECONNABORTED = 103;

/**
 * accept4 → a non-blocking, close-on-exec connection fd, or null when there is nothing to accept
 * (EAGAIN, or a peer that gave up before we got to it). Other errors (EMFILE, ENOMEM…) throw.
 */
export function acceptConnection(listenFd: number): number | null {
  for (;;) {
    const fd = sys.accept4(listenFd, null, null, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd >= 0) return fd;
    const e = lastErrno();
    if (e === Errno.EINTR) continue;
    if (e === Errno.EAGAIN || e === ECONNABORTED) return null;
    throw new SysError("accept4", e);
  }
}

/** struct ucred (12 B) and its socklen_t, for peerCredentials: one per thread, reused. */
const peerCred = new DataView(new ArrayBuffer(12));
const peerCredLen = new DataView(new ArrayBuffer(4));

/** SO_PEERCRED: the peer's pid/uid/gid as of connect() (socketpair: as of its creation). */
export function peerCredentials(fd: number): { pid: number; uid: number; gid: number } {
  const cred = peerCred;
  const len = peerCredLen;
  len.setUint32(0, 12, true);
  check("getsockopt(SO_PEERCRED)", sys.getsockopt(fd, SOL_SOCKET, SO_PEERCRED, ptr(cred), ptr(len)));
  return { pid: cred.getInt32(0, true), uid: cred.getUint32(4, true), gid: cred.getUint32(8, true) };
}

/**
 * SO_PEERGROUPS (Linux 4.13): the peer's supplementary groups as of connect(), without the
 * primary gid (that one is in SO_PEERCRED). Unlike /proc/PID/status it cannot race with the
 * peer exiting and its pid being reused.
 */
export function peerGroups(fd: number): number[] {
  for (let room = 64; ; room *= 4) {
    const buf = new DataView(new ArrayBuffer(4 * room));
    const len = new DataView(new ArrayBuffer(4));
    len.setUint32(0, 4 * room, true);
    if (sys.getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, ptr(buf), ptr(len)) === 0) {
      const n = len.getUint32(0, true) / 4;
      return Array.from({ length: n }, (_, i) => buf.getUint32(4 * i, true));
    }
    const e = lastErrno();
    // ERANGE: more groups than room (len now holds the size needed); NGROUPS_MAX is 65536
    if (e !== ERANGE || room >= 65536) throw new SysError("getsockopt(SO_PEERGROUPS)", e);
  }
}

const SO_PEERPIDFD = 77; // Linux 6.5, include/uapi/asm-generic/socket.h
const SYS_pidfd_open = 434;
const ENOPROTOOPT = 92;
const ESRCH = 3;
/** int + socklen_t for peerPidfd: one per thread, reused. */
const pidfdOpt = new DataView(new ArrayBuffer(4));
const pidfdOptLen = new DataView(new ArrayBuffer(4));

/**
 * A pidfd (close-on-exec) of the process that connected `fd`, to learn when it exits: a pidfd
 * becomes readable once its process has exited (docs/kernel.md#pidfds-of-peers). SO_PEERPIDFD
 * (Linux 6.5) names the very process of SO_PEERCRED, even when it has exited since; older kernels
 * fall back to pidfd_open(pid), which races with the peer exiting and its pid being reused
 * before the call. Returns null when neither works (the peer has already gone: ESRCH).
 */
export function peerPidfd(fd: number, pid: number): number | null {
  pidfdOptLen.setUint32(0, 4, true);
  if (sys.getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, ptr(pidfdOpt), ptr(pidfdOptLen)) === 0) return pidfdOpt.getInt32(0, true);
  const e = lastErrno();
  if (e !== ENOPROTOOPT) throw new SysError("getsockopt(SO_PEERPIDFD)", e);
  const rc = Number(sys.syscall(SYS_pidfd_open, pid, 0, 0, 0, 0, 0));
  if (rc >= 0) return rc;
  const err = lastErrno();
  if (err === ESRCH) return null;
  throw new SysError(`pidfd_open(${pid})`, err);
}

/** A connected AF_UNIX SOCK_STREAM pair, close-on-exec. */
export function socketPair(opts: { nonblock?: boolean } = {}): [number, number] {
  const fds = new Int32Array(new ArrayBuffer(8));
  const type = SOCK_STREAM | SOCK_CLOEXEC | (opts.nonblock ? SOCK_NONBLOCK : 0);
  check("socketpair", sys.socketpair(AF_UNIX, type, 0, fds));
  return [fds[0]!, fds[1]!];
}

export function setNonblocking(fd: number, on: boolean): void {
  const flags = check("fcntl(F_GETFL)", sys.fcntl(fd, F_GETFL, 0));
  const next = on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK;
  if (next !== flags) check("fcntl(F_SETFL)", sys.fcntl(fd, F_SETFL, next));
}

/** shutdown(SHUT_RDWR); a peer that is already gone (ENOTCONN) is not an error. */
export function shutdownSocket(fd: number): void {
  if (sys.shutdown(fd, SHUT_RDWR) === -1) {
    const e = lastErrno();
    if (e !== Errno.ENOTCONN) throw new SysError("shutdown", e);
  }
}

/** A fresh non-blocking close-on-exec AF_UNIX SOCK_DGRAM socket (unbound). */
export function unixDatagramSocket(): number {
  return unixSocket(SOCK_DGRAM, true);
}

const POLLIN = 0x1;
const POLLOUT = 0x4;
/** struct pollfd (8 B): int fd | short events | short revents. One per thread, reused. */
const pollFd = new DataView(new ArrayBuffer(8));

/**
 * Blocks until `fd` is readable (or writable), or `timeoutMs` passes: true when ready (a hang-up
 * or error counts as ready: the next read reports it), false on timeout. For one-shot tools that
 * need no event loop (luoctl's quick commands); EINTR restarts with the time left.
 */
export function waitFd(fd: number, want: "read" | "write", timeoutMs: number): boolean {
  const until = Date.now() + timeoutMs;
  for (;;) {
    pollFd.setInt32(0, fd, true);
    pollFd.setInt16(4, want === "read" ? POLLIN : POLLOUT, true);
    pollFd.setInt16(6, 0, true);
    const left = Math.max(0, until - Date.now());
    const rc = rcOrErrno(sys.poll(ptr(pollFd), 1, Math.min(left, 2 ** 31 - 1)));
    if (rc === -Errno.EINTR) continue;
    if (rc < 0) throw new SysError("poll", -rc);
    return rc > 0;
  }
}

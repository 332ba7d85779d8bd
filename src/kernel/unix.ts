// AF_UNIX sockets over raw FFI, with SCM_RIGHTS and SO_PEERCRED. Bun's own sockets read with recv()
// and silently drop passed fds (docs/bun.md#unix-sockets-and-scm_rights), so everything fd-carrying
// lives here.
import { ptr } from "bun:ffi";
import { check, Errno, lastErrno, putPointer, rcOrErrno, SysError, sys } from "./libc.ts";
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
const SCM_RIGHTS = 1;
const SHUT_RDWR = 2;
const F_GETFL = 3;
const F_SETFL = 4;

export const MSG_CTRUNC = 0x8;
export const MSG_DONTWAIT = 0x40;
export const MSG_NOSIGNAL = 0x4000;
export const MSG_CMSG_CLOEXEC = 0x40000000;

/** Kernel cap on fds in one SCM_RIGHTS message (SCM_MAX_FD). */
export const SCM_MAX_FD = 253;

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

/** A bound SOCK_DGRAM socket (non-blocking, close-on-exec); receive with MessageIo. */
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

// ---------------------------------------------------------------------------------------------
// sendmsg/recvmsg with SCM_RIGHTS. x86_64 layouts (docs/bun.md#unix-sockets-and-scm_rights):
//   msghdr 56 B: name 0, namelen 8, iov 16, iovlen 24, control 32, controllen 40, flags 48
//   iovec 16 B: base 0, len 8;  cmsghdr: len u64 0, level i32 8, type i32 12, data 16

const MSGHDR_SIZE = 56;
const IOVEC_SIZE = 16;
const CMSG_HDR = 16;
const cmsgAlign = (n: number) => (n + 7) & ~7;
export const cmsgSpace = (n: number) => CMSG_HDR + cmsgAlign(n);
const cmsgLen = (n: number) => CMSG_HDR + n;

/** Write one SCM_RIGHTS cmsg for `fds` at the start of `ctl`; returns msg_controllen. */
function putRights(ctl: DataView, fds: readonly number[]): number {
  ctl.setUint32(0, cmsgLen(4 * fds.length), true);
  ctl.setUint32(4, 0, true);
  ctl.setInt32(8, SOL_SOCKET, true);
  ctl.setInt32(12, SCM_RIGHTS, true);
  for (let i = 0; i < fds.length; i++) ctl.setInt32(CMSG_HDR + 4 * i, fds[i]!, true);
  return cmsgSpace(4 * fds.length);
}

/** Append the fds of every SCM_RIGHTS cmsg in ctl[0, controllen) to out. */
function takeRights(ctl: DataView, controllen: number, out: number[]): void {
  for (let off = 0; off + CMSG_HDR <= controllen; ) {
    const len = ctl.getUint32(off, true); // u64 on x86_64; control buffers are far below 4 GiB
    if (len < CMSG_HDR || off + len > controllen) break;
    if (ctl.getInt32(off + 8, true) === SOL_SOCKET && ctl.getInt32(off + 12, true) === SCM_RIGHTS)
      for (let p = off + CMSG_HDR; p + 4 <= off + len; p += 4) out.push(ctl.getInt32(p, true));
    off += cmsgAlign(len);
  }
}

export interface MessageIoOptions {
  /** Receive buffer size. Default 64 KiB. */
  bufferSize?: number;
  /** Fds one receive (or send) can carry. Default 16. */
  maxFds?: number;
}

/**
 * Allocation-free sendmsg/recvmsg: msghdr, iovec and control buffers are allocated once per
 * instance, and their addresses are written into each other once. Per docs/bun.md#ffi-memory-rules
 * every buffer is an ArrayBuffer (stable address) and every buffer whose address sits in another
 * struct is a field of this object, so it lives as long as the msghdr that points at it. Not
 * reentrant across threads; one instance per thread (one per connection is not needed).
 */
export class MessageIo {
  /** receive() writes here; the message is buffer.subarray(0, n). Overwritten by each call. */
  readonly buffer: Uint8Array;
  /** True when the last receive() had MSG_CTRUNC: fds beyond the control room were lost. */
  lastTruncated = false;
  readonly maxFds: number;

  private readonly recvHdr: DataView;
  private readonly recvHdrAddr: number;
  private readonly recvIov: DataView; // address stored in recvHdr: keep referenced
  private readonly recvCtl: DataView; // address stored in recvHdr: keep referenced
  private readonly recvCtlRoom: number;

  private readonly sendHdr: DataView;
  private readonly sendHdrAddr: number;
  private readonly sendIov: DataView; // address stored in sendHdr: keep referenced
  private readonly sendCtl: DataView; // address stored in sendHdr when fds are sent
  private readonly sendCtlAddr: number;

  /** A number is taken as the receive buffer size. */
  constructor(options: MessageIoOptions | number = {}) {
    const opts = typeof options === "number" ? { bufferSize: options } : options;
    const size = opts.bufferSize ?? 65536;
    this.maxFds = opts.maxFds ?? 16;
    if (this.maxFds < 1 || this.maxFds > SCM_MAX_FD) throw new RangeError(`maxFds must be 1..${SCM_MAX_FD}`);
    this.buffer = new Uint8Array(new ArrayBuffer(size));

    this.recvCtlRoom = cmsgSpace(4 * this.maxFds);
    this.recvCtl = new DataView(new ArrayBuffer(this.recvCtlRoom));
    this.recvIov = new DataView(new ArrayBuffer(IOVEC_SIZE));
    putPointer(this.recvIov, 0, ptr(this.buffer));
    this.recvIov.setUint32(8, size, true);
    this.recvHdr = new DataView(new ArrayBuffer(MSGHDR_SIZE));
    putPointer(this.recvHdr, 16, ptr(this.recvIov));
    this.recvHdr.setUint32(24, 1, true);
    putPointer(this.recvHdr, 32, ptr(this.recvCtl));
    this.recvHdrAddr = ptr(this.recvHdr);

    this.sendCtl = new DataView(new ArrayBuffer(cmsgSpace(4 * this.maxFds)));
    this.sendCtlAddr = ptr(this.sendCtl);
    this.sendIov = new DataView(new ArrayBuffer(IOVEC_SIZE));
    this.sendHdr = new DataView(new ArrayBuffer(MSGHDR_SIZE));
    putPointer(this.sendHdr, 16, ptr(this.sendIov));
    this.sendHdr.setUint32(24, 1, true);
    this.sendHdrAddr = ptr(this.sendHdr);
  }

  /**
   * One non-blocking recvmsg (MSG_CMSG_CLOEXEC|MSG_DONTWAIT). Returns bytes read (> 0), 0 at EOF,
   * or -errno (-EAGAIN when drained). Received fds are appended to fdsOut, already close-on-exec. A
   * stream delivers fds with the read that covers the first byte of the sendmsg that carried them
   * (docs/bun.md#unix-sockets-and-scm_rights). If lastTruncated is set afterwards, some fds were
   * dropped by the kernel; those that did fit are still in fdsOut and the caller must close them.
   */
  receive(fd: number, fdsOut: number[]): number {
    const hdr = this.recvHdr;
    hdr.setUint32(40, this.recvCtlRoom, true); // the kernel rewrites msg_controllen: reset every call
    hdr.setUint32(44, 0, true);
    hdr.setInt32(48, 0, true);
    let n: number;
    do n = rcOrErrno(sys.recvmsg(fd, this.recvHdrAddr, MSG_CMSG_CLOEXEC | MSG_DONTWAIT));
    while (n === -Errno.EINTR);
    if (n < 0) {
      this.lastTruncated = false;
      return n;
    }
    const controllen = hdr.getUint32(40, true);
    if (controllen > 0) takeRights(this.recvCtl, controllen, fdsOut);
    this.lastTruncated = (hdr.getInt32(48, true) & MSG_CTRUNC) !== 0;
    return n;
  }

  /**
   * One non-blocking sendmsg (MSG_NOSIGNAL|MSG_DONTWAIT) of data with fds attached. Returns bytes
   * sent or -errno (-EAGAIN when the socket buffer is full: nothing was sent, fds included).
   * A short count means the fds went with the bytes that were sent: send the rest without fds.
   * The fds stay open in this process; close them once sent if they are not needed.
   */
  send(fd: number, data: Uint8Array, fds: readonly number[] = []): number {
    if (fds.length > this.maxFds) throw new RangeError(`cannot send ${fds.length} fds at once (max ${this.maxFds})`);
    if (data.length === 0) {
      // SCM_RIGHTS needs at least one data byte on a stream socket to travel with
      if (fds.length > 0) throw new RangeError("fds must travel with at least one data byte");
      return 0;
    }
    void data.buffer; // materialize a small inline array now, so the address below stays valid
    putPointer(this.sendIov, 0, ptr(data));
    this.sendIov.setUint32(8, data.length, true);
    this.sendIov.setUint32(12, 0, true);
    const hdr = this.sendHdr;
    if (fds.length > 0) {
      putPointer(hdr, 32, this.sendCtlAddr);
      hdr.setUint32(40, putRights(this.sendCtl, fds), true);
    } else {
      putPointer(hdr, 32, 0);
      hdr.setUint32(40, 0, true);
    }
    let n: number;
    do n = rcOrErrno(sys.sendmsg(fd, this.sendHdrAddr, MSG_NOSIGNAL | MSG_DONTWAIT));
    while (n === -Errno.EINTR);
    return n;
  }

  /**
   * One sendmsg of a datagram to `path` (filesystem or "@abstract") from an unconnected
   * SOCK_DGRAM socket, with optional fds. Returns bytes sent or -errno.
   */
  sendTo(fd: number, path: string, data: Uint8Array, fds: readonly number[] = []): number {
    const addr = sockaddrUn(path, `sendmsg ${path}`);
    const hdr = this.sendHdr;
    putPointer(hdr, 0, ptr(addr.buffer)); // addr stays referenced until sendmsg returns
    hdr.setUint32(8, addr.length, true);
    try {
      return this.send(fd, data, fds);
    } finally {
      putPointer(hdr, 0, 0);
      hdr.setUint32(8, 0, true);
    }
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

// sendmsg/recvmsg on AF_UNIX sockets (unix.ts makes them), with fds attached as SCM_RIGHTS. Bun's
// own sockets cannot carry fds: they read with recv() and silently drop them
// (docs/bun.md#unix-sockets-and-scm_rights).
import { ptr } from "bun:ffi";
import { Errno, putPointer, rcOrErrno, sys } from "./libc.ts";
import { sockaddrUn } from "./unix.ts";

export const MSG_CTRUNC = 0x8;
export const MSG_DONTWAIT = 0x40;
export const MSG_NOSIGNAL = 0x4000;
export const MSG_CMSG_CLOEXEC = 0x40000000;

/** Kernel cap on fds in one SCM_RIGHTS message (SCM_MAX_FD). */
export const SCM_MAX_FD = 253;

// x86_64 layouts (docs/bun.md#unix-sockets-and-scm_rights):
//   msghdr 56 B: name 0, namelen 8, iov 16, iovlen 24, control 32, controllen 40, flags 48
//   iovec 16 B: base 0, len 8;  cmsghdr: len u64 0, level i32 8, type i32 12, data 16
const SOL_SOCKET = 1;
const SCM_RIGHTS = 1;
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

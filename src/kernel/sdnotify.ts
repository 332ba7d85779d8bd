// sd_notify(3) and sd_listen_fds(3) without libsystemd. node:dgram cannot do AF_UNIX datagrams
// (docs/bun.md#sd_notify-and-signals), so the datagram goes through our own sendmsg.
import { ptr } from "bun:ffi";
import { closeFd, setCloexec } from "./fd.ts";
import { SysError, check, lastErrno, sys, Errno } from "./libc.ts";
import { MessageIo, SCM_MAX_FD } from "./scm-rights.ts";
import { socketPair, unixDatagramSocket } from "./unix.ts";

const EAFNOSUPPORT = 97;
const SD_LISTEN_FDS_START = 3;

let io: MessageIo | undefined; // send side only; lazily, most processes never notify

function notify(state: string, fds: readonly number[]): boolean {
  const path = process.env.NOTIFY_SOCKET;
  if (!path) return false;
  const op = `sd_notify ${path}`;
  if (!path.startsWith("/") && !path.startsWith("@"))
    throw new SysError(op, EAFNOSUPPORT, "only unix socket paths and @abstract names are supported");
  io ??= new MessageIo({ bufferSize: 1, maxFds: SCM_MAX_FD });
  const fd = unixDatagramSocket();
  try {
    const n = io.sendTo(fd, path, new TextEncoder().encode(state), fds);
    if (n < 0) throw new SysError(op, -n);
  } finally {
    closeFd(fd);
  }
  return true;
}

/**
 * Send one notification ("READY=1", "STATUS=…", "STOPPING=1", "RELOADING=1\nMONOTONIC_USEC=…")
 * to $NOTIFY_SOCKET (a path or an @abstract name). Returns false when NOTIFY_SOCKET is unset
 * (not started by systemd); throws SysError when the send fails.
 */
export function sdNotify(state: string): boolean {
  return notify(state, []);
}

/**
 * sd_pid_notify_with_fds: e.g. "FDSTORE=1\nFDNAME=luod-vm-42" with the fds to put in the unit's fd
 * store. With FileDescriptorStorePreserve=yes systemd ≥ 261 carries LUO session fds across a kexec
 * and hands them back through LISTEN_FDS
 * (docs/systemd.md#how-pid-1-carries-fd-stores-across-a-kexec). The fds stay open here too.
 */
export function sdNotifyWithFds(state: string, fds: readonly number[]): boolean {
  return notify(state, fds);
}

/**
 * sd_notify_barrier(3): sends "BARRIER=1" with one end of a socket pair and waits until the
 * manager closed it, which it does after it has processed every earlier notification (so an
 * FDSTORE=1 sent before is in the fd store when this returns true). False when NOTIFY_SOCKET is
 * unset; throws SysError ETIMEDOUT when the manager did not answer within timeoutMs.
 */
export function sdNotifyBarrier(timeoutMs = 5000): boolean {
  const [mine, theirs] = socketPair();
  let sent: boolean;
  try {
    sent = notify("BARRIER=1", [theirs]);
  } catch (e) {
    closeFd(mine);
    throw e;
  } finally {
    closeFd(theirs);
  }
  if (!sent) {
    closeFd(mine);
    return false;
  }
  try {
    waitForHangup(mine, timeoutMs);
  } finally {
    closeFd(mine);
  }
  return true;
}

const EPOLL_CTL_ADD = 1;
const EPOLL_CLOEXEC = 0o2000000;
const EPOLLIN = 0x001;
const EPOLLHUP = 0x010;
const EPOLLRDHUP = 0x2000;

/** Blocks until the peer of a stream socket is gone (EOF), at most timeoutMs. Nothing is ever written to it. */
function waitForHangup(fd: number, timeoutMs: number): void {
  const ep = check("epoll_create1", sys.epoll_create1(EPOLL_CLOEXEC));
  try {
    const ev = new DataView(new ArrayBuffer(12)); // struct epoll_event is packed on x86_64
    ev.setUint32(0, EPOLLIN | EPOLLHUP | EPOLLRDHUP, true);
    check("epoll_ctl(ADD)", sys.epoll_ctl(ep, EPOLL_CTL_ADD, fd, ptr(ev)));
    const out = new DataView(new ArrayBuffer(12));
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const left = Math.max(0, deadline - Date.now());
      const n = sys.epoll_wait(ep, ptr(out), 1, left);
      if (n > 0) return; // readable = EOF: the only thing that can happen on this socket
      if (n < 0 && lastErrno() === Errno.EINTR) continue;
      if (n < 0) throw new SysError("epoll_wait", lastErrno());
      throw new SysError("sd_notify BARRIER=1", Errno.ETIMEDOUT, `the service manager did not answer within ${timeoutMs} ms`);
    }
  } finally {
    closeFd(ep);
  }
}

/**
 * sd_listen_fds(3) with names: the fds systemd passed (from 3), if LISTEN_PID is this process.
 * Like sd_listen_fds(unset_environment=1) the three variables are removed from process.env
 * either way, and every passed fd is made close-on-exec. A missing name is "unknown".
 */
export function sdListenFds(): { fd: number; name: string }[] {
  const env = process.env;
  const pid = env.LISTEN_PID;
  const count = env.LISTEN_FDS;
  const names = env.LISTEN_FDNAMES;
  delete env.LISTEN_PID;
  delete env.LISTEN_FDS;
  delete env.LISTEN_FDNAMES;
  if (pid === undefined || count === undefined || !/^\d+$/.test(pid) || Number(pid) !== process.pid) return [];
  if (!/^\d+$/.test(count)) return [];
  const n = Number(count);
  const nameList = names === undefined ? [] : names.split(":");
  const out: { fd: number; name: string }[] = [];
  for (let i = 0; i < n; i++) {
    const fd = SD_LISTEN_FDS_START + i;
    setCloexec(fd, true);
    out.push({ fd, name: nameList[i] || "unknown" });
  }
  return out;
}

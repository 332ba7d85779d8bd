// sd_notify(3) and sd_listen_fds(3) without libsystemd. node:dgram cannot do AF_UNIX datagrams
// (bun-ffi.md §8), so the datagram goes through our own sendmsg.
import { closeFd, setCloexec } from "./fd.ts";
import { SysError } from "./libc.ts";
import { MessageIo, SCM_MAX_FD, unixDatagramSocket } from "./unix.ts";

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
 * sd_pid_notify_with_fds: e.g. "FDSTORE=1\nFDNAME=luod-vm-42" with the fds to put in the unit's
 * fd store. With FileDescriptorStorePreserve=yes systemd ≥ 261 carries LUO session fds across a
 * kexec and hands them back through LISTEN_FDS (systemd-luo.md). The fds stay open here too.
 */
export function sdNotifyWithFds(state: string, fds: readonly number[]): boolean {
  return notify(state, fds);
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

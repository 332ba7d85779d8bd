// File-descriptor plumbing: open/close/dup, CLOEXEC, full reads and writes, size, and /proc views.
import { lstatSync, readdirSync, readFileSync, readlinkSync, writeSync } from "node:fs";
import { ptr } from "bun:ffi";
import { check, cString, Errno, lastErrno, SysError, sys } from "./libc.ts";

export const O_RDONLY = 0;
export const O_WRONLY = 1;
export const O_RDWR = 2;
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;

const F_GETFD = 1;
const F_SETFD = 2;
const FD_CLOEXEC = 1;
const F_DUPFD_CLOEXEC = 1030;

/**
 * close(2). EINTR is not an error: on Linux the fd is released before close can be interrupted,
 * so retrying would close someone else's fd. Anything else (EBADF, EIO) throws.
 */
export function closeFd(fd: number): void {
  if (sys.close(fd) === -1) {
    const e = lastErrno();
    if (e !== Errno.EINTR) throw new SysError("close", e);
  }
}

/**
 * Closes each fd and ignores any error: for fds being released on paths that could do nothing
 * about a failure (cleanup, a refused request, a closing connection). Safe because close(2)
 * releases the fd whatever it reports (Linux frees it before EIO or EINTR can be returned, so a
 * retry could only close someone else's fd), and EBADF means it was released already.
 */
export function closeQuietly(fds: number | Iterable<number>): void {
  for (const fd of typeof fds === "number" ? [fds] : fds) {
    try {
      closeFd(fd);
    } catch {
      // see above: the fd is released either way
    }
  }
}

/** TCGETS fills the kernel's struct termios (36 bytes; glibc's is 60) for a terminal only, ENOTTY
 *  otherwise (include/uapi/asm-generic/termbits.h, drivers/tty/tty_ioctl.c). 64 bytes hold either. */
const TCGETS = 0x5401;
const termios = new Uint8Array(new ArrayBuffer(64));

/** isatty(3) as one ioctl: node:tty (and process.stdout.isTTY) costs ~2 ms to load at start. */
export function isTerminal(fd: number): boolean {
  return sys.ioctl(fd, TCGETS, ptr(termios)) === 0;
}

/**
 * Writes all of `text` to fd synchronously (stdout/stderr without Bun's stream objects, which
 * cost ~2 ms to create at start). Waits out EAGAIN on a non-blocking pipe; drops the rest on any
 * other error (EPIPE: nobody is reading).
 */
export function writeText(fd: number, text: string): void {
  const buf = Buffer.from(text);
  let off = 0;
  while (off < buf.length) {
    try {
      off += writeSync(fd, buf, off, buf.length - off);
    } catch (e) {
      if ((e as { code?: string }).code === "EAGAIN") continue;
      return;
    }
  }
}

/** A new close-on-exec fd for the same open file description, numbered ≥ 3 (never a stdio slot). */
export function dupFd(fd: number): number {
  return check("fcntl(F_DUPFD_CLOEXEC)", sys.fcntl(fd, F_DUPFD_CLOEXEC, 3));
}

/**
 * Every fd LUO hands out is O_CLOEXEC (docs/kernel.md#every-fd-luo-returns-is-o_cloexec): clear the
 * flag before passing one through exec (a self re-exec, a systemd hand-off), set it again
 * afterwards.
 */
export function setCloexec(fd: number, on: boolean): void {
  const flags = check("fcntl(F_GETFD)", sys.fcntl(fd, F_GETFD, 0));
  const next = on ? flags | FD_CLOEXEC : flags & ~FD_CLOEXEC;
  if (next !== flags) check("fcntl(F_SETFD)", sys.fcntl(fd, F_SETFD, next));
}

export function getCloexec(fd: number): boolean {
  return (check("fcntl(F_GETFD)", sys.fcntl(fd, F_GETFD, 0)) & FD_CLOEXEC) !== 0;
}

/** open(2); retried on EINTR (opening a FIFO or a slow device can be interrupted). */
export function openFile(path: string, flags: number = O_RDONLY | O_CLOEXEC, mode = 0o600): number {
  const op = `open ${path}`;
  const p = cString(op, path);
  for (;;) {
    const fd = sys.open(p, flags, mode);
    if (fd >= 0) return fd;
    const e = lastErrno();
    if (e !== Errno.EINTR) throw new SysError(op, e);
  }
}

/**
 * pread(2) from file offset `offset` until `buf` is full or EOF. Returns the bytes read.
 * The caller's buffer is passed at call time (not cached), so any Uint8Array is fine.
 */
export function readFull(fd: number, buf: Uint8Array, offset: number): number {
  let done = 0;
  while (done < buf.length) {
    const n = Number(sys.pread(fd, ptr(buf, done), buf.length - done, offset + done));
    if (n === 0) break;
    if (n === -1) {
      const e = lastErrno();
      if (e === Errno.EINTR) continue;
      throw new SysError("pread", e);
    }
    done += n;
  }
  return done;
}

/**
 * Write all of `data`: pwrite(2) at `offset` when given, else write(2) at the file position.
 * Meant for blocking fds (memfds, files); EAGAIN on a non-blocking fd throws.
 */
export function writeFull(fd: number, data: Uint8Array, offset?: number): void {
  let done = 0;
  while (done < data.length) {
    const p = ptr(data, done);
    const len = data.length - done;
    const n = Number(offset === undefined ? sys.write(fd, p, len) : sys.pwrite(fd, p, len, offset + done));
    if (n === -1) {
      const e = lastErrno();
      if (e === Errno.EINTR) continue;
      throw new SysError(offset === undefined ? "write" : "pwrite", e);
    }
    done += n;
  }
}

// x86_64 struct stat is 144 bytes; st_size (off_t) is at offset 48.
const STAT_SIZE = 144;
const ST_SIZE_OFFSET = 48;

export function fileSize(fd: number): number {
  const st = new DataView(new ArrayBuffer(STAT_SIZE));
  check("fstat", sys.fstat(fd, ptr(st)));
  return Number(st.getBigInt64(ST_SIZE_OFFSET, true));
}

// x86_64 struct stat: st_mode (u32) at offset 24; S_IFMT / S_IFSOCK from include/uapi/linux/stat.h.
const ST_MODE_OFFSET = 24;
const S_IFMT = 0o170000;
const S_IFSOCK = 0o140000;

/**
 * Whether `fd` is a socket (fstat: S_IFSOCK). luod refuses sockets as payload: one that is the
 * peer's own end would keep the connection open after the peer died (docs/kernel.md#sockets-in-flight).
 */
export function isSocket(fd: number): boolean {
  const st = new DataView(new ArrayBuffer(STAT_SIZE));
  check("fstat", sys.fstat(fd, ptr(st)));
  return (st.getUint32(ST_MODE_OFFSET, true) & S_IFMT) === S_IFSOCK;
}

// x86_64 struct stat: st_dev (u64) at offset 0, st_ino (u64) at offset 8.
const ST_DEV_OFFSET = 0;
const ST_INO_OFFSET = 8;

/** fstat's st_dev and st_ino of `fd`: which file it is (systemd's $JOURNAL_STREAM names stderr this way). */
export function fileIdentity(fd: number): { dev: bigint; ino: bigint } {
  const st = new DataView(new ArrayBuffer(STAT_SIZE));
  check(`fstat(${fd})`, sys.fstat(fd, ptr(st)));
  return { dev: st.getBigUint64(ST_DEV_OFFSET, true), ino: st.getBigUint64(ST_INO_OFFSET, true) };
}

/** The whole content of a file (a memfd) from offset 0, in a buffer of its size. */
export function readWhole(fd: number): Uint8Array {
  const data = new Uint8Array(new ArrayBuffer(fileSize(fd)));
  readFull(fd, data, 0);
  return data;
}

/**
 * What an fd points at, e.g. "/memfd:foo (deleted)", "socket:[123]",
 * "anon_inode:[luo_session] <name>" (docs/kernel.md#proc-and-debugfs; names may hold
 * spaces/newlines).
 */
export function fdTarget(fd: number): string {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`);
  } catch (e) {
    throw new SysError(`readlink /proc/self/fd/${fd}`, errnoOf(e));
  }
}

/** Number of open fds of `pid` (default: this process). */
export function countOpenFds(pid?: number): number {
  const dir = `/proc/${pid ?? "self"}/fd`;
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (e) {
    throw new SysError(`readdir ${dir}`, errnoOf(e));
  }
  if (pid !== undefined && pid !== process.pid) return names.length;
  // The listing includes the directory fd readdir itself had open; it is closed by now.
  let n = 0;
  for (const name of names) {
    try {
      lstatSync(`${dir}/${name}`);
      n++;
    } catch {
      // gone: that was readdir's own fd
    }
  }
  return n;
}

export interface FdHolder {
  pid: number;
  comm: string;
  fd: number;
}

/**
 * Scan /proc/<pid>/fd/* for links to `target` (e.g. "/dev/liveupdate"). Processes we may not
 * inspect (other users without CAP_SYS_PTRACE, vanished pids) are skipped silently.
 */
export function findFdHolders(target: string): FdHolder[] {
  const out: FdHolder[] = [];
  let pids: string[];
  try {
    pids = readdirSync("/proc");
  } catch {
    return out;
  }
  for (const entry of pids) {
    if (!/^\d+$/.test(entry)) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${entry}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      let link: string;
      try {
        link = readlinkSync(`/proc/${entry}/fd/${fd}`);
      } catch {
        continue;
      }
      if (link !== target) continue;
      let comm = "?";
      try {
        comm = readFileSync(`/proc/${entry}/comm`, "utf8").trim();
      } catch {
        // exited meanwhile
      }
      out.push({ pid: Number(entry), comm, fd: Number(fd) });
    }
  }
  return out;
}

/** errno number of a node:fs error (ENOENT if it carries none we recognise). */
function errnoOf(e: unknown): number {
  const code = (e as { code?: string }).code;
  const n = code ? (Errno as Record<string, number>)[code] : undefined;
  if (n !== undefined) return n;
  const raw = (e as { errno?: number }).errno;
  return typeof raw === "number" && raw !== 0 ? Math.abs(raw) : Errno.ENOENT;
}

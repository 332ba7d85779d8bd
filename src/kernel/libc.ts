// The one dlopen of libc in the project: every syscall the kernel layer makes goes through the
// symbols below. Also home of errno capture and SysError, the single error type for failed calls.
//
// Signatures are fixed even for variadic C functions (ioctl, fcntl, open, syscall): on x86_64 SysV,
// variadic integer/pointer arguments travel in the same registers as fixed ones
// (docs/bun.md#dlopen-variadic-functions-and-errno), so a fixed declaration is exact. That is also
// why we refuse other arches.
import { dlopen, FFIType, read } from "bun:ffi";

if (process.arch !== "x64" || process.platform !== "linux") {
  throw new Error(
    `luo-agent kernel layer supports linux x86_64 only (this is ${process.platform}/${process.arch}): ` +
      "struct layouts, syscall numbers and the variadic FFI signatures are x86_64-specific",
  );
}

// ssize_t-returning calls use i64_fast: a plain number (no BigInt allocation on hot paths).
const lib = dlopen("libc.so.6", {
  // errno
  __errno_location: { args: [], returns: "ptr" },
  strerrorname_np: { args: ["i32"], returns: "cstring" },
  strerror: { args: ["i32"], returns: "cstring" },
  // identity
  getpid: { args: [], returns: "i32" },
  getuid: { args: [], returns: "u32" },
  getgid: { args: [], returns: "u32" },
  // files
  open: { args: ["ptr", "i32", "u32"], returns: "i32" },
  close: { args: ["i32"], returns: "i32" },
  read: { args: ["i32", "ptr", "u64"], returns: FFIType.i64_fast },
  write: { args: ["i32", "ptr", "u64"], returns: FFIType.i64_fast },
  pread: { args: ["i32", "ptr", "u64", "i64"], returns: FFIType.i64_fast },
  pwrite: { args: ["i32", "ptr", "u64", "i64"], returns: FFIType.i64_fast },
  fcntl: { args: ["i32", "i32", "u64"], returns: "i32" },
  fstat: { args: ["i32", "ptr"], returns: "i32" },
  ftruncate: { args: ["i32", "i64"], returns: "i32" },
  memfd_create: { args: ["ptr", "u32"], returns: "i32" },
  ioctl: { args: ["i32", "u64", "ptr"], returns: "i32" },
  sync: { args: [], returns: "void" },
  // number + 6 args; the 7th goes on the stack, glibc's stub shuffles them into place
  syscall: { args: ["i64", "i64", "i64", "i64", "i64", "i64", "i64"], returns: FFIType.i64_fast },
  // sockets
  socket: { args: ["i32", "i32", "i32"], returns: "i32" },
  socketpair: { args: ["i32", "i32", "i32", "ptr"], returns: "i32" },
  bind: { args: ["i32", "ptr", "u32"], returns: "i32" },
  listen: { args: ["i32", "i32"], returns: "i32" },
  accept4: { args: ["i32", "ptr", "ptr", "i32"], returns: "i32" },
  connect: { args: ["i32", "ptr", "u32"], returns: "i32" },
  shutdown: { args: ["i32", "i32"], returns: "i32" },
  getsockopt: { args: ["i32", "i32", "i32", "ptr", "ptr"], returns: "i32" },
  setsockopt: { args: ["i32", "i32", "i32", "ptr", "u32"], returns: "i32" },
  sendmsg: { args: ["i32", "ptr", "i32"], returns: FFIType.i64_fast },
  recvmsg: { args: ["i32", "ptr", "i32"], returns: FFIType.i64_fast },
  // event loop
  epoll_create1: { args: ["i32"], returns: "i32" },
  epoll_ctl: { args: ["i32", "i32", "i32", "ptr"], returns: "i32" },
  epoll_wait: { args: ["i32", "ptr", "i32", "i32"], returns: "i32" },
  eventfd: { args: ["u32", "i32"], returns: "i32" },
  poll: { args: ["ptr", "u64", "i32"], returns: "i32" },
});

/** Raw libc symbols. For src/kernel/* only: everything else uses the typed wrappers. */
export const sys = lib.symbols;

// errno lives in thread-local storage. Module state is per thread (a Worker evaluates its own
// copy of this module), so caching the location once per module instance is correct.
const errnoLocation = sys.__errno_location();
if (errnoLocation === null) throw new Error("__errno_location() returned NULL");
const errnoPtr = errnoLocation;

/** errno of the calling thread. Read it immediately after the failing call. */
export function lastErrno(): number {
  return read.i32(errnoPtr, 0);
}

export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  EINTR: 4,
  EIO: 5,
  E2BIG: 7,
  ENOEXEC: 8,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  EINVAL: 22,
  EMFILE: 24,
  ENOTTY: 25,
  ENOSPC: 28,
  EPIPE: 32,
  ENAMETOOLONG: 36,
  ENOSYS: 38,
  EOPNOTSUPP: 95,
  EADDRNOTAVAIL: 99,
  ECONNRESET: 104,
  ENOTCONN: 107,
  ETIMEDOUT: 110,
  ECONNREFUSED: 111,
} as const;

/** "EBADF" for 9 (strerrorname_np, glibc ≥ 2.32); "ERRNO_<n>" for numbers glibc does not know. */
export function errnoName(n: number): string {
  const name = sys.strerrorname_np(n); // NULL (→ null) for numbers glibc has no name for
  return name ? String(name) : `ERRNO_${n}`;
}

function strerror(n: number): string {
  return String(sys.strerror(n) ?? `errno ${n}`);
}

/**
 * A failed system call (or a request the kernel would reject with that errno, caught early).
 * message = `${op}: ${code} (${detail})`; detail defaults to strerror(errno).
 */
export class SysError extends Error {
  readonly op: string;
  readonly errno: number;
  readonly code: string;
  constructor(op: string, errno: number, detail?: string) {
    const code = errnoName(errno);
    super(`${op}: ${code} (${detail ?? strerror(errno)})`);
    this.name = "SysError";
    this.op = op;
    this.errno = errno;
    this.code = code;
  }
}

/** Return rc as a number, or throw SysError(op, errno) when the call returned -1. */
export function check(op: string, rc: number | bigint): number {
  const n = typeof rc === "bigint" ? Number(rc) : rc;
  if (n === -1) throw new SysError(op, lastErrno());
  return n;
}

/** Return rc, or -errno when the call returned -1 (for paths where EAGAIN etc. are normal). */
export function rcOrErrno(rc: number | bigint): number {
  const n = typeof rc === "bigint" ? Number(rc) : rc;
  return n === -1 ? -lastErrno() : n;
}

export function getpid(): number {
  return sys.getpid();
}
export function getuid(): number {
  return sys.getuid();
}
export function getgid(): number {
  return sys.getgid();
}

const utf8 = new TextEncoder();

/**
 * NUL-terminated UTF-8 copy of s, backed by its own ArrayBuffer (docs/bun.md#ffi-memory-rules, rule
 * 1: a small `new Uint8Array(n)` may move when its buffer is materialized, so never hand out its
 * address). Throws SysError(op, EINVAL) for an embedded NUL, which C would silently truncate at.
 */
export function cString(op: string, s: string): Uint8Array {
  if (s.includes("\0")) throw new SysError(op, Errno.EINVAL, "string contains a NUL byte");
  const bytes = utf8.encode(s);
  const out = new Uint8Array(new ArrayBuffer(bytes.length + 1));
  out.set(bytes);
  return out;
}

/** Store a native address as two u32 halves (no BigInt allocation). */
export function putPointer(view: DataView, offset: number, address: number): void {
  view.setUint32(offset, address >>> 0, true);
  view.setUint32(offset + 4, Math.floor(address / 0x1_0000_0000), true);
}

// The LUO uAPI of Linux 7.2 (include/uapi/linux/liveupdate.h): /dev/liveupdate and its six ioctls.
// The rules behind each call are in docs/kernel.md (cited by anchor).
import { realpathSync } from "node:fs";
import { ptr } from "bun:ffi";
import { closeFd, findFdHolders, O_CLOEXEC, O_RDWR } from "./fd.ts";
import { check, cString, Errno, lastErrno, SysError, sys } from "./libc.ts";

export const LIVEUPDATE_DEVICE = "/dev/liveupdate";

/** _IO(0xBA, nr): no size or direction bits (docs/kernel.md#ioctls). */
export const LIVEUPDATE_IOCTL = {
  CREATE_SESSION: 0xba00,
  RETRIEVE_SESSION: 0xba01,
  SESSION_PRESERVE_FD: 0xba40,
  SESSION_RETRIEVE_FD: 0xba41,
  SESSION_FINISH: 0xba42,
  SESSION_GET_NAME: 0xba43,
} as const;

/** LIVEUPDATE_SESSION_NAME_LENGTH: the name field, NUL included. */
export const SESSION_NAME_FIELD = 64;
export const SESSION_NAME_MAX = SESSION_NAME_FIELD - 1;

// Full struct sizes (docs/kernel.md#struct-layouts). The kernel rejects a smaller `size` with
// EINVAL and non-zero bytes past its own struct with E2BIG
// (docs/kernel.md#dispatch-order-and-size-rules, steps 5–6), so we always send exactly these.
const CREATE_RETRIEVE_SESSION_SIZE = 72;
const PRESERVE_RETRIEVE_FD_SIZE = 16;
const FINISH_SIZE = 8;
const GET_NAME_SIZE = 72;
const NAME_OFFSET = 8;
const FD_OFFSET = 4;
const TOKEN_OFFSET = 8;

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder();
const U64_MAX = (1n << 64n) - 1n;

/**
 * The UTF-8 bytes of a session name, or a SysError(op, EINVAL) before any ioctl: the kernel wants
 * 1..63 non-NUL bytes (docs/kernel.md#names-and-tokens) and would answer EINVAL itself for
 * empty/unterminated names.
 */
export function sessionNameBytes(name: string, op = "session name"): Uint8Array {
  const bytes = utf8.encode(name);
  if (bytes.length < 1 || bytes.length > SESSION_NAME_MAX)
    throw new SysError(op, Errno.EINVAL, `session name must be 1..${SESSION_NAME_MAX} bytes, got ${bytes.length}`);
  if (bytes.includes(0)) throw new SysError(op, Errno.EINVAL, "session name contains a NUL byte");
  return bytes;
}

function sessionRequest(name: string, op: string): DataView {
  const bytes = sessionNameBytes(name, op);
  const view = new DataView(new ArrayBuffer(CREATE_RETRIEVE_SESSION_SIZE));
  view.setUint32(0, CREATE_RETRIEVE_SESSION_SIZE, true);
  // fd (offset 4) is output; name[64] at 8 stays NUL-padded, so it is always terminated.
  new Uint8Array(view.buffer, NAME_OFFSET, SESSION_NAME_FIELD).set(bytes);
  return view;
}

/** struct liveupdate_ioctl_{create,retrieve}_session (72 B): size | fd (out) | name[64]. */
export function encodeSessionRequest(name: string): ArrayBuffer {
  return sessionRequest(name, "session name").buffer as ArrayBuffer;
}

function checkToken(op: string, token: bigint): void {
  if (token < 0n || token > U64_MAX) throw new SysError(op, Errno.EINVAL, `token ${token} is not a u64`);
}

function preserveRequest(fd: number, token: bigint, op: string): DataView {
  checkToken(op, token);
  const view = new DataView(new ArrayBuffer(PRESERVE_RETRIEVE_FD_SIZE));
  view.setUint32(0, PRESERVE_RETRIEVE_FD_SIZE, true);
  view.setInt32(FD_OFFSET, fd, true);
  view.setBigUint64(TOKEN_OFFSET, token, true);
  return view;
}

/** struct liveupdate_session_preserve_fd (16 B): size | fd (in) | u64 token. */
export function encodePreserveFd(fd: number, token: bigint): ArrayBuffer {
  return preserveRequest(fd, token, "SESSION_PRESERVE_FD").buffer as ArrayBuffer;
}

function retrieveFdRequest(token: bigint, op: string): DataView {
  checkToken(op, token);
  const view = new DataView(new ArrayBuffer(PRESERVE_RETRIEVE_FD_SIZE));
  view.setUint32(0, PRESERVE_RETRIEVE_FD_SIZE, true);
  view.setBigUint64(TOKEN_OFFSET, token, true);
  return view;
}

/** struct liveupdate_session_retrieve_fd (16 B): size | fd (out) | u64 token. */
export function encodeRetrieveFd(token: bigint): ArrayBuffer {
  return retrieveFdRequest(token, "SESSION_RETRIEVE_FD").buffer as ArrayBuffer;
}

/** struct liveupdate_session_finish (8 B): size | reserved (must be 0, else EINVAL). */
export function encodeFinish(): ArrayBuffer {
  const buf = new ArrayBuffer(FINISH_SIZE);
  new DataView(buf).setUint32(0, FINISH_SIZE, true);
  return buf;
}

/** struct liveupdate_session_get_name (72 B): size | reserved (0) | name[64] (out). */
export function encodeGetName(): ArrayBuffer {
  const buf = new ArrayBuffer(GET_NAME_SIZE);
  new DataView(buf).setUint32(0, GET_NAME_SIZE, true);
  return buf;
}

function ioctl(op: string, fd: number, request: number, arg: DataView | ArrayBuffer): void {
  check(op, sys.ioctl(fd, request, ptr(arg))); // arg stays referenced until the call returns
}

function withName(ioctlName: string, sessionName?: string): string {
  return sessionName === undefined ? ioctlName : `${ioctlName} ${sessionName}`;
}

// ---------------------------------------------------------------------------------------------
// /dev/liveupdate

export interface OpenDeviceOptions {
  /** Device node (tests point this elsewhere). Default /dev/liveupdate. */
  path?: string;
  /** Total open attempts while the device answers EBUSY. Default 6. */
  attempts?: number;
  /** First wait between attempts; doubles each time (20, 40, … ms). Default 20. */
  backoffMs?: number;
}

/**
 * Run `attempt` until it does not throw SysError(EBUSY), sleeping backoffMs·2^i between tries,
 * at most `attempts` times; the last EBUSY is rethrown. Any other error is thrown at once.
 * `sleep` is injectable for tests; the default blocks the thread (Bun.sleepSync).
 */
export function retryWhileBusy<T>(
  attempt: () => T,
  attempts: number,
  backoffMs: number,
  sleep: (ms: number) => void = Bun.sleepSync,
): T {
  const total = Math.max(1, Math.floor(attempts));
  for (let i = 0; ; i++) {
    try {
      return attempt();
    } catch (e) {
      if (!(e instanceof SysError) || e.errno !== Errno.EBUSY || i + 1 >= total) throw e;
      sleep(backoffMs * 2 ** i);
    }
  }
}

/** "812 (systemd), 1044 (luod)" or a sentence saying nobody visible holds it. */
export function describeHolders(path: string): string {
  let target = path;
  try {
    target = realpathSync(path);
  } catch {
    // keep the given path
  }
  const holders = findFdHolders(target);
  if (holders.length === 0)
    return "no process visible in /proc holds it (another pid namespace, or /proc/*/fd not readable)";
  const seen = new Set<number>();
  const names: string[] = [];
  for (const h of holders) {
    if (seen.has(h.pid)) continue;
    seen.add(h.pid);
    names.push(`${h.pid} (${h.comm})${h.pid === process.pid ? " [this process]" : ""}`);
  }
  return `held by ${names.join(", ")}`;
}

/**
 * open("/dev/liveupdate", O_RDWR|O_CLOEXEC).
 *
 * The device admits a single open file description system-wide: a second open, from anyone, gets
 * EBUSY (docs/kernel.md#single-open-device), and systemd ≥ 261 opens it too. So EBUSY is retried
 * with exponential backoff (default 6 attempts, 20 ms doubling: ≤ 620 ms, blocking this thread),
 * and the final error names the likely holder. ENOENT means this kernel has no LUO at all; EIO
 * means deserializing the previous kernel's sessions failed and LUO is dead until the next reboot
 * (docs/kernel.md#single-open-device). Prefer withLiveupdateDevice: nothing depends on keeping the
 * device open (docs/kernel.md#single-open-device).
 */
export function openLiveupdateDevice(opts: OpenDeviceOptions = {}): number {
  const path = opts.path ?? LIVEUPDATE_DEVICE;
  const attempts = opts.attempts ?? 6;
  const backoffMs = opts.backoffMs ?? 20;
  const op = `open ${path}`;
  const cpath = cString(op, path);
  const openOnce = (): number => {
    for (;;) {
      const fd = sys.open(cpath, O_RDWR | O_CLOEXEC, 0);
      if (fd >= 0) return fd;
      const e = lastErrno();
      if (e !== Errno.EINTR) throw new SysError(op, e);
    }
  };
  try {
    return retryWhileBusy(openOnce, attempts, backoffMs);
  } catch (e) {
    if (!(e instanceof SysError)) throw e;
    switch (e.errno) {
      case Errno.ENOENT:
        throw new SysError(
          op,
          Errno.ENOENT,
          "this kernel has no Live Update Orchestrator (LUO): it needs CONFIG_LIVEUPDATE=y " +
            "(with CONFIG_KEXEC_HANDOVER) and kho=on liveupdate=on on the kernel command line",
        );
      case Errno.EBUSY:
        throw new SysError(
          op,
          Errno.EBUSY,
          `${path} admits one opener at a time and is ${describeHolders(path)}; ` +
            `still busy after ${Math.max(1, attempts)} attempts`,
        );
      case Errno.EIO:
        throw new SysError(
          op,
          Errno.EIO,
          "LUO could not restore the previous kernel's sessions; the device refuses every open " +
            "until the next reboot",
        );
      default:
        throw e;
    }
  }
}

/**
 * Open the device, run fn, always close it. fn must be synchronous: the device is closed as
 * soon as fn returns. Session fds created inside stay valid after the close
 * (docs/kernel.md#single-open-device).
 */
export function withLiveupdateDevice<T>(fn: (devFd: number) => T, opts?: OpenDeviceOptions): T {
  const devFd = openLiveupdateDevice(opts);
  try {
    const result = fn(devFd);
    if (result instanceof Promise)
      throw new TypeError("withLiveupdateDevice: fn must be synchronous; the device is closed when it returns");
    return result;
  } finally {
    closeFd(devFd);
  }
}

// ---------------------------------------------------------------------------------------------
// Device ioctls

/**
 * CREATE_SESSION → a new *outgoing* session fd (O_RDWR|O_CLOEXEC: clear CLOEXEC before an exec
 * hand-off, docs/kernel.md#every-fd-luo-returns-is-o_cloexec). The session lives exactly as long as
 * its last fd reference: closing every copy unpreserves it (docs/kernel.md#session-lifetimes).
 * EEXIST: an outgoing session of that name exists (incoming names don't count,
 * docs/kernel.md#names-and-tokens).
 */
export function createSession(devFd: number, name: string): number {
  const op = `CREATE_SESSION ${name}`;
  const req = sessionRequest(name, op);
  ioctl(op, devFd, LIVEUPDATE_IOCTL.CREATE_SESSION, req);
  return req.getInt32(FD_OFFSET, true);
}

/**
 * RETRIEVE_SESSION → the *incoming* session fd (O_CLOEXEC). Once per boot: ENOENT = no such session
 * (also the normal cold-boot answer), EINVAL = already retrieved and still open
 * (docs/kernel.md#errnos-per-ioctl). Closing the returned fd is an implicit FINISH that discards
 * unretrieved files (docs/kernel.md#retrieve-once).
 */
export function retrieveSession(devFd: number, name: string): number {
  const op = `RETRIEVE_SESSION ${name}`;
  const req = sessionRequest(name, op);
  ioctl(op, devFd, LIVEUPDATE_IOCTL.RETRIEVE_SESSION, req);
  return req.getInt32(FD_OFFSET, true);
}

/**
 * PRESERVE_FD on an outgoing session. Only memfd (non-hugetlb, unlinked shmem) is accepted (ENOENT
 * otherwise); EBUSY = that inode is already preserved in some session, including a
 * retrieved-but-unfinished one; EEXIST = token used in this session
 * (docs/kernel.md#errnos-per-ioctl). Afterwards the memfd's size is frozen (EPERM on resize) but
 * its contents stay live until the kexec (docs/kernel.md#memfd-preservation). EFAULT can be raised
 * *after* the file was preserved (copy-back failure): treat the session's state as unknown, close
 * and recreate it (docs/kernel.md#errnos-per-ioctl).
 */
export function preserveFd(sessionFd: number, fd: number, token: bigint, sessionName?: string): void {
  const op = withName("SESSION_PRESERVE_FD", sessionName);
  ioctl(op, sessionFd, LIVEUPDATE_IOCTL.SESSION_PRESERVE_FD, preserveRequest(fd, token, op));
}

/**
 * RETRIEVE_FD on an incoming session → a new memfd fd (O_CLOEXEC, empty name). Repeating it for the
 * same token yields another fd on the same open file (shared offset). A handler failure (EIO,
 * ENOMEM from the caller's memcg, EINVAL, EOPNOTSUPP) is sticky: every later try for that token
 * returns the same error and the data is lost (docs/kernel.md#errnos-per-ioctl). ENOENT = unknown
 * token or already FINISHed.
 */
export function retrieveFd(sessionFd: number, token: bigint, sessionName?: string): number {
  const op = withName("SESSION_RETRIEVE_FD", sessionName);
  const req = retrieveFdRequest(token, op);
  ioctl(op, sessionFd, LIVEUPDATE_IOCTL.SESSION_RETRIEVE_FD, req);
  return req.getInt32(FD_OFFSET, true);
}

/**
 * FINISH an incoming session. It does not check that every token was retrieved: unretrieved memfds
 * are freed silently (docs/kernel.md#finish), so check the manifest first. Idempotent; EINVAL on an
 * outgoing session. Retrieved memfds can be preserved again only after this
 * (docs/kernel.md#finish).
 */
export function finishSession(sessionFd: number, sessionName?: string): void {
  const op = withName("SESSION_FINISH", sessionName);
  ioctl(op, sessionFd, LIVEUPDATE_IOCTL.SESSION_FINISH, encodeFinish());
}

/**
 * GET_NAME: the exact session name (works on both kinds; /proc labels are not exact,
 * docs/kernel.md#proc-and-debugfs).
 */
export function getSessionName(sessionFd: number): string {
  const buf = encodeGetName();
  ioctl("SESSION_GET_NAME", sessionFd, LIVEUPDATE_IOCTL.SESSION_GET_NAME, buf);
  const field = new Uint8Array(buf, NAME_OFFSET, SESSION_NAME_FIELD);
  const end = field.indexOf(0);
  return utf8Decoder.decode(field.subarray(0, end < 0 ? SESSION_NAME_FIELD : end));
}

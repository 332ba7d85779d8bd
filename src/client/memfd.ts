// Thin wrappers over the kernel layer for applications: preserve a memfd into the session luod
// handed out (START_PRESERVATION), and get it back from the restored session (CLAIMED).
// Apps import these (and LuoClient) instead of src/kernel, which stays an internal layer.
//
// What the kernel does with them (docs/kernel.md#memfd-preservation, docs/kernel.md#retrieve-once,
// docs/kernel.md#finish):
//  * tokens are u64, unique per session, chosen by the app; the same token retrieves the memfd;
//  * from PRESERVE until the session is closed the memfd's size is frozen (EPERM on ftruncate or
//    extending writes); contents stay writable until the jump;
//  * a restored session can be retrieved once per boot (RETRIEVE_FD of a token may be repeated);
//    FINISH (or closing the session fd) ends the session, and memfds not retrieved by then are
//    freed silently;
//  * every fd returned is O_CLOEXEC.
import {
  finishSession as kFinishSession,
  getSessionName as kGetSessionName,
  preserveFd,
  retrieveFd,
} from "../kernel/liveupdate";
import {
  memfdCreate as kMemfdCreate,
  ftruncate,
  addSeals,
  getSeals,
  F_SEAL_SEAL, F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_WRITE, F_SEAL_FUTURE_WRITE,
} from "../kernel/memfd";
import { closeFd, dupFd, fileSize, readFull, writeFull } from "../kernel/fd";

export { F_SEAL_SEAL, F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_WRITE, F_SEAL_FUTURE_WRITE };
export { SysError } from "../kernel/libc";

function toToken(token: bigint | number): bigint {
  if (typeof token === "number") {
    if (!Number.isSafeInteger(token) || token < 0) throw new RangeError(`token ${token}: a non-negative integer`);
    return BigInt(token);
  }
  return token;
}

/** LIVEUPDATE_SESSION_PRESERVE_FD: preserve `memfd` in the session under `token`. */
export function preserveMemfd(sessionFd: number, memfd: number, token: bigint | number): void {
  preserveFd(sessionFd, memfd, toToken(token));
}

/** LIVEUPDATE_SESSION_RETRIEVE_FD: the memfd preserved under `token` (a new fd; close it yourself). */
export function retrieveMemfd(sessionFd: number, token: bigint | number): number {
  return retrieveFd(sessionFd, toToken(token));
}

/**
 * LIVEUPDATE_SESSION_FINISH on a restored session. Retrieve every memfd first: FINISH frees the
 * rest without an error. Then close the session fd and tell luod (`client.finished(id)`).
 */
export function finishSession(sessionFd: number): void {
  kFinishSession(sessionFd);
}

/** LIVEUPDATE_SESSION_GET_NAME. */
export function sessionName(sessionFd: number): string {
  return kGetSessionName(sessionFd);
}

/** memfd_create (CLOEXEC + ALLOW_SEALING), optionally sized. Never use MFD_HUGETLB for LUO. */
export function createMemfd(name: string, size?: number): number {
  const fd = kMemfdCreate(name);
  if (size !== undefined) {
    try {
      ftruncate(fd, size);
    } catch (e) {
      closeFd(fd);
      throw e;
    }
  }
  return fd;
}

export { closeFd, dupFd, fileSize, readFull, writeFull, ftruncate, addSeals, getSeals };

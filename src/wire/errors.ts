// Error codes of protocol v1 (docs/protocol.md, "Error codes") and the one error class the wire
// layer throws. A code is an errno name: the fixed ones below have a protocol meaning; any other
// errno name (EIO, EACCES, …) may appear when a syscall failed, so the type stays open.
import { SysError } from "../kernel/libc";

export type ErrorCode =
  | "EBADMSG"
  | "EOPNOTSUPP"
  | "EMSGSIZE"
  | "EPERM"
  | "EINVAL"
  | "EEXIST"
  | "EBUSY"
  | "ENOENT"
  | "ENODEV"
  | "ENOEXEC"
  | "ECANCELED"
  | "ETIMEDOUT"
  | "ENOTCONN"
  // Any other errno name, from a failed syscall. `string & {}` keeps editor completion of the
  // names above while still accepting every string.
  | (string & {});

/** Thrown by the wire layer (and usable by the daemon) for an error that has a protocol code. */
export class ProtocolError extends Error {
  constructor(readonly code: ErrorCode, message: string) {
    super(message);
    this.name = "ProtocolError";
  }
}

/** Turns anything thrown into a one-line message (replies and logs never carry a stack). */
export function oneLine(text: string, max = 512): string {
  const flat = text.replace(/\s*[\r\n]+\s*/g, "; ").trim();
  return flat.length > max ? flat.slice(0, max - 1) + "…" : flat;
}

/**
 * The error code an exception stands for on the wire: a ProtocolError's code, a failed syscall's
 * errno name (SysError), else `fallback` (a bug or a library error has no protocol meaning).
 */
export function errorCodeOf(e: unknown, fallback: ErrorCode): ErrorCode {
  return e instanceof ProtocolError || e instanceof SysError ? e.code : fallback;
}

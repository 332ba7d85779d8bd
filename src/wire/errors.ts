// Error codes of protocol v1 (docs/protocol.md, "Error codes") and the one error class the wire
// layer throws. A code is an errno name: the fixed ones below have a protocol meaning; any other
// errno name (EIO, EACCES, …) may appear when a syscall failed, so the type stays open.

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
  // Any other errno name, from a failed syscall. `string & {}` keeps editor completion of the
  // names above while still accepting every string.
  | (string & {});

/** The codes that have a meaning of their own in protocol v1 (every other code is an errno name). */
export const PROTOCOL_ERROR_CODES: readonly ErrorCode[] = [
  "EBADMSG", "EOPNOTSUPP", "EMSGSIZE", "EPERM", "EINVAL", "EEXIST", "EBUSY", "ENOENT", "ENODEV",
  "ENOEXEC", "ECANCELED", "ETIMEDOUT",
];

/** An error code on the wire: an errno-style name, `E` followed by capitals and digits. */
export const ERROR_CODE_PATTERN = /^E[A-Z0-9]{1,31}$/;

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

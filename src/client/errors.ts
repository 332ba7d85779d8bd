// Errors of the client library. One class for everything luod says no to (LuoError, with the
// reply's error code), and two subclasses for the transport, so callers (luoctl) can tell
// "luod refused" from "luod is not there".

export class LuoError extends Error {
  /** An errno-style code: the reply's `error.code` (EPERM, EBUSY, ECANCELED…), or see subclasses. */
  readonly code: string;
  /** The whole reply that carried the error, when there was one (KEXEC adds `timings`). */
  readonly reply?: Record<string, unknown>;

  constructor(code: string, message: string, reply?: Record<string, unknown>) {
    super(message);
    this.name = "LuoError";
    this.code = code;
    this.reply = reply;
  }
}

/**
 * connect() to luod's socket failed. `code` is the errno name: ENOENT (no socket: luod not
 * running), ECONNREFUSED (a stale socket file), EACCES (no permission on the socket), …
 */
export class LuoConnectError extends LuoError {
  constructor(code: string, message: string, readonly path: string) {
    super(code, message);
    this.name = "LuoConnectError";
  }
}

/**
 * The connection closed (or the client was closed) while a request or waitFor was outstanding.
 * `code` is "ECONNRESET" when the peer went away, "ESHUTDOWN" after close().
 */
export class LuoConnectionClosed extends LuoError {
  constructor(code: "ECONNRESET" | "ESHUTDOWN", message: string) {
    super(code, message);
    this.name = "LuoConnectionClosed";
  }
}

/** waitFor() / a request with a timeout ran out of time. `code` is "ETIMEDOUT". */
export class LuoTimeoutError extends LuoError {
  constructor(message: string) {
    super("ETIMEDOUT", message);
    this.name = "LuoTimeoutError";
  }
}

/**
 * What came from luod is not protocol v1: not JSON, not an object, a reply that does not match
 * its request (wrong `reply`, `ok`, `tag` or field types), a line over MAX_REPLY_BYTES, or fds
 * nobody asked for. `code` is "EBADMSG". The connection is not trusted afterwards: LuoClient
 * closes it, and every outstanding request rejects with this error.
 */
export class LuoProtocolError extends LuoError {
  constructor(detail: string) {
    super("EBADMSG", `luod gave an invalid reply: ${detail}`);
    this.name = "LuoProtocolError";
  }
}

/** The LuoError a reply with `ok: false` stands for (EIO and a plain message when it names none). */
export function replyFailure(msg: Record<string, unknown>, cmd: string): LuoError {
  const err = (typeof msg.error === "object" && msg.error !== null ? msg.error : {}) as Record<string, unknown>;
  const code = typeof err.code === "string" ? err.code : "EIO";
  const message = typeof err.message === "string" && err.message !== "" ? err.message : `${cmd} failed with ${code}`;
  return new LuoError(code, message, msg);
}

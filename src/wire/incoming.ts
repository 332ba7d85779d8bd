// One complete line from a peer as a Connection delivers it: a message (a JSON object) with the
// fds its `fds` claims, or an invalid line (EBADMSG) with what its error reply can echo.
import { oneLine } from "./errors";
import { MAX_FDS_PER_MESSAGE, type LineFramer } from "./framing";
import { echoOf, isPlainObject, type JsonObject, type Tag } from "./replies";

export type Incoming =
  | { kind: "message"; msg: JsonObject; fds: number[] }
  | { kind: "invalid"; message: string; echo: { cmd?: string; tag?: Tag } };

export function invalidLine(message: string, echo: { cmd?: string; tag?: Tag }): Incoming {
  return { kind: "invalid", message, echo };
}

/**
 * Decodes one non-blank line and takes the fds it claims from `framer`'s queue. When the line
 * cannot be a message, nothing is taken and the caller must close every fd still queued: a line
 * we cannot read may have carried fds, so none of them can be trusted now.
 */
export function decodeLine(line: string, framer: LineFramer): Incoming {
  let msg: unknown;
  try {
    msg = JSON.parse(line);
  } catch (e) {
    return invalidLine(`invalid JSON: ${oneLine((e as Error).message, 200)}`, {});
  }
  if (!isPlainObject(msg)) {
    return invalidLine(`a message must be a JSON object, got ${msg === null ? "null" : Array.isArray(msg) ? "an array" : typeof msg}`, {});
  }
  const echo = echoOf(msg);
  const n = msg.fds ?? 0;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 0 || n > MAX_FDS_PER_MESSAGE) {
    return invalidLine(`"fds" must be an integer from 0 to ${MAX_FDS_PER_MESSAGE}, got ${oneLine(JSON.stringify(n), 40)}`, echo);
  }
  const fds = framer.takeFds(n);
  if (fds === null) return invalidLine(`the line says "fds": ${n} but ${framer.queuedFds} fd(s) arrived with it`, echo);
  return { kind: "message", msg, fds };
}

/** `cmd` and `tag` of a raw line, when it is a JSON object that has them. */
export function echoOfLine(line: string): { cmd?: string; tag?: Tag } {
  try {
    const msg: unknown = JSON.parse(line);
    return isPlainObject(msg) ? echoOf(msg) : {};
  } catch {
    return {};
  }
}

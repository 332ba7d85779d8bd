// Connecting to luod: the socket path and a connect that waits out a full backlog. Kept apart from
// LuoClient so that luoctl's quick commands (OneShotClient) load neither the event loop nor the
// protocol schemas (part of every luoctl start, docs/performance.md).
import { unixConnect } from "../kernel/unix";
import { Errno, SysError } from "../kernel/libc";
import { LuoConnectError } from "./errors";

/** The protocol's default socket path (docs/protocol.md, "Transport"). */
export { DEFAULT_SOCKET } from "../wire/limits";

export async function connectWithRetry(path: string, timeoutMs: number): Promise<number> {
  const until = Date.now() + timeoutMs;
  for (let delay = 5; ; delay = Math.min(delay * 2, 100)) {
    try {
      return unixConnect(path, { nonblock: true });
    } catch (e) {
      if (e instanceof SysError) {
        if (e.errno === Errno.EAGAIN && Date.now() < until) {
          await Bun.sleep(delay); // luod's listen backlog is full: it is busy, not gone
          continue;
        }
        throw new LuoConnectError(e.code, connectMessage(path, e.code), path);
      }
      throw new LuoConnectError("EINVAL", `cannot connect to ${path}: ${(e as Error).message}`, path);
    }
  }
}

function connectMessage(path: string, code: string): string {
  switch (code) {
    case "ENOENT":
      return `cannot reach luod at ${path}: no such socket (is luod running?)`;
    case "ECONNREFUSED":
      return `cannot reach luod at ${path}: connection refused (luod is not running; stale socket file)`;
    case "EACCES":
    case "EPERM":
      return `cannot reach luod at ${path}: permission denied (needs root or the group of the socket)`;
    case "ENOTSOCK":
      return `cannot reach luod at ${path}: not a socket`;
    case "EAGAIN":
      return `cannot reach luod at ${path}: luod is not accepting connections (backlog full)`;
    default:
      return `cannot reach luod at ${path}: ${code}`;
  }
}

// One request, blocking: connect, send, read until its reply, close. No event loop, so no epoll
// Worker thread to start (about 6 ms of a ~20 ms `luoctl status`, docs/performance.md): for
// luoctl's quick commands. Anything that waits for events (subscriptions, KEXEC) uses LuoClient.
import { MessageIo } from "../kernel/scm-rights";
import { waitFd } from "../kernel/unix";
import { closeFd, closeQuietly } from "../kernel/fd";
import { LineFramer, MAX_FDS_PER_MESSAGE, MAX_REPLY_BYTES, encodeLine } from "../wire/framing";
import { oneLine } from "../wire/errors";
import { isPlainObject, replyProblem } from "../wire/replies";
import { connectWithRetry, DEFAULT_SOCKET } from "./connect";
import { LuoRequests, type Message, type Received, type RequestOptions } from "./requests";
import { LuoConnectionClosed, LuoProtocolError, LuoTimeoutError, replyFailure } from "./errors";
import { Errno } from "../kernel/libc";

const DEFAULT_TIMEOUT_MS = 30_000;

export class OneShotClient extends LuoRequests {
  private closed = false;
  private readonly io = new MessageIo();

  private constructor(private readonly fd: number) {
    super();
  }

  /** Connects to luod. Rejects with LuoConnectError (code = errno name) when that fails. */
  static async connect(path: string = DEFAULT_SOCKET): Promise<OneShotClient> {
    return new OneShotClient(await connectWithRetry(path, 2000));
  }

  async call(obj: Message & { cmd: string }, fds: readonly number[] = [], opts: RequestOptions = {}): Promise<Received> {
    if (this.closed) throw new LuoConnectionClosed("ESHUTDOWN", "the client was closed");
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const until = Date.now() + timeoutMs;
    this.send(encodeLine(fds.length ? { ...obj, fds: fds.length } : obj), fds, until, obj.cmd);
    return this.receiveReply(obj.cmd, until, timeoutMs);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeFd(this.fd);
  }

  /** The fds go with the first sendmsg; a partial send continues without them. */
  private send(data: Uint8Array, fds: readonly number[], until: number, cmd: string): void {
    let off = 0;
    let attach = fds;
    while (off < data.length) {
      const n = this.io.send(this.fd, data.subarray(off), [...attach]);
      if (n === -Errno.EAGAIN) {
        if (!waitFd(this.fd, "write", Math.max(0, until - Date.now()))) throw new LuoTimeoutError(`could not send ${cmd} in time`);
        continue;
      }
      if (n < 0) throw new LuoConnectionClosed("ECONNRESET", `lost the connection to luod (sending ${cmd})`);
      off += n;
      attach = [];
    }
  }

  /**
   * Reads lines until the reply to `cmd`; events on the way are dropped (with their fds). Anything
   * that is not protocol v1 (not JSON, not an object, a reply that is not to `cmd` or has the
   * wrong shape, a line over MAX_REPLY_BYTES, fds no line claims) rejects with LuoProtocolError;
   * every fd received and not returned is closed.
   */
  private receiveReply(cmd: string, until: number, timeoutMs: number): Received {
    const framer = new LineFramer(MAX_REPLY_BYTES);
    try {
      for (;;) {
        let line: string | null;
        while ((line = nextLine(framer)) !== null) {
          if (line.trim() === "") continue;
          const { msg, n } = parseMessage(line);
          const fds = framer.takeFds(n) ?? invalid(`the line says "fds": ${n} but ${framer.queuedFds} fd(s) came with it`);
          // fds still queued when nothing but blank lines follows came with this line's bytes:
          // more fds than it says (framing.ts)
          if (framer.queuedFds > 0 && framer.onlyBlankPending) {
            closeQuietly(fds);
            invalid(`${framer.queuedFds} fd(s) arrived that no line claimed (the line says "fds": ${n})`);
          }
          // protocol v1: a message with `event` and no reply fields is an event, not for us;
          // one with neither is from a newer luod and ignored as well
          if (!("reply" in msg) && (!("ok" in msg) || typeof msg.event === "string")) {
            closeQuietly(fds);
            continue;
          }
          const problem = replyProblem(msg, cmd);
          if (problem !== null) {
            closeQuietly(fds);
            invalid(problem);
          }
          if (msg.ok === true) return { msg, fds };
          closeQuietly(fds);
          throw replyFailure(msg, cmd);
        }
        if (framer.overLimit) invalid(`a line over ${MAX_REPLY_BYTES} bytes`);
        // fds arrive with the first byte of their line: with no partial line pending, queued fds
        // belong to no line; a partial line may own at most MAX_FDS_PER_MESSAGE
        if (framer.queuedFds > (framer.hasPartialLine ? MAX_FDS_PER_MESSAGE : 0)) {
          invalid(`${framer.queuedFds} fd(s) that no line claimed`);
        }
        if (!waitFd(this.fd, "read", Math.max(0, until - Date.now()))) throw new LuoTimeoutError(`luod did not answer ${cmd} within ${formatMs(timeoutMs)}`);
        const fds: number[] = [];
        const n = this.io.receive(this.fd, fds);
        framer.pushFds(fds);
        if (n > 0 && this.io.lastTruncated) invalid("more fds in one message than a reply may carry");
        if (n === -Errno.EAGAIN) continue;
        if (n <= 0) throw new LuoConnectionClosed("ECONNRESET", "lost the connection to luod (it closed before replying)");
        framer.push(this.io.buffer.subarray(0, n));
      }
    } finally {
      closeQuietly(framer.drainFds());
    }
  }
}

/** 15s, 500ms. */
function formatMs(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

function invalid(detail: string): never {
  throw new LuoProtocolError(oneLine(detail, 200));
}

/** The framer's next line; a line that is not UTF-8 is an invalid reply. */
function nextLine(framer: LineFramer): string | null {
  try {
    return framer.nextLine();
  } catch (e) {
    return invalid((e as Error).message);
  }
}

/** A line as a message: a JSON object with a valid `fds` (absent: 0), and that count. */
function parseMessage(line: string): { msg: Message; n: number } {
  let msg: unknown;
  try {
    msg = JSON.parse(line);
  } catch (e) {
    return invalid(`not JSON (${(e as Error).message})`);
  }
  if (!isPlainObject(msg)) return invalid(`expected a JSON object, got ${msg === null ? "null" : Array.isArray(msg) ? "an array" : typeof msg}`);
  const n = msg.fds ?? 0;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 0 || n > MAX_FDS_PER_MESSAGE) {
    return invalid(`"fds" must be an integer from 0 to ${MAX_FDS_PER_MESSAGE}, got ${oneLine(String(JSON.stringify(n)), 40)}`);
  }
  return { msg, n };
}

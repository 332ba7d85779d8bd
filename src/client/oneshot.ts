// One request, blocking: connect, send, read until its reply, close. No event loop, so no epoll
// Worker thread to start (about 6 ms of a ~20 ms `luoctl status`, docs/performance.md): for
// luoctl's quick commands. Anything that waits for events (subscriptions, KEXEC) uses LuoClient.
import { MessageIo } from "../kernel/scm-rights";
import { waitFd } from "../kernel/unix";
import { closeFd, closeQuietly } from "../kernel/fd";
import { LineFramer, MAX_REPLY_BYTES, encodeLine } from "../wire/framing";
import { connectWithRetry, DEFAULT_SOCKET } from "./connect";
import { LuoRequests, type Message, type Received, type RequestOptions } from "./requests";
import { LuoConnectionClosed, LuoTimeoutError, replyFailure } from "./errors";
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
    const until = Date.now() + (opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    this.send(encodeLine(fds.length ? { ...obj, fds: fds.length } : obj), fds, until, obj.cmd);
    return this.receiveReply(obj.cmd, until);
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

  /** Reads lines until the reply to `cmd`; events on the way are dropped (with their fds). */
  private receiveReply(cmd: string, until: number): Received {
    const framer = new LineFramer(MAX_REPLY_BYTES);
    for (;;) {
      let line: string | null;
      while ((line = framer.nextLine()) !== null) {
        if (line.trim() === "") continue;
        const msg = JSON.parse(line) as Message;
        const fds = framer.takeFds(typeof msg.fds === "number" ? msg.fds : 0) ?? [];
        if (msg.reply !== cmd && msg.reply !== null) {
          closeQuietly(fds); // an event, or the reply to something else
          continue;
        }
        if (msg.ok === true) return { msg, fds };
        closeQuietly(fds);
        throw replyFailure(msg, cmd);
      }
      if (!waitFd(this.fd, "read", Math.max(0, until - Date.now()))) throw new LuoTimeoutError(`no reply to ${cmd} in time`);
      const fds: number[] = [];
      const n = this.io.receive(this.fd, fds);
      framer.pushFds(fds);
      if (n === -Errno.EAGAIN) continue;
      if (n <= 0) {
        closeQuietly(framer.drainFds());
        throw new LuoConnectionClosed("ECONNRESET", "lost the connection to luod (it closed before replying)");
      }
      framer.push(this.io.buffer.subarray(0, n));
    }
  }
}

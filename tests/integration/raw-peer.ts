// A deliberately dumb peer for luod's bad-input tests and the protocol fuzzer: writes whatever
// bytes and fds it is told to (no framing rules applied), reads what luod answers, and notices
// when luod closes the connection. Non-blocking; the async helpers poll with short sleeps.
import { readdirSync } from "node:fs";
import { MessageIo } from "../../src/kernel/scm-rights";
import { unixConnect } from "../../src/kernel/unix";
import { closeFd } from "../../src/kernel/fd";
import { Errno } from "../../src/kernel/libc";

const encoder = new TextEncoder();
/** One MessageIo for every RawPeer of this thread (they are used one call at a time). */
let sharedIo: MessageIo | null = null;

export class RawPeer {
  /** Complete lines received and not yet taken. */
  readonly lines: string[] = [];
  /** luod closed its side (EOF or ECONNRESET). */
  eof = false;
  /** fds luod sent us (closed at once; only counted). */
  fdsReceived = 0;
  private partial = "";
  private closed = false;
  private readonly io: MessageIo;
  /** Per peer: a streaming decoder keeps a split UTF-8 sequence until its next read. */
  private readonly decoder = new TextDecoder();

  private constructor(readonly fd: number) {
    this.io = sharedIo ??= new MessageIo({ bufferSize: 1 << 16, maxFds: 64 });
  }

  static connect(path: string): RawPeer {
    return new RawPeer(unixConnect(path, { nonblock: true }));
  }

  /** One sendmsg: returns the bytes sent, or -errno (-EAGAIN when the socket is full). */
  sendOnce(data: Uint8Array | string, fds: readonly number[] = []): number {
    const bytes = typeof data === "string" ? encoder.encode(data) : data;
    return this.io.send(this.fd, bytes, fds);
  }

  /**
   * Sends all of `data` (fds with its first byte), waiting while the socket is full. Resolves
   * false if luod closed the connection (EPIPE/ECONNRESET) or the deadline passed first.
   */
  async sendAll(data: Uint8Array | string, fds: readonly number[] = [], timeoutMs = 5000): Promise<boolean> {
    let bytes = typeof data === "string" ? encoder.encode(data) : data;
    let pending = fds;
    const deadline = Date.now() + timeoutMs;
    while (bytes.length > 0) {
      const n = this.io.send(this.fd, bytes, pending);
      if (n === -Errno.EAGAIN) {
        if (Date.now() > deadline) return false;
        this.pump();
        await Bun.sleep(1);
        continue;
      }
      if (n < 0) return false;
      pending = [];
      bytes = bytes.subarray(n);
    }
    return true;
  }

  /** Reads everything available now. Returns the number of bytes read. */
  pump(): number {
    let total = 0;
    while (!this.eof && !this.closed) {
      const fds: number[] = [];
      const n = this.io.receive(this.fd, fds);
      for (const fd of fds) closeFd(fd);
      this.fdsReceived += fds.length;
      if (n === -Errno.EAGAIN) break;
      if (n <= 0) {
        this.eof = true; // 0: EOF; ECONNRESET and friends: gone as well
        break;
      }
      total += n;
      const text = this.partial + this.decoder.decode(this.io.buffer.subarray(0, n), { stream: true });
      const parts = text.split("\n");
      this.partial = parts.pop()!;
      for (const p of parts) this.lines.push(p);
    }
    return total;
  }

  /** The next reply or event as an object; null when luod closed the connection first or on timeout. */
  async next(timeoutMs = 5000): Promise<Record<string, unknown> | null> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      this.pump();
      const line = this.lines.shift();
      if (line !== undefined) return JSON.parse(line) as Record<string, unknown>;
      if (this.eof || Date.now() > deadline) return null;
      await Bun.sleep(1);
    }
  }

  /** Sends one line (fds with it) and returns the next message luod sends. */
  async request(line: string | object, fds: readonly number[] = [], timeoutMs = 5000): Promise<Record<string, unknown> | null> {
    const text = typeof line === "string" ? line : JSON.stringify(line);
    if (!(await this.sendAll(text + "\n", fds, timeoutMs))) return null;
    return await this.next(timeoutMs);
  }

  /** Resolves true once luod has closed the connection (all output read and dropped). */
  async waitClosed(timeoutMs = 5000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      this.pump();
      if (this.eof) return true;
      if (Date.now() > deadline) return false;
      await Bun.sleep(2);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeFd(this.fd);
  }
}

/** A process's open fd count once it has not changed for 100 ms (closes are processed asynchronously). */
export async function settledFdCount(pid: number): Promise<number> {
  const count = () => readdirSync(`/proc/${pid}/fd`).length;
  let last = count();
  for (let same = 0; same < 5; ) {
    await Bun.sleep(20);
    const n = count();
    same = n === last ? same + 1 : 0;
    last = n;
  }
  return last;
}

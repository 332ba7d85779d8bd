// The output side of a Connection: encoded lines waiting to be written to a non-blocking socket,
// with the fds that travel with them. Never blocks; the Connection decides when to write (on
// EPOLLOUT) and how much may wait (the slow-consumer limit).
//
// Fd ownership: push() sends the caller's fds at once when nothing waits and the socket takes the
// first byte; otherwise it DUPs them, and the dups are closed once the sendmsg that carried them
// succeeded, or by clear(). The caller keeps its own fds either way.
import { MAX_FDS_PER_MESSAGE, encodeLine } from "./framing";
import type { MessageIo } from "../kernel/scm-rights.ts";
import { closeQuietly, dupFd } from "../kernel/fd.ts";
import { Errno } from "../kernel/libc.ts";

/** "done": everything is written; "blocked": some output waits for EPOLLOUT; a number: the errno of a failed sendmsg. */
export type WriteResult = "done" | "blocked" | number;

interface Outgoing {
  data: Uint8Array;
  offset: number;
  /** Dups owned by the queue; emptied once a sendmsg carried them. */
  fds: number[];
}

/**
 * One or more messages as the bytes of one write. Each object must say `fds` (absent = 0); the
 * total must be `fdCount`. Throws RangeError for a bad fds count, ProtocolError EMSGSIZE for a
 * line over `maxLineBytes`.
 */
export function encodeMessages(objs: readonly object[], fdCount: number, maxLineBytes: number): Uint8Array {
  let said = 0;
  for (const o of objs) {
    const n = (o as { fds?: unknown }).fds ?? 0;
    if (typeof n !== "number" || n > MAX_FDS_PER_MESSAGE) throw new RangeError(`at most ${MAX_FDS_PER_MESSAGE} fds per message`);
    said += n;
  }
  if (said !== fdCount) throw new RangeError(`the messages say "fds": ${said} in all but ${fdCount} fds are attached`);
  return objs.length === 1 ? encodeLine(objs[0]!, maxLineBytes) : concat(objs.map((o) => encodeLine(o, maxLineBytes)));
}

export class OutputQueue {
  private readonly items: Outgoing[] = [];
  private bytes = 0;

  constructor(
    private readonly fd: number,
    private readonly io: MessageIo,
  ) {}

  /** Bytes accepted by push() and not yet written to the socket. */
  get queuedBytes(): number {
    return this.bytes;
  }

  get empty(): boolean {
    return this.items.length === 0;
  }

  /**
   * Writes `data` now when nothing waits (the fds go with its first byte), else queues it behind
   * the rest with dups of `fds`. A failed sendmsg queues nothing. Throws SysError when a dup fails
   * (the dups made so far are closed).
   */
  push(data: Uint8Array, fds: readonly number[]): WriteResult {
    if (this.items.length === 0) {
      // the usual case: nothing waits, so send now with the caller's fds (no dup needed)
      const n = this.io.send(this.fd, data, fds);
      if (n === data.length) return "done";
      if (n > 0) {
        // the fds went with the first bytes; the rest waits for EPOLLOUT
        this.items.push({ data, offset: n, fds: [] });
        this.bytes += data.length - n;
        return "blocked";
      }
      if (n !== -Errno.EAGAIN && n !== 0) return -n;
      // the socket is full: queue below
    }
    const dups: number[] = [];
    try {
      for (const fd of fds) dups.push(dupFd(fd));
    } catch (e) {
      closeQuietly(dups);
      throw e;
    }
    this.items.push({ data, offset: 0, fds: dups });
    this.bytes += data.length;
    return "blocked";
  }

  /** Writes what waits until all is written or the socket is full. */
  flush(): WriteResult {
    while (this.items.length > 0) {
      const head = this.items[0]!;
      const n = this.io.send(this.fd, head.data.subarray(head.offset), head.fds);
      if (n === -Errno.EAGAIN || n === 0) return "blocked";
      if (n < 0) return -n;
      if (head.fds.length > 0) closeQuietly(head.fds.splice(0)); // they went with these bytes
      head.offset += n;
      this.bytes -= n;
      if (head.offset >= head.data.length) this.items.shift();
    }
    return "done";
  }

  /** Drops everything unsent and closes the dups it held. */
  clear(): void {
    for (const item of this.items.splice(0)) closeQuietly(item.fds);
    this.bytes = 0;
  }
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  return all;
}

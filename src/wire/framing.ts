// NDJSON framing with fd counts (docs/protocol.md, "Transport"). Pure: no syscalls.
//
// The fd rule (docs/bun.md#unix-sockets-and-scm_rights). On an AF_UNIX stream socket, SCM_RIGHTS fds arrive with the
// recvmsg that reads the FIRST byte of the sendmsg that carried them (a read may glue earlier
// plain bytes in front, and always stops after a segment that carries fds). A sender therefore
// attaches a line's fds to the sendmsg that holds the line's first byte and says how many with
// `"fds": n`. The receiver appends every received fd to one FIFO per connection and, when a
// line is complete, takes `n` from the head. Because lines are taken in order and every fd has
// arrived by the time its line's first byte has, FIFO order matches fds to lines exactly.
//
// Consequences the caller enforces (src/wire/connection.ts does):
// - takeFds(n) returning null (fewer queued than the line claims) means the peer broke the rule;
// - fds still queued when no partial line is pending belong to no line: they are strays, to be
//   closed at once (drainFds) — a later line cannot claim them, its fds come with its own bytes.
import { ProtocolError } from "./errors";

/** A request line (peer → luod) is at most this many bytes, including its newline. */
export const MAX_LINE_BYTES = 65536;
/**
 * A line luod sends is at most this many bytes: LIST and STATUS grow with the number of clients
 * (about 180 bytes each), so luod's replies get a larger limit than requests (about 10 000 clients).
 */
export const MAX_REPLY_BYTES = 2 * 1024 * 1024;
/** A message carries at most this many fds. */
export const MAX_FDS_PER_MESSAGE = 2;

const NEWLINE = 0x0a;
const encoder = new TextEncoder();
/** One for all connections: a fatal decoder without `stream` keeps no state between calls. */
const decoder = new TextDecoder("utf-8", { fatal: true });

/**
 * Splits a byte stream into lines and keeps the fd FIFO of one connection.
 *
 * Usage: push(bytes) and pushFds(fds) after every read, then call nextLine() until it returns null,
 * then check overLimit. Lines are decoded as UTF-8 only once complete, so a character split across
 * reads is fine. A line that is not valid UTF-8 makes nextLine throw ProtocolError EBADMSG after
 * consuming it (call nextLine again for the next one). The returned line has no trailing "\n"
 * (a "\r" before it is kept; JSON.parse ignores it).
 */
export class LineFramer {
  private buf = new Uint8Array(4096);
  private start = 0; // first byte not yet returned
  private end = 0; // end of the buffered bytes
  private scanned = 0; // bytes in [start, scanned) are known to hold no newline
  private tooLong = false;
  private readonly fdQueue: number[] = [];

  constructor(readonly maxLineBytes: number = MAX_LINE_BYTES) {
    if (!Number.isInteger(maxLineBytes) || maxLineBytes < 2) throw new RangeError(`maxLineBytes ${maxLineBytes}`);
  }

  /** Appends received bytes (copied: the caller may reuse its buffer). */
  push(bytes: Uint8Array): void {
    if (bytes.length === 0 || this.tooLong) return; // past the limit nothing more is kept
    this.ensureRoom(bytes.length);
    this.buf.set(bytes, this.end);
    this.end += bytes.length;
  }

  /**
   * The next complete line, or null when none is buffered. Returns null (and sets overLimit) at a
   * line longer than the limit; nothing after it is returned.
   */
  nextLine(): string | null {
    if (this.tooLong) return null;
    const nl = this.buf.subarray(this.scanned, this.end).indexOf(NEWLINE);
    if (nl < 0) {
      this.scanned = this.end;
      if (this.end - this.start >= this.maxLineBytes) this.tooLong = true; // cannot end in time
      return null;
    }
    const lineEnd = this.scanned + nl; // index of the newline
    if (lineEnd + 1 - this.start > this.maxLineBytes) {
      this.tooLong = true;
      return null;
    }
    const bytes = this.buf.subarray(this.start, lineEnd);
    this.start = this.scanned = lineEnd + 1;
    if (this.start === this.end) this.start = this.scanned = this.end = 0;
    try {
      return decoder.decode(bytes);
    } catch {
      throw new ProtocolError("EBADMSG", "line is not valid UTF-8");
    }
  }

  /** True once a line is, or can only become, longer than the limit. The caller replies EMSGSIZE and closes. */
  get overLimit(): boolean {
    if (!this.tooLong && this.end - this.start >= this.maxLineBytes) {
      // Only a partial line counts: complete lines before it are still returned by nextLine.
      const nl = this.buf.subarray(this.scanned, this.end).indexOf(NEWLINE);
      if (nl < 0) {
        this.scanned = this.end;
        this.tooLong = true;
      }
    }
    return this.tooLong;
  }

  /** Bytes received but not yet returned as lines (a partial line, or lines not yet taken). */
  get pendingBytes(): number {
    return this.end - this.start;
  }

  /**
   * Whether everything buffered is blank lines (whitespace ending in a newline), or nothing:
   * fds still queued then belong to no later line.
   */
  get onlyBlankPending(): boolean {
    if (this.end === this.start) return true;
    if (this.buf[this.end - 1] !== NEWLINE) return false;
    for (let i = this.start; i < this.end; i++) {
      const c = this.buf[i];
      if (c !== 0x20 && c !== 0x09 && c !== 0x0d && c !== NEWLINE) return false;
    }
    return true;
  }

  /** Whether bytes not yet returned as lines are buffered: a partial line, or complete lines not yet taken. */
  get hasPartialLine(): boolean {
    return this.end > this.start;
  }

  // -- fd FIFO ----------------------------------------------------------------------------------

  /** Appends fds received with a read (in the order the kernel gave them). */
  pushFds(fds: readonly number[]): void {
    for (const fd of fds) this.fdQueue.push(fd);
  }

  /** Takes `n` fds from the head, or returns null (and takes none) when fewer are queued. */
  takeFds(n: number): number[] | null {
    if (n === 0) return [];
    if (this.fdQueue.length < n) return null;
    return this.fdQueue.splice(0, n);
  }

  /** Removes and returns every queued fd (the caller closes them). */
  drainFds(): number[] {
    return this.fdQueue.splice(0, this.fdQueue.length);
  }

  get queuedFds(): number {
    return this.fdQueue.length;
  }

  private ensureRoom(n: number): void {
    if (this.end + n <= this.buf.length) return;
    const live = this.end - this.start;
    if (this.start > 0 && live + n <= this.buf.length) {
      this.buf.copyWithin(0, this.start, this.end); // compact
    } else {
      let size = this.buf.length * 2;
      while (size < live + n) size *= 2;
      const next = new Uint8Array(size);
      next.set(this.buf.subarray(this.start, this.end));
      this.buf = next;
    }
    this.scanned -= this.start;
    this.end = live;
    this.start = 0;
  }
}

/** JSON + "\n" as UTF-8. Throws ProtocolError EMSGSIZE when the line would exceed the limit. */
export function encodeLine(obj: object, maxLineBytes: number = MAX_LINE_BYTES): Uint8Array {
  const json = JSON.stringify(obj);
  if (typeof json !== "string") throw new ProtocolError("EINVAL", "message is not JSON-serializable");
  const bytes = encoder.encode(json + "\n");
  if (bytes.length > maxLineBytes) {
    throw new ProtocolError("EMSGSIZE", `message of ${bytes.length} bytes is over the ${maxLineBytes}-byte line limit`);
  }
  return bytes;
}

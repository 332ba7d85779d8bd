// A QMP client (QEMU's JSON monitor) over the unix socket luo-qemu gives QEMU. QMP is one JSON
// object per line: a greeting, then `{"execute", "arguments", "id"}` answered by `{"return"}` or
// `{"error": {"class", "desc"}}` with the same id, and `{"event"}` lines at any time.
// QEMU is luo-qemu's own child, but its lines are still bounded and checked before use.
import { createConnection, type Socket } from "node:net";

/** A QMP line longer than this closes the connection (QEMU's own replies are a few KiB). */
const MAX_LINE = 4 * 1024 * 1024;

export class QmpError extends Error {
  constructor(readonly command: string, readonly errorClass: string, desc: string) {
    super(`QMP ${command}: ${desc} (${errorClass})`);
    this.name = "QmpError";
  }
}

export type QmpEvent = { event: string; data?: Record<string, unknown>; timestamp?: unknown };

interface Pending {
  command: string;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

export class Qmp {
  private buf = "";
  private nextId = 1;
  private readonly pending = new Map<string, Pending>();
  private readonly listeners = new Set<(e: QmpEvent) => void>();
  private closeReason: string | null = null;
  private greeted!: (v: unknown) => void;
  private readonly greeting = new Promise((r) => (this.greeted = r));
  /** Resolves with the reason once the connection is closed. */
  readonly closed: Promise<string>;
  private onClosed!: (reason: string) => void;

  private constructor(private readonly sock: Socket) {
    this.closed = new Promise((r) => (this.onClosed = r));
    sock.setEncoding("utf8");
    sock.on("data", (chunk: string) => this.data(chunk));
    sock.on("error", (e) => this.shutdown(`QMP socket error: ${e.message}`));
    sock.on("close", () => this.shutdown("QEMU closed the QMP connection"));
  }

  /**
   * Connects to QEMU's QMP socket (retrying while QEMU has not created it yet, up to timeoutMs, or
   * until `alive()` says QEMU is gone), reads the greeting and leaves capabilities negotiation.
   */
  static async connect(path: string, timeoutMs: number, alive: () => boolean = () => true): Promise<Qmp> {
    const until = Date.now() + timeoutMs;
    for (let delay = 10; ; delay = Math.min(delay * 2, 200)) {
      const sock = await new Promise<Socket | Error>((resolve) => {
        const s = createConnection({ path });
        s.once("connect", () => resolve(s));
        s.once("error", (e) => resolve(e));
      });
      if (!(sock instanceof Error)) {
        const qmp = new Qmp(sock);
        const greeting = await Promise.race([qmp.greeting, qmp.closed.then((r) => new Error(r)), Bun.sleep(Math.max(0, until - Date.now())).then(() => null)]);
        if (greeting instanceof Error || greeting === null) {
          qmp.close();
          throw new Error(`no QMP greeting on ${path}: ${greeting === null ? "timed out" : greeting.message}`);
        }
        await qmp.execute("qmp_capabilities");
        return qmp;
      }
      if (!alive()) throw new Error(`QEMU exited before its QMP socket ${path} accepted a connection`);
      if (Date.now() >= until) throw new Error(`cannot connect to QEMU's QMP socket ${path}: ${sock.message}`);
      await Bun.sleep(delay);
    }
  }

  /** Runs a QMP command; resolves with its `return`, rejects with QmpError or a transport error. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs = 30_000): Promise<T> {
    if (this.closeReason !== null) return Promise.reject(new Error(`QMP ${command}: ${this.closeReason}`));
    const id = `luo-${this.nextId++}`;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`QMP ${command}: no answer from QEMU within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { command, resolve: resolve as (v: unknown) => void, reject, timer });
      this.sock.write(JSON.stringify(args ? { execute: command, arguments: args, id } : { execute: command, id }) + "\n");
    });
  }

  /** Every event QEMU sends from now on. Returns a function that removes the listener. */
  onEvent(cb: (e: QmpEvent) => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  get isClosed(): boolean {
    return this.closeReason !== null;
  }

  close(): void {
    this.shutdown("closed by luo-qemu");
    this.sock.destroy();
  }

  private data(chunk: string): void {
    this.buf += chunk;
    for (let nl = this.buf.indexOf("\n"); nl >= 0; nl = this.buf.indexOf("\n")) {
      const line = this.buf.slice(0, nl).trim();
      this.buf = this.buf.slice(nl + 1);
      if (line !== "") this.line(line);
    }
    if (this.buf.length > MAX_LINE) {
      this.shutdown(`a QMP line over ${MAX_LINE} bytes`);
      this.sock.destroy();
    }
  }

  private line(line: string): void {
    let msg: Record<string, unknown>;
    try {
      const parsed: unknown = JSON.parse(line);
      if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return;
      msg = parsed as Record<string, unknown>;
    } catch {
      return; // not QMP: ignored, as QEMU's own clients do
    }
    if ("QMP" in msg) return this.greeted(msg);
    if (typeof msg.event === "string") {
      const ev: QmpEvent = { event: msg.event, data: typeof msg.data === "object" && msg.data !== null ? (msg.data as Record<string, unknown>) : undefined };
      for (const l of this.listeners) l(ev);
      return;
    }
    const id = typeof msg.id === "string" ? msg.id : null;
    const p = id === null ? undefined : this.pending.get(id);
    if (!p) return;
    this.pending.delete(id!);
    clearTimeout(p.timer);
    if ("return" in msg) p.resolve(msg.return);
    else {
      const err = (typeof msg.error === "object" && msg.error !== null ? msg.error : {}) as Record<string, unknown>;
      p.reject(new QmpError(p.command, String(err.class ?? "GenericError"), String(err.desc ?? "failed")));
    }
  }

  private shutdown(reason: string): void {
    if (this.closeReason !== null) return;
    this.closeReason = reason;
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new Error(`QMP ${p.command}: ${reason}`));
    }
    this.pending.clear();
    this.onClosed(reason);
  }
}

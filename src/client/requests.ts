// The requests every kind of luod connection can make, over one abstract call(): LuoClient
// (event loop: subscriptions, events, KEXEC progress) and OneShotClient (blocking, one request:
// luoctl's quick commands) share them, so a request is built in one place only, checked against
// the protocol's request types. The types both kinds share live here too, so that neither client
// module needs the other.
import { closeQuietly } from "../kernel/fd";
import type { AbortReply, CheckReply, JsonObject, ListReply, LoadReply, StatusReply } from "../wire/replies";
// Types only (erased): the schemas stay unloaded, luoctl's quick commands do not build them.
import type { RequestOf } from "../wire/requests";

export type Message = JsonObject;

export interface Received {
  msg: Message;
  /** File descriptors that came with the message; the receiver owns (and must close) them. */
  fds: number[];
}

export interface RequestOptions {
  /** Reject with LuoTimeoutError when no reply came in time (the late reply is then dropped). */
  timeoutMs?: number;
}

export interface LoadOptions {
  kernelFd: number;
  initrdFd?: number | null;
  cmdline: string;
  force?: boolean;
  sha256?: string;
}

export abstract class LuoRequests {
  /**
   * Sends a request and resolves with its reply and any fds that came with it (yours to close).
   * A reply with `ok: false` rejects with LuoError(error.code, error.message).
   */
  abstract call(obj: Message & { cmd: string }, fds?: readonly number[], opts?: RequestOptions): Promise<Received>;

  abstract close(): void;

  /** Like call(), but resolves with the reply only; fds that came with it are closed. */
  async request(obj: Message & { cmd: string }, fds: readonly number[] = [], opts: RequestOptions = {}): Promise<Message> {
    const r = await this.call(obj, fds, opts);
    closeQuietly(r.fds);
    return r.msg;
  }
  status(opts?: RequestOptions): Promise<StatusReply> {
    return this.request({ cmd: "STATUS" } satisfies RequestOf<"STATUS">, [], opts) as Promise<StatusReply>;
  }

  list(opts?: RequestOptions): Promise<ListReply> {
    return this.request({ cmd: "LIST" } satisfies RequestOf<"LIST">, [], opts) as Promise<ListReply>;
  }

  /** LOAD: luod verifies and loads the kernel (and initrd) from these fds; you keep your fds. */
  load(o: LoadOptions, opts?: RequestOptions): Promise<LoadReply> {
    const fds = [o.kernelFd];
    if (o.initrdFd !== undefined && o.initrdFd !== null) fds.push(o.initrdFd);
    const req: RequestOf<"LOAD"> = { cmd: "LOAD", cmdline: o.cmdline, initrd: fds.length === 2 };
    if (o.force) req.force = true;
    if (o.sha256 !== undefined) req.sha256 = o.sha256;
    return this.request(req, fds, opts) as Promise<LoadReply>;
  }

  unload(opts?: RequestOptions): Promise<Message> {
    return this.request({ cmd: "UNLOAD" } satisfies RequestOf<"UNLOAD">, [], opts);
  }

  /** CHECK: the loaded kernel, or with `image` that image (luod verifies it like a LOAD and never loads it; you keep your fds). */
  check(opts?: RequestOptions, image?: Omit<LoadOptions, "force" | "sha256">): Promise<CheckReply> {
    if (!image) return this.request({ cmd: "CHECK" } satisfies RequestOf<"CHECK">, [], opts) as Promise<CheckReply>;
    const fds = [image.kernelFd];
    if (image.initrdFd !== undefined && image.initrdFd !== null) fds.push(image.initrdFd);
    const req: RequestOf<"CHECK"> = { cmd: "CHECK", kernel: true, initrd: fds.length === 2, cmdline: image.cmdline };
    return this.request(req, fds, opts) as Promise<CheckReply>;
  }

  /** ABORT: the reply says whether an update was running (`aborted`). */
  abort(reason?: string, opts?: RequestOptions): Promise<AbortReply> {
    const req: RequestOf<"ABORT"> = reason === undefined ? { cmd: "ABORT" } : { cmd: "ABORT", reason };
    return this.request(req, [], opts) as Promise<AbortReply>;
  }

  /** DISCARD: free an unclaimed restored session. */
  discard(id: string, opts?: RequestOptions): Promise<Message> {
    return this.request({ cmd: "DISCARD", id } satisfies RequestOf<"DISCARD">, [], opts);
  }
}

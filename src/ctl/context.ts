// What every luoctl command shares: its context (io, --json, the socket, colours), the exit codes,
// one quick request to luod, and printing a reply as text or as JSON.
import type { LuoRequests } from "../client/requests";
import type { CtlIo } from "./io";
import type { Style } from "./format";

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;
export const EXIT_UNREACHABLE = 3;

/** How long luoctl waits for the reply to a quick command (luod answers them at once). */
export const QUICK_REPLY_TIMEOUT_MS = 30_000;

export interface Ctx {
  io: CtlIo;
  json: boolean;
  socket: string;
  style: Style;
}

/** A local failure that is not luod's (a file luoctl cannot open): exit 1. */
export class LocalError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

/** The reply as luoctl prints it with --json: without the transport fields. */
export function stripReply(r: Record<string, unknown>): Record<string, unknown> {
  const { reply: _reply, tag: _tag, fds: _fds, ...rest } = r;
  return rest;
}

export function emit(ctx: Ctx, reply: Record<string, unknown>, human: () => string): void {
  if (ctx.json) ctx.io.stdout(JSON.stringify(stripReply(reply)) + "\n");
  else ctx.io.stdout(human() + "\n");
}

/** A message on one line (stderr lines are "luoctl: ..."). */
export function oneLine(s: string): string {
  return s.replace(/\s*[\r\n]+\s*/g, "; ");
}

/** One quick request: a blocking connection, no event loop (luoctl's startup matters). */
export async function withClient<T>(ctx: Ctx, f: (c: LuoRequests) => Promise<T>): Promise<T> {
  const c = await (ctx.io.connectOnce ? ctx.io.connectOnce(ctx.socket) : ctx.io.connect(ctx.socket));
  try {
    return await f(c);
  } finally {
    c.close();
  }
}

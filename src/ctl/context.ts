// What every luoctl command shares: its context (io, --json, the socket, colours), the exit codes,
// one quick request to luod, and printing a reply as text or as JSON.
import type { LuoRequests } from "../client/requests";
import type { CtlIo } from "./io";
import type { Style } from "./format";
import { escapeControl } from "../wire/escape";

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;
export const EXIT_UNREACHABLE = 3;

/**
 * How long luoctl waits for the reply to a quick command (luod answers them at once) unless
 * --reply-timeout says otherwise: a frozen luod costs 15 s, then exit 3.
 */
export const QUICK_REPLY_TIMEOUT_MS = 15_000;

export interface Ctx {
  io: CtlIo;
  json: boolean;
  socket: string;
  style: Style;
  /** --reply-timeout: how long to wait for luod's reply (each command has its default). */
  replyTimeoutMs?: number;
}

/** The reply timeout of a command: --reply-timeout, else the command's default. */
export function replyTimeout(ctx: Ctx, defaultMs: number): number {
  return ctx.replyTimeoutMs ?? defaultMs;
}

/** A local failure that is not luod's (a file luoctl cannot open): exit 1. */
export class LocalError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

/**
 * The version of luoctl's --json documents, in every one as `json_version`: within it, fields
 * are only added; a removal or a change of meaning makes it 2 (docs/protocol.md#compatibility).
 */
export const JSON_VERSION = 1;

/** One --json document (a line of stdout, without the newline): `doc` and its `json_version`. */
export function jsonDoc(doc: Record<string, unknown>): string {
  return jsonText({ ...doc, json_version: JSON_VERSION });
}

/** The reply as luoctl prints it with --json: without the transport fields. */
export function stripReply(r: Record<string, unknown>): Record<string, unknown> {
  const { reply: _reply, tag: _tag, fds: _fds, ...rest } = r;
  return rest;
}

export function emit(ctx: Ctx, reply: Record<string, unknown>, human: () => string): void {
  if (ctx.json) ctx.io.stdout(jsonDoc(stripReply(reply)) + "\n");
  else ctx.io.stdout(human() + "\n");
}

/**
 * JSON for luoctl's stdout: JSON.stringify escapes C0 controls but leaves DEL, C1 (U+009B is
 * CSI on some terminals) and U+2028/U+2029 raw; they become \u escapes too (the same JSON).
 */
export function jsonText(x: unknown): string {
  return JSON.stringify(x).replace(/[\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

/** A message on one line (stderr lines are "luoctl: ..."), control characters escaped. */
export function oneLine(s: string): string {
  return escapeControl(s.replace(/\s*[\r\n]+\s*/g, "; "));
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

// Protocol v1 replies (docs/protocol.md): the envelope every reply has and its builders, the
// fields of each command's reply, and what a reply echoes of its request. luod builds them, the
// client library reads them: both take the shapes from here. Pure, and no valibot (the client
// library and luoctl load this module; only requests.ts builds schemas).
import { type ErrorCode, oneLine } from "./errors";

/** A JSON object as it travels on the wire. */
export type JsonObject = Record<string, unknown>;

/** A request's `tag`, echoed in its reply. */
export type Tag = string | number;

export interface ReplyOk {
  reply: string;
  ok: true;
  tag?: Tag;
  [field: string]: unknown;
}

export interface ReplyError {
  /** The request's `cmd`; null when the line had none that could be read. */
  reply: string | null;
  ok: false;
  error: { code: ErrorCode; message: string };
  tag?: Tag;
}

export type Reply = ReplyOk | ReplyError;

const RESERVED_REPLY_FIELDS = new Set(["reply", "ok", "error", "tag"]);

/** `{"reply":cmd,"ok":true,...fields,"tag"?}`. Fields named reply/ok/error/tag are ignored. */
export function okReply(cmd: string, fields?: JsonObject, tag?: Tag): ReplyOk {
  const out: ReplyOk = { reply: cmd, ok: true };
  if (fields) {
    for (const [k, value] of Object.entries(fields)) if (!RESERVED_REPLY_FIELDS.has(k)) out[k] = value;
  }
  if (tag !== undefined) out.tag = tag;
  return out;
}

/** `{"reply":cmd|null,"ok":false,"error":{code,message},"tag"?}`; the message is made one line. */
export function errorReply(cmd: string | undefined | null, code: ErrorCode, message: string, tag?: Tag): ReplyError {
  const out: ReplyError = { reply: cmd ?? null, ok: false, error: { code, message: oneLine(message) } };
  if (tag !== undefined) out.tag = tag;
  return out;
}

/** A message from luod is a reply when it has `reply` and a boolean `ok` (else an event). */
export function isReply(msg: JsonObject): msg is JsonObject & Reply {
  return "reply" in msg && typeof msg.ok === "boolean";
}

// ---------------------------------------------------------------------------------------------
// What a reply echoes of its request

/** Longest `cmd` string echoed back in an error reply (anything longer is not echoed). */
export const ECHO_CMD_MAX_LENGTH = 32;
/** Longest string `tag` a request may carry (so the longest echoed). */
export const TAG_MAX_LENGTH = 64;

export function isPlainObject(x: unknown): x is JsonObject {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

/** `cmd` and `tag` of a message, when they have the types a reply can echo. */
export function echoOf(msg: JsonObject): { cmd?: string; tag?: Tag } {
  const echo: { cmd?: string; tag?: Tag } = {};
  if (typeof msg.cmd === "string" && msg.cmd.length <= ECHO_CMD_MAX_LENGTH) echo.cmd = msg.cmd;
  const tag = msg.tag;
  if ((typeof tag === "string" && tag.length <= TAG_MAX_LENGTH) || (typeof tag === "number" && Number.isSafeInteger(tag))) echo.tag = tag;
  return echo;
}

// ---------------------------------------------------------------------------------------------
// The fields of each command's reply, as luod sends them. Readers must tolerate more fields
// (protocol v1 lets luod add some), hence the index signatures.

/** SUBSCRIBE: `restored` says a session of this id awaits CLAIM. */
export interface SubscribeReply extends JsonObject {
  id: string;
  restored: boolean;
}

/** PREPARE: the session fd comes with the reply (`fds: 1`). */
export interface PrepareReply extends JsonObject {
  id: string;
  session: string;
  fds: 1;
}

/** One subscribed client (LIST). */
export interface ClientInfo extends JsonObject {
  id: string;
  uid: number;
  gid: number;
  pid: number;
  unit?: string | null;
  /** subscribed | prepared | preserving | ready */
  state: string;
  connected?: boolean;
  /** ISO 8601: when it subscribed. */
  since: string;
  /** The session name during an update. */
  session?: string | null;
}

/** One session restored after a live update (STATUS). */
export interface RestoredInfo extends JsonObject {
  id: string;
  session: string;
  /** unclaimed | claimed | finished | discarded */
  state: string;
  uid?: number;
  unit?: string | null;
  age_s?: number;
}

/** The update in progress (STATUS). */
export interface UpdateInfo extends JsonObject {
  attempt: number;
  dry_run?: boolean;
  ready: number;
  total: number;
  waiting: string[];
  remaining_ms: number;
}

export interface StatusReply extends JsonObject {
  phase: string;
  update: UpdateInfo | null;
  clients: { subscribed: number; ready: number } & JsonObject;
  kernel: ({ loaded: boolean; version?: string; sha256?: string; cmdline?: string; loaded_at?: string } & JsonObject) | null;
  restored: RestoredInfo[];
}

export interface ListReply extends JsonObject {
  clients: ClientInfo[];
}

export interface LoadReply extends JsonObject {
  kernel: { version: string; size: number; sha256: string } & JsonObject;
  initrd: ({ size: number } & JsonObject) | null;
  /** The command line as loaded (normalized by luod). */
  cmdline: string;
}

export interface CheckReply extends JsonObject {
  ready: boolean;
  checks: ({ name: string; ok: boolean; detail: string } & JsonObject)[];
}

export interface AbortReply extends JsonObject {
  /** Whether an update was running. */
  aborted: boolean;
}

export interface EvictReply extends JsonObject {
  id: string;
  /** The client had a connection, which luod closed. */
  disconnected: boolean;
  /** The update it took part in was aborted (null: none was running). */
  aborted_update: number | null;
  /** Its PREPAREd session, released (null: it had none): its memory is not carried across the next update. */
  released_session: string | null;
}

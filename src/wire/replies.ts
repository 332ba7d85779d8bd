// Protocol v1 replies (docs/protocol.md): the envelope every reply has and its builders, the
// fields of each command's reply, and what a reply echoes of its request. luod builds them, the
// client library reads them: both take the shapes from here. Pure, and no valibot (the client
// library and luoctl load this module; only requests.ts builds schemas).
import { type ErrorCode, oneLine } from "./errors";

/**
 * The protocol's version (docs/protocol.md#compatibility): within it, fields and events are only
 * added. luod says it in STATUS (`luod.protocol`); a change of meaning would make it 2.
 */
export const PROTOCOL_VERSION = 1;

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

/**
 * The update that brought this boot (STATUS's `previous_update`), as the previous kernel's luod
 * recorded it. `createdAt` is the deprecated spelling of `created_at`, still sent within protocol 1
 * (docs/protocol.md#compatibility): readers take either.
 */
export interface PreviousUpdateInfo extends JsonObject {
  attempt: number;
  /** ISO 8601: when the previous luod committed the update (wrote its manifest). */
  created_at: string;
  /** @deprecated the same as created_at. */
  createdAt: string;
  /** The kernel release it came from. */
  from: string;
  timings: Record<string, number>;
}

/** When the previous update was committed, from either spelling of STATUS's `previous_update`; null when unknown. */
export function previousUpdateCreatedAt(p: unknown): string | null {
  if (!isPlainObject(p)) return null;
  const at = p.created_at ?? p.createdAt;
  return typeof at === "string" ? at : null;
}

export interface StatusReply extends JsonObject {
  phase: string;
  update: UpdateInfo | null;
  clients: { subscribed: number; ready: number } & JsonObject;
  kernel: ({ loaded: boolean; version?: string; sha256?: string; cmdline?: string; loaded_at?: string; abi?: AbiStrings | null } & JsonObject) | null;
  restored: RestoredInfo[];
  previous_update?: PreviousUpdateInfo | null;
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

/** The three LUO handover ABI strings (null: unknown, or absent from that kernel). */
export interface AbiStrings extends JsonObject {
  luo: string | null;
  memfd: string | null;
  kho: string | null;
}

export interface CheckReply extends JsonObject {
  ready: boolean;
  checks: ({ name: string; ok: boolean; detail: string; warning?: boolean } & JsonObject)[];
  /** The running kernel's ABI (with where each string came from) and the checked kernel's. */
  abi?: { running: (AbiStrings & { sources: Record<string, string> }) | null; next: AbiStrings | null } & JsonObject;
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

// ---------------------------------------------------------------------------------------------
// Checking a reply as a client receives it (the client library and luoctl): whatever answers on
// the socket may be broken or hostile. A plain predicate, not a schema: the client library and
// luoctl's quick commands do not load valibot.

/** The fds an ok reply carries (`fds`): the session fd of PREPARE and CLAIM; none otherwise. */
const REPLY_FDS: Readonly<Record<string, number>> = { PREPARE: 1, CLAIM: 1 };

/** Longest error code a reply may carry (an errno name: EPERM, ECANCELED…). */
const MAX_ERROR_CODE_LENGTH = 32;

/**
 * Why `msg` is not a valid reply to the request `cmd` (sent with `tag`), or null when it is one:
 * the envelope (`reply` is `cmd`, or null on an error to a line luod could not read; `ok` a
 * boolean; `error` {code, message} strings when not ok; `tag` echoed exactly; `fds` as many as
 * the reply carries: 1 for PREPARE and CLAIM, else none), then the types of the fields of each
 * command's ok reply that readers use (see the interfaces above). A field that is absent is
 * fine (readers show "-"; protocol v1 lets luod add fields and an older luod lacks some), with
 * one exception: KEXEC's ok reply must say `dry_run: true`, the only KEXEC that luod answers
 * with ok (a real update succeeds with REBOOTING), so that no broken reply reads as success.
 */
export function replyProblem(msg: unknown, cmd: string, tag?: Tag): string | null {
  if (!isPlainObject(msg)) return `expected a JSON object, got ${typeName(msg)}`;
  if (typeof msg.ok !== "boolean") return `"ok" must be true or false, got ${shown(msg.ok)}`;
  if (msg.ok ? msg.reply !== cmd : msg.reply !== cmd && msg.reply !== null) {
    return `"reply" must be ${JSON.stringify(cmd)}, got ${shown(msg.reply)}`;
  }
  if (msg.tag !== tag) return `"tag" must be ${tag === undefined ? "absent" : JSON.stringify(tag)}, got ${shown(msg.tag)}`;
  const fds = msg.ok ? (REPLY_FDS[cmd] ?? 0) : 0;
  if ((msg.fds ?? 0) !== fds) return `"fds" must be ${fds} in ${msg.ok ? "an ok" : "an error"} reply to ${cmd}, got ${shown(msg.fds)}`;
  if (!msg.ok) {
    const e = msg.error;
    if (!isPlainObject(e)) return `an error reply needs "error": {"code","message"}, got ${shown(e)}`;
    if (typeof e.code !== "string" || !/^[A-Z][A-Z0-9_]*$/.test(e.code) || e.code.length > MAX_ERROR_CODE_LENGTH) {
      return `"error.code" must be an error name such as "EPERM", got ${shown(e.code)}`;
    }
    if (typeof e.message !== "string") return `"error.message" must be a string, got ${shown(e.message)}`;
    return null;
  }
  return fieldsProblem(cmd, msg);
}

type Check = (m: JsonObject) => string | null;

const isString = (x: unknown) => typeof x === "string";
const isBool = (x: unknown) => typeof x === "boolean";
const isOptObject = (x: unknown) => x === undefined || x === null || isPlainObject(x);

/** `m[field]` is absent or passes `ok`. */
function need(m: JsonObject, field: string, ok: (x: unknown) => boolean, what: string): string | null {
  return m[field] === undefined || ok(m[field]) ? null : `"${field}" must be ${what}, got ${shown(m[field])}`;
}

/** `m[field]` is absent or an array of objects whose fields `keys` are strings. */
function needList(m: JsonObject, field: string, keys: string[]): string | null {
  const list = m[field];
  if (list === undefined) return null;
  if (!Array.isArray(list)) return `"${field}" must be an array, got ${shown(list)}`;
  for (const [i, item] of list.entries()) {
    if (!isPlainObject(item)) return `"${field}[${i}]" must be an object, got ${shown(item)}`;
    for (const k of keys) if (typeof item[k] !== "string") return `"${field}[${i}].${k}" must be a string, got ${shown(item[k])}`;
  }
  return null;
}

const first = (...checks: (() => string | null)[]): string | null => {
  for (const c of checks) {
    const p = c();
    if (p !== null) return p;
  }
  return null;
};

const FIELD_CHECKS: Readonly<Record<string, Check>> = {
  SUBSCRIBE: (m) => first(() => need(m, "id", isString, "a string"), () => need(m, "restored", isBool, "true or false")),
  PREPARE: (m) => first(() => need(m, "id", isString, "a string"), () => need(m, "session", isString, "a string")),
  CLAIM: (m) => need(m, "session", isString, "a string"),
  STATUS: (m) =>
    first(
      () => need(m, "phase", isString, "a string"),
      () => need(m, "clients", isPlainObject, "an object"),
      () => need(m, "update", isOptObject, "an object or null"),
      () => need(m, "kernel", isOptObject, "an object or null"),
      () => needList(m, "restored", ["id", "state"]),
    ),
  LIST: (m) => needList(m, "clients", ["id", "state"]),
  LOAD: (m) =>
    first(
      () => need(m, "kernel", isPlainObject, "an object"),
      () => need(m, "initrd", isOptObject, "an object or null"),
      () => need(m, "cmdline", isString, "a string"),
      () => need(m, "warnings", (w) => w === undefined || (Array.isArray(w) && w.every(isString)), "an array of strings"),
    ),
  CHECK: (m) =>
    first(
      () => need(m, "ready", isBool, "true or false"),
      () => need(m, "checks", (c) => Array.isArray(c) && c.every((x) => isPlainObject(x) && isString(x.name) && isBool(x.ok)), "an array of {name, ok, detail}"),
    ),
  ABORT: (m) => need(m, "aborted", isBool, "true or false"),
  // luod answers KEXEC with ok only for a dry run; a real update succeeds with REBOOTING instead
  KEXEC: (m) =>
    first(
      () => (m.dry_run === true ? null : `"dry_run" must be true (only a dry run ends in an ok reply), got ${shown(m.dry_run)}`),
      () => need(m, "timings", (t) => t === undefined || isPlainObject(t), "an object"),
    ),
};

function fieldsProblem(cmd: string, msg: JsonObject): string | null {
  return FIELD_CHECKS[cmd]?.(msg) ?? null;
}

function typeName(x: unknown): string {
  return x === null ? "null" : Array.isArray(x) ? "an array" : typeof x;
}

/** A received value for a message: JSON, cut short (the caller escapes it for a terminal). */
function shown(x: unknown): string {
  if (x === undefined) return "nothing";
  const text = JSON.stringify(x) ?? String(x);
  return text.length > 40 ? `${text.slice(0, 40)}…` : text;
}

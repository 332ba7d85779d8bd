// Protocol v1 messages (docs/protocol.md): request schemas, request parsing with error codes,
// reply/event shapes and builders. Pure: no I/O, no daemon logic.
import * as v from "valibot";
import { type ErrorCode, ProtocolError, oneLine } from "./errors";
import { isValidId } from "./ids";
import { MAX_FDS_PER_MESSAGE } from "./framing";
import { KEXEC_TIMEOUT_DEFAULT_MS, KEXEC_TIMEOUT_MAX_MS, KEXEC_TIMEOUT_MIN_MS } from "./limits";

// ---------------------------------------------------------------------------------------------
// Field schemas

/** `tag`: a string of at most 64 characters or a safe integer; echoed in the reply. */
export const TAG_MAX_LENGTH = 64;
/** Free-text reasons (FAIL, ABORT) are at most this many characters. */
export const REASON_MAX_LENGTH = 256;
export { KEXEC_TIMEOUT_DEFAULT_MS, KEXEC_TIMEOUT_MAX_MS, KEXEC_TIMEOUT_MIN_MS };

const Tag = v.union([
  v.pipe(v.string(), v.maxLength(TAG_MAX_LENGTH, `must be at most ${TAG_MAX_LENGTH} characters`)),
  v.pipe(v.number(), v.safeInteger("must be an integer")),
]);
const Fds = v.pipe(
  v.number(),
  v.integer("must be an integer"),
  v.minValue(0, "must be 0 or more"),
  v.maxValue(MAX_FDS_PER_MESSAGE, `must be at most ${MAX_FDS_PER_MESSAGE}`),
);
// The id is typed here (a string) and checked by parseRequest (a bad id is EINVAL, not EBADMSG).
const Id = v.string();
const Reason = v.pipe(v.string(), v.maxLength(REASON_MAX_LENGTH, `must be at most ${REASON_MAX_LENGTH} characters`));
const Sha256 = v.pipe(
  v.string(),
  v.regex(/^[0-9a-fA-F]{64}$/, "must be 64 hex digits"),
  v.toLowerCase(),
);
const TimeoutMs = v.pipe(
  v.number(),
  v.integer("must be an integer"),
  v.minValue(KEXEC_TIMEOUT_MIN_MS, `must be at least ${KEXEC_TIMEOUT_MIN_MS}`),
  v.maxValue(KEXEC_TIMEOUT_MAX_MS, `must be at most ${KEXEC_TIMEOUT_MAX_MS}`),
);

/** Fields every request may carry. */
const common = { tag: v.optional(Tag), fds: v.optional(Fds) };

// ---------------------------------------------------------------------------------------------
// Request schemas (strict: an unknown field is an error)

export const SubscribeRequest = v.strictObject({ cmd: v.literal("SUBSCRIBE"), id: Id, ...common });
export const PrepareRequest = v.strictObject({ cmd: v.literal("PREPARE"), id: v.optional(Id), ...common });
export const ReadyRequest = v.strictObject({ cmd: v.literal("READY"), id: v.optional(Id), ...common });
export const FailRequest = v.strictObject({ cmd: v.literal("FAIL"), reason: v.optional(Reason), ...common });
export const UnsubscribeRequest = v.strictObject({ cmd: v.literal("UNSUBSCRIBE"), ...common });
export const ClaimRequest = v.strictObject({ cmd: v.literal("CLAIM"), id: Id, ...common });
export const FinishedRequest = v.strictObject({ cmd: v.literal("FINISHED"), id: Id, ...common });

export const StatusRequest = v.strictObject({ cmd: v.literal("STATUS"), ...common });
export const ListRequest = v.strictObject({ cmd: v.literal("LIST"), ...common });
export const LoadRequest = v.strictObject({
  cmd: v.literal("LOAD"),
  cmdline: v.string(),
  initrd: v.boolean(),
  force: v.optional(v.boolean()),
  sha256: v.optional(Sha256),
  ...common,
});
export const UnloadRequest = v.strictObject({ cmd: v.literal("UNLOAD"), ...common });
export const CheckRequest = v.strictObject({ cmd: v.literal("CHECK"), ...common });
export const KexecRequest = v.strictObject({
  cmd: v.literal("KEXEC"),
  timeout_ms: v.optional(TimeoutMs),
  dry_run: v.optional(v.boolean()),
  ...common,
});
export const AbortRequest = v.strictObject({ cmd: v.literal("ABORT"), reason: v.optional(Reason), ...common });
export const DiscardRequest = v.strictObject({ cmd: v.literal("DISCARD"), id: Id, ...common });

export type SubscribeRequest = v.InferOutput<typeof SubscribeRequest>;
export type PrepareRequest = v.InferOutput<typeof PrepareRequest>;
export type ReadyRequest = v.InferOutput<typeof ReadyRequest>;
export type FailRequest = v.InferOutput<typeof FailRequest>;
export type UnsubscribeRequest = v.InferOutput<typeof UnsubscribeRequest>;
export type ClaimRequest = v.InferOutput<typeof ClaimRequest>;
export type FinishedRequest = v.InferOutput<typeof FinishedRequest>;
export type StatusRequest = v.InferOutput<typeof StatusRequest>;
export type ListRequest = v.InferOutput<typeof ListRequest>;
export type LoadRequest = v.InferOutput<typeof LoadRequest>;
export type UnloadRequest = v.InferOutput<typeof UnloadRequest>;
export type CheckRequest = v.InferOutput<typeof CheckRequest>;
export type KexecRequest = v.InferOutput<typeof KexecRequest>;
export type AbortRequest = v.InferOutput<typeof AbortRequest>;
export type DiscardRequest = v.InferOutput<typeof DiscardRequest>;

const SCHEMAS = {
  SUBSCRIBE: SubscribeRequest,
  PREPARE: PrepareRequest,
  READY: ReadyRequest,
  FAIL: FailRequest,
  UNSUBSCRIBE: UnsubscribeRequest,
  CLAIM: ClaimRequest,
  FINISHED: FinishedRequest,
  STATUS: StatusRequest,
  LIST: ListRequest,
  LOAD: LoadRequest,
  UNLOAD: UnloadRequest,
  CHECK: CheckRequest,
  KEXEC: KexecRequest,
  ABORT: AbortRequest,
  DISCARD: DiscardRequest,
} as const;

/** Every request, discriminated by `cmd`. */
export const Request = v.variant("cmd", [
  SubscribeRequest, PrepareRequest, ReadyRequest, FailRequest, UnsubscribeRequest, ClaimRequest, FinishedRequest,
  StatusRequest, ListRequest, LoadRequest, UnloadRequest, CheckRequest, KexecRequest, AbortRequest,
  DiscardRequest,
]);
export type Request = v.InferOutput<typeof Request>;
export type Command = Request["cmd"];
/** The request type of one command: `RequestOf<"LOAD">` is `LoadRequest`. */
export type RequestOf<C extends Command> = Extract<Request, { cmd: C }>;

export const CLIENT_COMMANDS: ReadonlySet<Command> = new Set<Command>([
  "SUBSCRIBE", "PREPARE", "READY", "FAIL", "UNSUBSCRIBE", "CLAIM", "FINISHED",
]);
export const ADMIN_COMMANDS: ReadonlySet<Command> = new Set<Command>([
  "STATUS", "LIST", "LOAD", "UNLOAD", "CHECK", "KEXEC", "ABORT", "DISCARD",
]);
export const COMMANDS: readonly Command[] = Object.keys(SCHEMAS) as Command[];

export function isCommand(s: unknown): s is Command {
  return typeof s === "string" && Object.hasOwn(SCHEMAS, s);
}

/** How many fds a request carries: LOAD the kernel (+ the initrd), every other request none. */
export function expectedFds(request: Request): number {
  return request.cmd === "LOAD" ? 1 + (request.initrd ? 1 : 0) : 0;
}

// ---------------------------------------------------------------------------------------------
// Parsing

export type ParseResult =
  | { ok: true; request: Request }
  | { ok: false; code: ErrorCode; message: string; cmd?: string; tag?: string | number };

/** Longest `cmd` string echoed back in an error reply (anything longer is not echoed). */
const ECHO_CMD_MAX = 32;

/**
 * Parses and validates one request: a line (without or with its trailing newline) or an object the
 * connection already parsed. Never throws. Failure codes:
 * - EBADMSG: invalid JSON, not an object, a field of the wrong type, a missing or unknown field,
 *   a bad `fds` value or an `fds` that does not match the request (LOAD: 1 + initrd);
 * - EOPNOTSUPP: `cmd` missing or not a command of protocol v1;
 * - EINVAL: a field of the right type with a bad value (id, tag length, timeout range, sha256, …).
 * `cmd` and `tag` are filled in whenever they could be read, so the error reply can echo them.
 */
export function parseRequest(input: string | Record<string, unknown>): ParseResult {
  let obj: unknown = input;
  if (typeof input === "string") {
    try {
      obj = JSON.parse(input);
    } catch (e) {
      return { ok: false, code: "EBADMSG", message: `invalid JSON: ${oneLine(errorText(e), 200)}` };
    }
  }
  if (!isPlainObject(obj)) {
    return { ok: false, code: "EBADMSG", message: `a request must be a JSON object, got ${describe(obj)}` };
  }
  const echo: { cmd?: string; tag?: string | number } = {};
  if (obj.tag !== undefined && v.is(Tag, obj.tag)) echo.tag = obj.tag as string | number; // no tag: skip the union (its failed branches cost more than the rest)
  const cmd = obj.cmd;
  if (typeof cmd === "string" && cmd.length <= ECHO_CMD_MAX) echo.cmd = cmd;

  if (cmd === undefined) return { ok: false, code: "EOPNOTSUPP", message: 'missing "cmd"', ...echo };
  if (typeof cmd !== "string") {
    return { ok: false, code: "EBADMSG", message: `"cmd" must be a string, got ${describe(cmd)}`, ...echo };
  }
  if (!isCommand(cmd)) {
    const hint = isCommand(cmd.toUpperCase()) ? ` (commands are upper case: ${cmd.toUpperCase()})` : "";
    return { ok: false, code: "EOPNOTSUPP", message: `unknown cmd ${JSON.stringify(cmd.slice(0, ECHO_CMD_MAX))}${hint}`, ...echo };
  }

  const result = v.safeParse(SCHEMAS[cmd] as v.GenericSchema<unknown, Request>, obj);
  if (!result.success) {
    const { code, message } = describeIssues(result.issues);
    return { ok: false, code, message: `${cmd}: ${message}`, ...echo };
  }
  const request = result.output;

  // Values of the right type that are still wrong.
  const id: string | undefined = "id" in request ? request.id : undefined;
  if (id !== undefined && !isValidId(id)) {
    return {
      ok: false, code: "EINVAL", ...echo,
      message: `${cmd}: invalid id ${JSON.stringify((id as string).slice(0, 64))}: 1-48 bytes of [A-Za-z0-9._@:-]`,
    };
  }
  const want = expectedFds(request);
  const said = request.fds ?? 0;
  if (said !== want) {
    const why = request.cmd === "LOAD" ? `LOAD with "initrd":${request.initrd} carries ${want}` : `${cmd} carries ${want}`;
    return { ok: false, code: "EBADMSG", ...echo, message: `${why} fds, but "fds" is ${said}` };
  }
  return { ok: true, request };
}

type Issue = v.BaseIssue<unknown>;

/** One line for a list of valibot issues, and the code: EBADMSG for shape errors, EINVAL for values. */
function describeIssues(issues: readonly Issue[]): { code: ErrorCode; message: string } {
  let code: ErrorCode = "EINVAL";
  const parts: string[] = [];
  for (const issue of flattenIssues(issues)) {
    const path = v.getDotPath(issue) ?? "";
    const field = path ? `"${path}"` : "request";
    // fds is a framing field: any problem with it is EBADMSG (docs/protocol.md, Error codes).
    if (issue.kind === "schema" || path === "fds") code = "EBADMSG";
    if (issue.type === "strict_object" && issue.expected === "never") {
      parts.push(`unknown field ${field}`);
    } else if (issue.kind === "schema" && issue.received === "undefined") {
      parts.push(`missing field ${field}`);
    } else if (issue.kind === "schema") {
      parts.push(`${field} must be ${issue.expected}, got ${issue.received}`);
    } else {
      parts.push(`${field} ${issue.message}`);
    }
  }
  return { code, message: oneLine([...new Set(parts)].join("; "), 400) };
}

/** Union issues (tag) carry the real ones as sub-issues; report those of the closest branch. */
function flattenIssues(issues: readonly Issue[]): Issue[] {
  const out: Issue[] = [];
  for (const issue of issues) {
    if (issue.type === "union" && issue.issues?.length) {
      // A validation issue means the type matched one branch: that branch's message is the useful one.
      const validation = issue.issues.filter((i) => i.kind === "validation");
      out.push(...(validation.length ? validation : [issue]));
    } else {
      out.push(issue);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Replies and events (luod → peers)

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

export interface PreservationRequestEvent {
  event: "PRESERVATION_REQUEST";
  /** The update attempt number of this boot. */
  update: number;
  timeout_ms: number;
  /** ISO 8601: READY is due before this moment. */
  deadline: string;
}

export interface StartPreservationEvent {
  event: "START_PRESERVATION";
  id: string;
  update: number;
  /** The session name, `luod:<id>/<attempt>`. */
  session: string;
  /** The session fd travels with this line; absent when the session was PREPAREd (the client has it). */
  fds?: 1;
  /** The session is the one PREPARE handed out; no fd comes with this line. */
  prepared?: true;
}

export interface AbortedEvent {
  event: "ABORTED";
  update: number;
  reason: string;
}

/** The successful reply to CLAIM; also an event because the seed protocol names it so. */
export interface ClaimedEvent {
  event: "CLAIMED";
  reply: "CLAIM";
  ok: true;
  id: string;
  session: string;
  fds: 1;
  tag?: Tag;
}

export interface ProgressEvent {
  event: "PROGRESS";
  phase: string;
  ready: number;
  total: number;
  waiting: string[];
  remaining_ms: number;
}

export interface RebootingEvent {
  event: "REBOOTING";
  update: number;
  timings: Record<string, number>;
}

export type Event =
  | PreservationRequestEvent
  | StartPreservationEvent
  | AbortedEvent
  | ClaimedEvent
  | ProgressEvent
  | RebootingEvent;
export type EventName = Event["event"];

const RESERVED_REPLY_FIELDS = new Set(["reply", "ok", "error", "tag"]);

/** `{"reply":cmd,"ok":true,...fields,"tag"?}`. Fields named reply/ok/error/tag are ignored. */
export function okReply(cmd: string, fields?: Record<string, unknown>, tag?: Tag): ReplyOk {
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

/** The error reply for a failed parseRequest. */
export function parseErrorReply(failure: { code: ErrorCode; message: string; cmd?: string; tag?: Tag }): ReplyError {
  return errorReply(failure.cmd, failure.code, failure.message, failure.tag);
}

/** The error reply for anything thrown while serving `cmd` (ProtocolError keeps its code). */
export function errorReplyFrom(cmd: string | undefined, err: unknown, tag?: Tag, fallback: ErrorCode = "EIO"): ReplyError {
  const code = err instanceof ProtocolError ? err.code : errnoCodeOf(err) ?? fallback;
  return errorReply(cmd, code, errorText(err), tag);
}

/** The CLAIMED event that answers a successful CLAIM; send it with the session fd. */
export function claimedReply(id: string, session: string, tag?: Tag): ClaimedEvent {
  const out: ClaimedEvent = { event: "CLAIMED", reply: "CLAIM", ok: true, id, session, fds: 1 };
  if (tag !== undefined) out.tag = tag;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Client side

/** Parses one line from luod: a JSON object, or ProtocolError EBADMSG. Nothing else is checked. */
export function parseIncoming(line: string): Record<string, unknown> {
  let obj: unknown;
  try {
    obj = JSON.parse(line);
  } catch (e) {
    throw new ProtocolError("EBADMSG", `invalid JSON from peer: ${oneLine(errorText(e), 200)}`);
  }
  if (!isPlainObject(obj)) throw new ProtocolError("EBADMSG", `a message must be a JSON object, got ${describe(obj)}`);
  return obj;
}

export function isReply(msg: Record<string, unknown>): msg is Record<string, unknown> & Reply {
  return "reply" in msg && typeof msg.ok === "boolean";
}

export function isEvent(msg: Record<string, unknown>): msg is Record<string, unknown> & { event: string } {
  return typeof msg.event === "string";
}

/** The ProtocolError a failed reply stands for (for clients that want to throw it). */
export function replyError(msg: ReplyError): ProtocolError {
  return new ProtocolError(msg.error.code, msg.error.message);
}

// ---------------------------------------------------------------------------------------------
// Helpers

export function isPlainObject(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

function describe(x: unknown): string {
  if (x === null) return "null";
  if (Array.isArray(x)) return "an array";
  return typeof x === "string" ? "a string" : `a ${typeof x}`;
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** The errno name of a kernel-layer error (SysError-like: a string `code` or `errnoName`). */
function errnoCodeOf(e: unknown): ErrorCode | undefined {
  if (typeof e !== "object" || e === null) return undefined;
  for (const key of ["code", "errnoName", "name"] as const) {
    const val = (e as Record<string, unknown>)[key];
    if (typeof val === "string" && /^E[A-Z0-9]{1,31}$/.test(val)) return val;
  }
  return undefined;
}

/** parseRequest for an object the connection already parsed (same result as parseRequest(obj)). */
export function parseRequestObject(obj: Record<string, unknown>): ParseResult {
  return parseRequest(obj);
}

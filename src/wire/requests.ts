// Protocol v1 requests (docs/protocol.md): the schema of every request and parseRequest, which
// validates one and says which error code a bad one gets. Pure: no I/O, no daemon logic. The only
// wire module that loads valibot: the client library and luoctl import replies.ts / events.ts.
import * as v from "valibot";
import { type ErrorCode, oneLine } from "./errors";
import { isValidId } from "./ids";
import { MAX_FDS_PER_MESSAGE } from "./framing";
import { KEXEC_TIMEOUT_MAX_MS, KEXEC_TIMEOUT_MIN_MS } from "./limits";
import { ECHO_CMD_MAX_LENGTH, TAG_MAX_LENGTH, echoOf, isPlainObject } from "./replies";

// ---------------------------------------------------------------------------------------------
// Field schemas

/** Free-text reasons (FAIL, ABORT, EVICT) are at most this many characters. */
export const REASON_MAX_LENGTH = 256;

/** `tag`: a string of at most TAG_MAX_LENGTH characters or a safe integer; echoed in the reply. */
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
/** CHECK alone checks the loaded kernel; with "kernel" (and "initrd") it checks the image sent instead, like a LOAD that never loads. */
export const CheckRequest = v.strictObject({
  cmd: v.literal("CHECK"),
  kernel: v.optional(v.boolean()),
  initrd: v.optional(v.boolean()),
  cmdline: v.optional(v.string()),
  ...common,
});
export const KexecRequest = v.strictObject({
  cmd: v.literal("KEXEC"),
  timeout_ms: v.optional(TimeoutMs),
  dry_run: v.optional(v.boolean()),
  /** Leave out subscribed clients that are not connected (new within version 1). */
  force: v.optional(v.boolean()),
  ...common,
});
export const AbortRequest = v.strictObject({ cmd: v.literal("ABORT"), reason: v.optional(Reason), ...common });
export const DiscardRequest = v.strictObject({ cmd: v.literal("DISCARD"), id: Id, ...common });
export const EvictRequest = v.strictObject({
  cmd: v.literal("EVICT"),
  id: Id,
  force: v.optional(v.boolean()),
  reason: v.optional(Reason),
  ...common,
});

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
export type EvictRequest = v.InferOutput<typeof EvictRequest>;

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
  EVICT: EvictRequest,
} as const;

/** Every request, discriminated by `cmd`. */
export const Request = v.variant("cmd", [
  SubscribeRequest, PrepareRequest, ReadyRequest, FailRequest, UnsubscribeRequest, ClaimRequest, FinishedRequest,
  StatusRequest, ListRequest, LoadRequest, UnloadRequest, CheckRequest, KexecRequest, AbortRequest,
  DiscardRequest, EvictRequest,
]);
export type Request = v.InferOutput<typeof Request>;
export type Command = Request["cmd"];
/** The request type of one command: `RequestOf<"LOAD">` is `LoadRequest`. */
export type RequestOf<C extends Command> = Extract<Request, { cmd: C }>;

export const COMMANDS: readonly Command[] = Object.keys(SCHEMAS) as Command[];

export function isCommand(s: unknown): s is Command {
  return typeof s === "string" && Object.hasOwn(SCHEMAS, s);
}

/** How many fds a request carries: LOAD the kernel (+ the initrd), CHECK the same when it names them, every other request none. */
export function expectedFds(request: Request): number {
  if (request.cmd === "LOAD") return 1 + (request.initrd ? 1 : 0);
  if (request.cmd === "CHECK") return (request.kernel ? 1 : 0) + (request.initrd ? 1 : 0);
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Parsing

export type ParseResult =
  | { ok: true; request: Request }
  | { ok: false; code: ErrorCode; message: string; cmd?: string; tag?: string | number };

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
  const echo = echoOf(obj);
  const cmd = obj.cmd;

  if (cmd === undefined) return { ok: false, code: "EOPNOTSUPP", message: 'missing "cmd"', ...echo };
  if (typeof cmd !== "string") {
    return { ok: false, code: "EBADMSG", message: `"cmd" must be a string, got ${describe(cmd)}`, ...echo };
  }
  if (!isCommand(cmd)) {
    const hint = isCommand(cmd.toUpperCase()) ? ` (commands are upper case: ${cmd.toUpperCase()})` : "";
    return { ok: false, code: "EOPNOTSUPP", message: `unknown cmd ${JSON.stringify(cmd.slice(0, ECHO_CMD_MAX_LENGTH))}${hint}`, ...echo };
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
  if (request.cmd === "CHECK" && (request.initrd || request.cmdline !== undefined) && !request.kernel) {
    return { ok: false, code: "EINVAL", ...echo, message: 'CHECK: "initrd" and "cmdline" go with "kernel":true (the image to check)' };
  }
  const want = expectedFds(request);
  const said = request.fds ?? 0;
  if (said !== want) {
    const why = request.cmd === "LOAD" ? `LOAD with "initrd":${request.initrd} carries ${want}`
      : request.cmd === "CHECK" ? `CHECK with "kernel":${request.kernel ?? false}, "initrd":${request.initrd ?? false} carries ${want}` : `${cmd} carries ${want}`;
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

function describe(x: unknown): string {
  if (x === null) return "null";
  if (Array.isArray(x)) return "an array";
  return typeof x === "string" ? "a string" : `a ${typeof x}`;
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

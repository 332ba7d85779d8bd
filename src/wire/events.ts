// Protocol v1 events (docs/protocol.md, "Events to subscribers"): the lines luod sends that answer no request
// (CLAIMED excepted: it is also the CLAIM reply), their shapes and their builders. The builders
// fix the field order of every line (the docs show it). Pure, and no valibot.
import type { JsonObject, Tag } from "./replies";

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
  /** The session name, `luod:<id>/<attempt>`. */
  session: string;
  update: number;
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

/** A message from luod is an event when it has a string `event` (CLAIMED is a reply too). */
export function isEvent(msg: JsonObject): msg is JsonObject & { event: string } {
  return typeof msg.event === "string";
}

/** To every participant when an update starts; READY is due by `deadline`. */
export function preservationRequestEvent(update: number, timeoutMs: number, deadline: string): PreservationRequestEvent {
  return { event: "PRESERVATION_REQUEST", update, timeout_ms: timeoutMs, deadline };
}

/** A participant's session for this update: send it with the session fd, unless `prepared`. */
export function startPreservationEvent(id: string, session: string, update: number, prepared: boolean): StartPreservationEvent {
  return { event: "START_PRESERVATION", id, session, update, ...(prepared ? { prepared: true as const } : { fds: 1 as const }) };
}

/** To every participant still connected when an update ends without a jump. */
export function abortedEvent(update: number, reason: string): AbortedEvent {
  return { event: "ABORTED", update, reason };
}

/** The CLAIMED event that answers a successful CLAIM; send it with the session fd. */
export function claimedReply(id: string, session: string, tag?: Tag): ClaimedEvent {
  const out: ClaimedEvent = { event: "CLAIMED", reply: "CLAIM", ok: true, id, session, fds: 1 };
  if (tag !== undefined) out.tag = tag;
  return out;
}

/** To the admin that sent KEXEC: how far the barrier is (`phase` is luod's phase). */
export function progressEvent(
  phase: string,
  p: { ready: number; total: number; waiting: string[]; remaining_ms: number },
): ProgressEvent {
  return { event: "PROGRESS", phase, ready: p.ready, total: p.total, waiting: p.waiting, remaining_ms: p.remaining_ms };
}

/** To the admin that sent KEXEC, just before reboot(KEXEC). */
export function rebootingEvent(update: number, timings: Record<string, number>): RebootingEvent {
  return { event: "REBOOTING", update, timings };
}

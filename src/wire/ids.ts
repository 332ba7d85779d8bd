// Client ids and LUO session names (docs/protocol.md, "Identity").
import { ProtocolError } from "./errors";

/** A client id: 1–48 bytes of [A-Za-z0-9._@:-] (ASCII only, so characters = bytes). */
export const ID_PATTERN = /^[A-Za-z0-9._@:-]{1,48}$/;
export const ID_MAX_BYTES = 48;

/** luod's own session (it holds the manifest). */
export const INTERNAL_SESSION = "luod";
/** Session names that are never given to a client: systemd's (PID 1) and luod's own. */
export const RESERVED_SESSION_NAMES: readonly string[] = ["systemd", INTERNAL_SESSION];

/** Prefix of every client session name. */
export const SESSION_PREFIX = `${INTERNAL_SESSION}:`;
/** The kernel's limit: a session name is 1..63 bytes (LIVEUPDATE_SESSION_NAME_LENGTH = 64 with the NUL). */
export const SESSION_NAME_MAX_BYTES = 63;

export function isValidId(s: unknown): s is string {
  return typeof s === "string" && ID_PATTERN.test(s);
}

/** Canonical base 36 of a non-negative integer, as written by Number#toString(36). */
const ATTEMPT_PATTERN = /^(?:0|[1-9a-z][0-9a-z]{0,8})$/;
const SESSION_NAME_PATTERN = /^luod:([A-Za-z0-9._@:-]{1,48})\/([0-9a-z]{1,9})$/;

/**
 * The outgoing session name of client `id` in update attempt `attempt` of this boot:
 * `luod:<id>/<attempt in base 36>`. Throws ProtocolError EINVAL for a bad id or attempt, or when the
 * name would exceed 63 bytes (it cannot with a valid id and an attempt below 36^9).
 */
export function sessionNameFor(id: string, attempt: number): string {
  if (!isValidId(id)) throw new ProtocolError("EINVAL", `invalid id ${JSON.stringify(id)}: 1-48 bytes of [A-Za-z0-9._@:-]`);
  if (!Number.isSafeInteger(attempt) || attempt < 0) {
    throw new ProtocolError("EINVAL", `invalid update attempt ${String(attempt)}: a non-negative integer`);
  }
  const name = `${SESSION_PREFIX}${id}/${attempt.toString(36)}`;
  if (name.length > SESSION_NAME_MAX_BYTES) {
    throw new ProtocolError("EINVAL", `session name ${name} is ${name.length} bytes, over the kernel's ${SESSION_NAME_MAX_BYTES}`);
  }
  return name;
}

/** Splits a client session name; null for any name luod did not make (including `luod`, `systemd`). */
export function parseSessionName(name: string): { id: string; attempt: number } | null {
  if (typeof name !== "string") return null;
  const m = SESSION_NAME_PATTERN.exec(name);
  if (!m || !ATTEMPT_PATTERN.test(m[2]!)) return null;
  return { id: m[1]!, attempt: parseInt(m[2]!, 36) };
}

/** The client id inside a session name made by sessionNameFor, or null. */
export function idFromSessionName(name: string): string | null {
  return parseSessionName(name)?.id ?? null;
}

// The audit trail (docs/daemon.md#the-audit-trail): one record per admin request that changes
// something, with who sent it (SO_PEERCRED's uid and pid, the systemd service of its cgroup) and
// how it ended: `ok` at notice priority, a refusal or error (its code and reason) at warning
// priority. Refusals count as much as successes: an unprivileged peer turned away by access
// control, an image that is no kernel.
import type { Command } from "../wire/requests";
import { errorCodeOf } from "../wire/errors";
import type { Logger } from "./log";
import { MESSAGE_ID } from "./message-ids";

/** The requests that change luod's or the kernel's state. LIST, CHECK and STATUS only read. */
export const AUDITED: ReadonlySet<string> = new Set<Command>(["LOAD", "UNLOAD", "KEXEC", "ABORT", "DISCARD", "EVICT"]);

export interface Requester {
  readonly cred: { readonly uid: number; readonly pid: number };
  /** The sender's systemd service, read from /proc when first asked (peers.ts). */
  readonly unit: string | null;
}

export type AuditOutcome =
  | { ok: true; detail?: string; update?: number | null }
  | { ok: false; code: string; reason: string };

/**
 * Logs one audit record. `target`: the client or restored session the request names (EVICT,
 * DISCARD). MESSAGE: `audit: EVICT vm-1 by uid 0 pid 1234 unit ssh.service: ok`.
 */
export function audit(log: Logger, cmd: string, who: Requester, outcome: AuditOutcome, target?: string): void {
  if (!AUDITED.has(cmd)) return;
  const unit = who.unit;
  const sender = `by uid ${who.cred.uid} pid ${who.cred.pid}${unit ? ` unit ${unit}` : ""}`;
  const how = outcome.ok ? `ok${outcome.detail ? ` (${outcome.detail})` : ""}` : `${outcome.code}: ${outcome.reason}`;
  const fields = {
    MESSAGE_ID: MESSAGE_ID.audit, LUO_REQUEST: cmd, LUO_OUTCOME: outcome.ok ? "ok" : outcome.code,
    LUO_UID: who.cred.uid, LUO_PID: who.cred.pid, LUO_UNIT: unit, LUO_CLIENT: target ?? null,
    LUO_UPDATE: outcome.ok ? (outcome.update ?? null) : null,
  };
  const msg = `audit: ${cmd}${target ? ` ${target}` : ""} ${sender}: ${how}`;
  if (outcome.ok) log.notice(msg, fields);
  else log.warning(msg, fields);
}

/** The outcome of a request that threw: its error code (EIO for what is not a refusal) and message. */
export function refusal(e: unknown): AuditOutcome {
  return { ok: false, code: errorCodeOf(e, "EIO"), reason: (e as Error).message };
}

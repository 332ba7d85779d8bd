// luoctl evict ID [--force] [--reason TEXT]: an administrator removes a stuck subscriber (EVICT).
import { isValidId } from "../wire/ids";
import { escapeControl } from "../wire/escape";
import type { EvictReply } from "../wire/replies";
import { UsageError, lastValue, unmark } from "./args";
import { EXIT_OK, QUICK_REPLY_TIMEOUT_MS, emit, replyTimeout, withClient, type Ctx } from "./context";

export async function cmdEvict(ctx: Ctx, args: string[], opts: Record<string, unknown>): Promise<number> {
  const id = unmark(args[0]!);
  if (!isValidId(id)) throw new UsageError(`invalid id "${id}": 1-48 characters of A-Z a-z 0-9 . _ @ : -`);
  const reason = lastValue(opts.reason, "reason");
  const req: Record<string, unknown> & { cmd: string } = { cmd: "EVICT", id };
  if (opts.force === true) req.force = true;
  if (reason !== undefined) req.reason = reason;
  const r = (await withClient(ctx, (c) => c.call(req, [], { timeoutMs: replyTimeout(ctx, QUICK_REPLY_TIMEOUT_MS) }))).msg as EvictReply;
  emit(ctx, r, () => describeEviction(id, r));
  return EXIT_OK;
}

/** What the eviction did, one line per consequence (luod's strings are escaped for the terminal). */
export function describeEviction(id: string, r: Partial<EvictReply>): string {
  const lines = [`evicted ${id}${r.disconnected ? ": its connection is closed" : " (it was not connected)"}`];
  if (typeof r.aborted_update === "number") lines.push(`update ${r.aborted_update} was aborted`);
  if (typeof r.released_session === "string")
    lines.push(`its prepared session ${escapeControl(r.released_session)} is released: its memory will not be carried across the next update unless it PREPAREs again`);
  return lines.join("\n");
}

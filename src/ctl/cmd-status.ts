// The commands that show and tidy luod's state: status, list, discard.
import { isValidId } from "../wire/ids";
import { UsageError, unmark } from "./args";
import { EXIT_OK, QUICK_REPLY_TIMEOUT_MS, emit, replyTimeout, withClient, type Ctx } from "./context";
import { formatList, formatStatus } from "./format";

export async function cmdStatus(ctx: Ctx): Promise<number> {
  const r = await withClient(ctx, (c) => c.status({ timeoutMs: replyTimeout(ctx, QUICK_REPLY_TIMEOUT_MS) }));
  emit(ctx, r, () => formatStatus(r, ctx.io.now(), ctx.style));
  return EXIT_OK;
}

export async function cmdList(ctx: Ctx): Promise<number> {
  const r = await withClient(ctx, (c) => c.list({ timeoutMs: replyTimeout(ctx, QUICK_REPLY_TIMEOUT_MS) }));
  emit(ctx, r, () => formatList(r, ctx.io.now()));
  return EXIT_OK;
}

export async function cmdDiscard(ctx: Ctx, args: string[]): Promise<number> {
  const id = unmark(args[0]!);
  if (!isValidId(id)) throw new UsageError(`invalid id "${id}": 1-48 characters of A-Z a-z 0-9 . _ @ : -`);
  const r = await withClient(ctx, (c) => c.discard(id, { timeoutMs: replyTimeout(ctx, QUICK_REPLY_TIMEOUT_MS) }));
  emit(ctx, r, () => `discarded the restored session of ${id}`);
  return EXIT_OK;
}

// The update itself: kexec (start it, show progress, report the verdict; Ctrl-C aborts) and abort.
import { LuoConnectError, LuoConnectionClosed, LuoError, LuoProtocolError } from "../client/errors";
import { KEXEC_TIMEOUT_DEFAULT_MS, KEXEC_TIMEOUT_MAX_MS, KEXEC_TIMEOUT_MIN_MS } from "../wire/limits";
import { UsageError, lastValue, parseDuration } from "./args";
import { EXIT_FAILED, EXIT_OK, QUICK_REPLY_TIMEOUT_MS, emit, jsonDoc, oneLine, replyTimeout, stripReply, withClient, type Ctx } from "./context";
import { formatDuration, formatKexecDone, formatProgress, formatTimings } from "./format";

/** KEXEC replies by the READY deadline at the latest; this margin covers commit + abort. */
const KEXEC_MARGIN_MS = 60_000;
/** How often a non-TTY progress line repeats when nothing changed. */
const PROGRESS_REPEAT_MS = 5000;

export async function cmdKexec(ctx: Ctx, _args: string[], opts: Record<string, unknown>): Promise<number> {
  const timeoutText = lastValue(opts.timeout, "timeout");
  const timeoutMs = timeoutText === undefined ? undefined : parseDuration(timeoutText);
  if (timeoutMs !== undefined && (timeoutMs < KEXEC_TIMEOUT_MIN_MS || timeoutMs > KEXEC_TIMEOUT_MAX_MS)) {
    throw new UsageError(`--timeout ${timeoutText}: must be from ${formatDuration(KEXEC_TIMEOUT_MIN_MS)} to ${formatDuration(KEXEC_TIMEOUT_MAX_MS)}`);
  }
  const dryRun = opts.dryRun === true;
  const force = opts.force === true;
  const { io } = ctx;
  const client = await io.connect(ctx.socket);

  let live = false; // a TTY progress line is on screen
  let lastText = "";
  let lastAt = 0;
  const clearLive = () => {
    if (live) io.stderr("\r\x1b[K");
    live = false;
  };
  const onProgress = (ev: Record<string, unknown>) => {
    started = true;
    if (ctx.json) {
      io.stdout(jsonDoc(ev) + "\n");
      return;
    }
    const text = formatProgress(ev);
    if (io.stderrIsTTY) {
      io.stderr(`\r\x1b[K${text}`);
      live = true;
      return;
    }
    // Lines for logs: when something changed, or every few seconds (luod sends one a second).
    const gist = text.replace(/ \([^)]*left\)/, "");
    const now = io.now();
    if (gist !== lastText || now - lastAt >= PROGRESS_REPEAT_MS) {
      io.stderr(text + "\n");
      lastText = gist;
      lastAt = now;
    }
  };
  const onRebooting = (ev: Record<string, unknown>) => {
    clearLive();
    if (ctx.json) io.stdout(jsonDoc({ ok: true, ...ev }) + "\n");
    else io.stdout(formatKexecDone(ev) + "\n");
  };

  let interrupted = false;
  let started = false; // luod accepted the KEXEC: progress came
  // First Ctrl-C: ask luod to abort (clients resume, we report the outcome). The handler is
  // removed at once, so a second Ctrl-C ends luoctl the usual way.
  let removeInterrupt = () => {};
  removeInterrupt = io.onInterrupt(() => {
    if (interrupted) return;
    interrupted = true;
    removeInterrupt();
    clearLive();
    io.stderr("luoctl: interrupted; aborting the update\n");
    client.abort("interrupted (luoctl kexec got SIGINT)").catch(() => {});
  });
  // If luod never answers (wedged), give up after --reply-timeout, by default the READY deadline
  // plus a margin. After REBOOTING there is no limit: sync() before the jump may take long, and
  // success ends us anyway.
  let rebooting = false;
  const watchdog = setTimeout(() => {
    if (!rebooting) client.close();
  }, replyTimeout(ctx, (timeoutMs ?? KEXEC_TIMEOUT_DEFAULT_MS) + KEXEC_MARGIN_MS));
  try {
    const result = await client.kexec({
      timeoutMs,
      dryRun,
      force,
      onProgress,
      onRebooting: (ev) => {
        rebooting = true;
        onRebooting(ev);
      },
    });
    clearLive();
    if (result.rebooting) return EXIT_OK; // the verdict was printed at REBOOTING
    if (ctx.json) io.stdout(jsonDoc(stripReply(result.reply)) + "\n");
    else {
      io.stdout(formatKexecDone(result.reply) + "\n");
      const t = formatTimings(result.timings);
      if (t) io.stdout(`timings: ${t}\n`);
    }
    return EXIT_OK;
  } catch (e) {
    clearLive();
    const transport = e instanceof LuoConnectionClosed || e instanceof LuoConnectError || e instanceof LuoProtocolError;
    if (e instanceof LuoError && !transport) {
      if (ctx.json) io.stdout(jsonDoc(e.reply ? stripReply(e.reply) : { ok: false, error: { code: e.code, message: e.message } }) + "\n");
      const what = rebooting ? "the jump failed" : started ? "update aborted" : "cannot start the update";
      io.stderr(`luoctl: ${what}: ${oneLine(e.message)}${e.message.includes(e.code) ? "" : ` (${e.code})`}\n`);
      return EXIT_FAILED;
    }
    if (e instanceof LuoConnectionClosed && e.code === "ESHUTDOWN") {
      throw new LuoError("ETIMEDOUT", `no answer from luod within ${ctx.replyTimeoutMs === undefined ? "the READY deadline plus a minute" : "--reply-timeout"}; check \`luoctl status\``);
    }
    throw e;
  } finally {
    clearTimeout(watchdog);
    removeInterrupt();
    client.close();
  }
}

export async function cmdAbort(ctx: Ctx, _args: string[], opts: Record<string, unknown>): Promise<number> {
  const reason = lastValue(opts.reason, "reason");
  const r = await withClient(ctx, (c) => c.abort(reason, { timeoutMs: replyTimeout(ctx, QUICK_REPLY_TIMEOUT_MS) }));
  emit(ctx, r, () => (r.aborted === true ? "update aborted" : "no update was in progress"));
  return EXIT_OK;
}

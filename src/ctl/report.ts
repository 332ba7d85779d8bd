// A failed luoctl command as the user sees it: the exit code (usage 2, unreachable 3, otherwise
// 1), one "luoctl: ..." line on stderr, and with --json the `{"ok":false,...}` document on stdout.
// luod not answering in time (LuoTimeoutError) and luod answering something that is not protocol
// v1 (LuoProtocolError: "luod gave an invalid reply: …") count as unreachable: exit 3.
import { LuoConnectError, LuoConnectionClosed, LuoError, LuoProtocolError, LuoTimeoutError } from "../client/errors";
import { UsageError } from "./args";
import { EXIT_FAILED, EXIT_UNREACHABLE, EXIT_USAGE, LocalError, jsonDoc, oneLine, stripReply, type Ctx } from "./context";

export function report(ctx: Ctx, e: unknown, helpHint: string): number {
  let code: string;
  let message: string;
  let exit: number;
  let doc: Record<string, unknown> | null = null;
  if (e instanceof UsageError || (e instanceof Error && e.name === "CACError")) {
    code = "EUSAGE";
    message = `${usageMessage(e.message)}; see "${helpHint}"`;
    exit = EXIT_USAGE;
  } else if (e instanceof LuoConnectError) {
    code = e.code;
    message = e.message;
    exit = EXIT_UNREACHABLE;
  } else if (e instanceof LuoConnectionClosed || e instanceof LuoProtocolError || e instanceof LuoTimeoutError) {
    code = e.code;
    message = e instanceof LuoTimeoutError ? `${e.message} (${e.code})` : e.message;
    exit = EXIT_UNREACHABLE;
  } else if (e instanceof LuoError) {
    code = e.code;
    message = e.message.includes(e.code) ? e.message : `${e.message} (${e.code})`;
    exit = EXIT_FAILED;
    if (e.reply) doc = stripReply(e.reply);
  } else if (e instanceof LocalError) {
    code = e.code;
    message = e.message;
    exit = EXIT_FAILED;
  } else {
    code = "EIO";
    message = `internal error: ${e instanceof Error ? e.message : String(e)}`;
    exit = EXIT_FAILED;
  }
  if (ctx.json) ctx.io.stdout(jsonDoc(doc ?? { ok: false, error: { code, message: e instanceof Error ? e.message : message } }) + "\n");
  ctx.io.stderr(`luoctl: ${oneLine(message)}\n`);
  return exit;
}

/** cac's messages, in luoctl's words. */
function usageMessage(m: string): string {
  const missing = /^missing required args for command `(\S+) (.*)`$/.exec(m);
  if (missing) return `${missing[1]} needs ${missing[2]!.replace(/[<>[\]]/g, "").toUpperCase()}`;
  const unused = /^Unused args: (.*)$/.exec(m);
  if (unused) return `unexpected argument ${unused[1]!.replaceAll("`", '"')}`;
  // cac names unknown options in camelCase (--dryRun): give them back as typed (--dry-run)
  const kebab = (o: string) => o.replace(/([a-z0-9])([A-Z])/g, (_x, a: string, b: string) => `${a}-${b.toLowerCase()}`);
  return m.replace(/^Unknown option `([^`]*)`/, (_x, o: string) => `unknown option "${kebab(o)}"`).replace(/^option `([^`]*)` value is missing/, 'option "$1" needs a value');
}

// luoctl: the administrator's tool for luod, in the conventions of kexec-tools and systemctl.
//
// Exit codes (also in `luoctl --help`):
//   0  success
//   1  the operation failed: luod refused or reported an error, the update was aborted,
//      `check` found luod not ready, or a file given to `load` could not be opened
//   2  usage error: unknown command or option, missing or bad argument
//   3  cannot reach luod: socket missing, connection refused, permission denied, the
//      connection was lost before luod answered, luod did not answer a quick command in time
//      (--reply-timeout), or its reply was not protocol v1
//
// Output: human text on stdout (progress and errors on stderr). With --json, stdout carries
// exactly one JSON document per command: the reply of luod without its `reply`/`tag` fields
// (`{"ok":true,...}`), or `{"ok":false,"error":{"code","message"}}` on failure (usage errors:
// code "EUSAGE"; connection errors: the errno name); every document has `json_version`, and its
// fields are listed in docs/protocol.md, "luoctl --json outputs". `kexec --json` is the exception: JSON lines,
// one per PROGRESS event, then one REBOOTING line (`"ok":true`) or the final reply; when reboot()
// returns after REBOOTING, an `"ok":false` line follows. The last line is always the verdict.
//
// Waiting: --reply-timeout DUR bounds the wait for luod's reply (default 15 s for the quick
// commands, 2 min for load, the READY deadline plus a minute for kexec); no reply in time (kexec:
// exit 1, as before), or a reply that is not protocol v1 ("luod gave an invalid reply"), is exit 3.
//
// Socket: --socket PATH, else $LUOD_SOCKET, else /run/luod/liveupdate.sock. (The compiled binary
// never autoloads .env files, so the environment variable is only what the caller set.)
//
// This file parses argv against the command table (commands.ts) and runs the command; the
// handlers are in cmd-status.ts, cmd-load.ts and cmd-kexec.ts, help in help.ts, failures and exit
// codes in report.ts and context.ts.
import { cac, type CAC } from "cac";
import { VERSION } from "../version";
import { DEFAULT_SOCKET } from "../wire/limits";
import { UsageError, lastValue, parseDuration, protectOptionValues, unmark } from "./args";
import { GLOBAL_OPTIONS, SPECS, VALUE_OPTIONS, commandName, renameAliases } from "./commands";
import { EXIT_OK, jsonDoc, withClient, type Ctx } from "./context";
import { isPlainObject } from "../wire/replies";
import { escapeControl } from "../wire/escape";
import { helpCommand, helpText } from "./help";
import { defaultIo, type CtlIo } from "./io";
import { report } from "./report";

/**
 * luoctl. `args` are the user's arguments only (no argv0). Returns the exit code; never throws.
 */
export async function luoctlMain(args: string[], ioOverrides: Partial<CtlIo> = {}): Promise<number> {
  const io: CtlIo = { ...defaultIo(), ...ioOverrides };
  const beforeDashes = args.includes("--") ? args.slice(0, args.indexOf("--")) : args;
  const wantJson = beforeDashes.includes("--json");
  let ctx: Ctx = { io, json: wantJson, socket: DEFAULT_SOCKET, style: { color: false } };
  let helpHint = "luoctl --help";
  try {
    const holder: { ctx: Ctx | null } = { ctx: null };
    const argv = protectOptionValues(renameAliases(args), VALUE_OPTIONS);
    const cli = buildCli(holder, commandWord(argv));
    cli.parse(["luoctl", "luoctl", ...argv], { run: false });
    const opts = cli.options as Record<string, unknown>;
    const command = cli.matchedCommand;
    if (command) helpHint = `luoctl ${command.name} --help`;

    if (opts.help) {
      io.stdout(helpText(command ?? null) + "\n");
      return EXIT_OK;
    }
    if (opts.version) return await showVersions(io, wantJson, lastValue(opts.socket, "socket") ?? io.env.LUOD_SOCKET ?? DEFAULT_SOCKET);
    if (!command) {
      const first = cli.args[0];
      if (first === "help") return helpCommand(io, cli.args.slice(1));
      throw new UsageError(first === undefined ? "no command given" : `unknown command "${unmark(String(first))}"`);
    }
    ctx = {
      io,
      // given twice (`luoctl --json status --json`), cac hands over [true, true]
      json: opts.json === true || (Array.isArray(opts.json) && opts.json.includes(true)),
      socket: lastValue(opts.socket, "socket") ?? io.env.LUOD_SOCKET ?? DEFAULT_SOCKET,
      style: { color: io.stdoutIsTTY && io.env.NO_COLOR === undefined },
    };
    if (ctx.socket === "") throw new UsageError("--socket needs a path");
    const replyTimeout = lastValue(opts.replyTimeout, "reply-timeout");
    if (replyTimeout !== undefined) ctx.replyTimeoutMs = parseDuration(replyTimeout);
    holder.ctx = ctx;
    const code = await cli.runMatchedCommand();
    return typeof code === "number" ? code : EXIT_OK;
  } catch (e) {
    return report(ctx, e, helpHint);
  }
}

/**
 * `luoctl --version`: luoctl's version, and that of the luod it would talk to when one answers
 * within 2 s (the binaries may differ after an upgrade), with its protocol version. With --json:
 * `{ok, luoctl, socket, luod: {version, protocol} | null, luod_error?}`.
 */
async function showVersions(io: CtlIo, json: boolean, socket: string): Promise<number> {
  const versionCtx: Ctx = { io, json: false, socket, style: { color: false }, replyTimeoutMs: 2000 };
  let luod: { version: unknown; protocol: unknown } | null = null;
  let failure = "";
  try {
    const status = await withClient(versionCtx, (c) => c.status({ timeoutMs: 2000 }));
    const said = isPlainObject(status.luod) ? status.luod : {};
    luod = { version: said.version ?? null, protocol: said.protocol ?? null };
  } catch (e) {
    failure = e instanceof Error && "code" in e ? String(e.code) : "error";
  }
  if (json) {
    io.stdout(jsonDoc({ ok: true, luoctl: VERSION, socket, luod, ...(luod ? {} : { luod_error: failure }) }) + "\n");
  } else {
    io.stdout(`luoctl ${VERSION}\n`);
    if (!luod) io.stdout(`luod not reachable at ${escapeControl(socket)} (${escapeControl(failure)})\n`);
    else {
      const protocol = typeof luod.protocol === "number" ? `, protocol ${luod.protocol}` : "";
      io.stdout(`luod ${escapeControl(String(luod.version ?? "(version not said)"))} (${escapeControl(socket)}${protocol})\n`);
    }
  }
  return EXIT_OK;
}

/**
 * The command word of argv (after protectOptionValues): the first argument that is neither an
 * option nor an option's value. Undefined after `--` or when there is none.
 */
function commandWord(argv: readonly string[]): string | undefined {
  for (const a of argv) {
    if (a === "--") return undefined;
    if (!a.startsWith("-") && unmark(a) === a) return a;
  }
  return undefined;
}

/**
 * cac with the global options and, when `only` names a command, that command alone: setting up
 * all of them is a third of luoctl's start (~4 ms). Help and unknown commands get all of them.
 */
function buildCli(holder: { ctx: Ctx | null }, only?: string): CAC {
  const cli = cac("luoctl");
  for (const [raw, desc] of GLOBAL_OPTIONS) cli.option(raw, desc, raw.includes("<") ? { type: [String] } : undefined);
  const one = SPECS.filter((s) => commandName(s) === only);
  for (const spec of one.length ? one : SPECS) {
    const cmd = cli.command(spec.raw, spec.summary);
    for (const [raw, desc] of spec.options) cmd.option(raw, desc, raw.includes("<") ? { type: [String] } : undefined);
    cmd.action(async (...a: unknown[]) => {
      const opts = a.pop() as Record<string, unknown>;
      const positional = (a as (string | undefined)[]).filter((x): x is string => typeof x === "string");
      // the Ctx exists only after parsing (it depends on --socket/--json): set before running
      return spec.run(holder.ctx!, positional, opts);
    });
  }
  return cli;
}

// luoctl: the administrator's tool for luod, in the conventions of kexec-tools and systemctl.
//
// Exit codes (also in `luoctl --help`):
//   0  success
//   1  the operation failed: luod refused or reported an error, the update was aborted,
//      `check` found luod not ready, or a file given to `load` could not be opened
//   2  usage error: unknown command or option, missing or bad argument
//   3  cannot reach luod: socket missing, connection refused, permission denied, or the
//      connection was lost before luod answered
//
// Output: human text on stdout (progress and errors on stderr). With --json, stdout carries
// exactly one JSON document per command: the reply of luod without its `reply`/`tag` fields
// (`{"ok":true,...}`), or `{"ok":false,"error":{"code","message"}}` on failure (usage errors:
// code "EUSAGE"; connection errors: the errno name). `kexec --json` is the exception: JSON lines,
// one per PROGRESS event, then one REBOOTING line (`"ok":true`) or the final reply; when reboot()
// returns after REBOOTING, an `"ok":false` line follows. The last line is always the verdict.
//
// Socket: --socket PATH, else $LUOD_SOCKET, else /run/luod/liveupdate.sock. (The compiled binary
// never autoloads .env files, so the environment variable is only what the caller set.)
import { cac, type CAC, type Command } from "cac";
import { closeSync, fstatSync, openSync, readFileSync } from "node:fs";
import { VERSION } from "../version";
import type { LuoClient } from "../client/client";
import { DEFAULT_SOCKET } from "../client/connect";
import { isTerminal, writeText } from "../kernel/fd";
import { OneShotClient } from "../client/oneshot";
import type { LuoRequests } from "../client/requests";
import { LuoConnectError, LuoConnectionClosed, LuoError } from "../client/errors";
import { isValidId } from "../wire/ids";
import { KEXEC_TIMEOUT_MAX_MS, KEXEC_TIMEOUT_MIN_MS } from "../wire/limits";
import { UsageError, lastValue, optionValues, parseDuration, parseSha256, protectOptionValues, unmark } from "./args";
import {
  formatCheck, formatDuration, formatKexecDone, formatList, formatLoad, formatProgress, formatStatus, formatTimings, type Style,
} from "./format";

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;
export const EXIT_UNREACHABLE = 3;

/** What luoctl touches outside itself; tests replace parts of it. */
export interface CtlIo {
  stdout(text: string): void;
  stderr(text: string): void;
  stdoutIsTTY: boolean;
  stderrIsTTY: boolean;
  env: Record<string, string | undefined>;
  readProcCmdline(): string;
  /** A connection with an event loop (kexec: progress events). */
  connect(path: string): Promise<LuoClient>;
  /** A blocking one-request connection for the quick commands (default: connect). */
  connectOnce?(path: string): Promise<LuoRequests>;
  /** Installs a SIGINT handler for the duration of `kexec`; returns its remover. */
  onInterrupt(handler: () => void): () => void;
  now(): number;
}

export function defaultIo(): CtlIo {
  return {
    // synchronous writes: main.ts calls process.exit() right after, which must not lose output
    stdout: (t) => writeText(1, t),
    stderr: (t) => writeText(2, t),
    // not process.stdout.isTTY: loading Bun's tty streams costs ~2 ms of every start
    stdoutIsTTY: isTerminal(1),
    stderrIsTTY: isTerminal(2),
    env: process.env,
    readProcCmdline: () => readFileSync("/proc/cmdline", "utf8"),
    // loaded on demand: the event loop and the schemas are for kexec only, not the quick commands
    connect: async (path) => (await import("../client/client")).LuoClient.connect(path),
    connectOnce: (path) => OneShotClient.connect(path),
    onInterrupt(handler) {
      process.on("SIGINT", handler);
      return () => process.off("SIGINT", handler);
    },
    now: () => Date.now(),
  };
}

/** Options that take a value (long names). Their values are protected from mri (args.ts). */
const VALUE_OPTIONS = new Set(["socket", "initrd", "cmdline", "append", "sha256", "timeout", "reason"]);

/** Per-request timeout for the quick commands (luod answers them at once). */
const QUICK_TIMEOUT_MS = 30_000;
/** LOAD hashes and loads a kernel image: allow for a slow disk. */
const LOAD_TIMEOUT_MS = 120_000;
/** KEXEC replies by the READY deadline at the latest; this margin covers commit + abort. */
const KEXEC_MARGIN_MS = 60_000;
const KEXEC_DEFAULT_TIMEOUT_MS = 30_000;

interface Ctx {
  io: CtlIo;
  json: boolean;
  socket: string;
  style: Style;
}

interface Spec {
  /** cac raw name, e.g. "load <kernel>". */
  raw: string;
  summary: string;
  details: string;
  options: [string, string][];
  examples?: string[];
  run(ctx: Ctx, args: string[], opts: Record<string, unknown>): Promise<number>;
}

const GLOBAL_OPTIONS: [string, string][] = [
  ["--socket <path>", `luod's socket (default: $LUOD_SOCKET or ${DEFAULT_SOCKET})`],
  ["--json", "machine-readable output on stdout (one JSON document; kexec: JSON lines)"],
  ["-h, --help", "show help (for a command: luoctl COMMAND --help)"],
  ["-v, --version", "show the version"],
];

const EPILOG = `Exit status:
  0  success
  1  the operation failed (luod refused, the update was aborted, check: not ready)
  2  usage error (unknown command or option, bad or missing argument)
  3  cannot reach luod (no socket, connection refused, permission denied, connection lost)

Environment:
  LUOD_SOCKET  socket path when --socket is not given`;

const SPECS: Spec[] = [
  {
    raw: "status",
    summary: "Show luod's phase, the loaded kernel, clients and restored sessions",
    details:
      "Shows the phase (idle, preparing, committing), the update in progress, the kernel luod loaded\n" +
      "with its command line, the clients (subscribed/ready) and the sessions restored after a live-update\n" +
      "boot with their state and age. Unclaimed sessions are marked with *: their memory stays reserved\n" +
      "until their owner claims them or `luoctl discard ID` frees them.",
    options: [],
    run: async (ctx) => {
      const r = await withClient(ctx, (c) => c.status({ timeoutMs: QUICK_TIMEOUT_MS }));
      emit(ctx, r, () => formatStatus(r, ctx.io.now(), ctx.style));
      return EXIT_OK;
    },
  },
  {
    raw: "list",
    summary: "List subscribed clients",
    details: "One line per client: id, state (subscribed, preserving, ready), pid, uid, gid, unit, whether it is\nconnected, how long ago it subscribed, and its session during an update.",
    options: [],
    run: async (ctx) => {
      const r = await withClient(ctx, (c) => c.list({ timeoutMs: QUICK_TIMEOUT_MS }));
      emit(ctx, r, () => formatList(r, ctx.io.now()));
      return EXIT_OK;
    },
  },
  {
    raw: "load <kernel>",
    summary: "Verify and load the next kernel (kexec_file_load)",
    details:
      "luoctl opens KERNEL (and --initrd) itself and hands the open files to luod, which verifies the\n" +
      "image (bzImage header, 64-bit, relocatable, optional SHA-256), normalizes the command line\n" +
      "(drops BOOT_IMAGE= and initrd=, removes duplicates: the last one wins) and loads it with\n" +
      "kexec_file_load, the only call that carries the live-update data. A command line without\n" +
      "liveupdate=on (or with kho=off) is refused unless --force. Loading replaces a loaded kernel.\n" +
      "Give the command line with --cmdline, or --reuse-cmdline for the running kernel's /proc/cmdline;\n" +
      "--append adds to either (or stands alone). A value starting with '-' is taken as the value.",
    options: [
      ["--initrd <file>", "initramfs to load with the kernel"],
      ["--cmdline <string>", "the new kernel's command line"],
      ["--reuse-cmdline", "start from the running kernel's command line (/proc/cmdline)"],
      ["--append <string>", "append to the command line (may be repeated)"],
      ["--force", "load even if the command line would leave live update off"],
      ["--sha256 <hex>", "refuse the image unless its SHA-256 is this"],
    ],
    examples: [
      "luoctl load /boot/vmlinuz-7.2.13 --initrd /boot/initrd.img-7.2.13 --reuse-cmdline",
      'luoctl load /boot/vmlinuz --cmdline "root=/dev/vda1 ro kho=on liveupdate=on"',
      "luoctl load /boot/vmlinuz --reuse-cmdline --append liveupdate=on",
    ],
    run: cmdLoad,
  },
  {
    raw: "unload",
    summary: "Unload the kernel luod loaded",
    details: "Unloads the kernel image (kexec_file_load with KEXEC_FILE_UNLOAD). Refused during an update.",
    options: [],
    run: async (ctx) => {
      const r = await withClient(ctx, (c) => c.unload({ timeoutMs: QUICK_TIMEOUT_MS }));
      emit(ctx, r, () => "kernel unloaded");
      return EXIT_OK;
    },
  },
  {
    raw: "check",
    summary: "Preflight checks for a live update (exit 1 when not ready)",
    details:
      "Asks luod whether a live update could run now: /dev/liveupdate present, kexec allowed, lockdown,\n" +
      "a kernel loaded by luod and its command line. Exits 1 when something is not ready.",
    options: [],
    run: async (ctx) => {
      const r = await withClient(ctx, (c) => c.check({ timeoutMs: QUICK_TIMEOUT_MS }));
      emit(ctx, r, () => formatCheck(r));
      return r.ready === true ? EXIT_OK : EXIT_FAILED;
    },
  },
  {
    raw: "kexec",
    summary: "Run the live update: preserve every client's session, then jump",
    details:
      "luod creates a session per client, sends it, and waits until every client is READY (or the\n" +
      "--timeout passes, a client fails or disconnects, or someone runs `luoctl abort`); then it\n" +
      "preserves its manifest, syncs and calls reboot(KEXEC) into the loaded kernel. If anything fails,\n" +
      "the update is aborted, clients resume and the host keeps running: exit 1.\n" +
      "--dry-run goes as far as all clients READY, then aborts on purpose (exit 0).\n" +
      "Progress is shown on stderr: `ready 3/5, waiting: vm-1 vm-7 (12s left)`. Ctrl-C aborts the update.\n" +
      "DUR: 30s, 2m, 500ms, 1m30s, or a number of seconds (default 30s).",
    options: [
      ["--timeout <dur>", "how long clients get to become READY (default 30s)"],
      ["--dry-run", "stop after every client is READY; do not reboot"],
    ],
    run: cmdKexec,
  },
  {
    raw: "abort",
    summary: "Abort the update in progress",
    details: "Aborts an update that is waiting for clients: they get ABORTED and carry on. Too late once luod\nis committing. Succeeds (exit 0) also when no update is running; the output says so.",
    options: [["--reason <text>", "reason passed on to the clients"]],
    run: async (ctx, _args, opts) => {
      const reason = lastValue(opts.reason, "reason");
      const r = await withClient(ctx, (c) => c.abort(reason, { timeoutMs: QUICK_TIMEOUT_MS }));
      emit(ctx, r, () => (r.aborted === true ? "update aborted" : "no update was in progress"));
      return EXIT_OK;
    },
  },
  {
    raw: "discard <id>",
    summary: "Free an unclaimed restored session",
    details: "Finishes the restored session of client ID without handing it to anyone: its preserved memory\nis freed. Only for unclaimed sessions; see `luoctl status`.",
    options: [],
    run: async (ctx, args) => {
      const id = unmark(args[0]!);
      if (!isValidId(id)) throw new UsageError(`invalid id "${id}": 1-48 characters of A-Z a-z 0-9 . _ @ : -`);
      const r = await withClient(ctx, (c) => c.discard(id, { timeoutMs: QUICK_TIMEOUT_MS }));
      emit(ctx, r, () => `discarded the restored session of ${id}`);
      return EXIT_OK;
    },
  },
];

/** A local failure that is not luod's (a file luoctl cannot open): exit 1. */
class LocalError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

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
    const argv = protectOptionValues(args, VALUE_OPTIONS);
    const cli = buildCli(holder, commandWord(argv));
    cli.parse(["luoctl", "luoctl", ...argv], { run: false });
    const opts = cli.options as Record<string, unknown>;
    const command = cli.matchedCommand;
    if (command) helpHint = `luoctl ${command.name} --help`;

    if (opts.help) {
      io.stdout(helpText(command ?? null) + "\n");
      return EXIT_OK;
    }
    if (opts.version) {
      io.stdout(`luoctl ${VERSION}\n`);
      return EXIT_OK;
    }
    if (!command) {
      const first = cli.args[0];
      if (first === "help") return helpCommand(io, cli.args.slice(1));
      throw new UsageError(first === undefined ? "no command given" : `unknown command "${unmark(String(first))}"`);
    }
    ctx = {
      io,
      json: opts.json === true,
      socket: lastValue(opts.socket, "socket") ?? io.env.LUOD_SOCKET ?? DEFAULT_SOCKET,
      style: { color: io.stdoutIsTTY && io.env.NO_COLOR === undefined },
    };
    if (ctx.socket === "") throw new UsageError("--socket needs a path");
    holder.ctx = ctx;
    const code = await cli.runMatchedCommand();
    return typeof code === "number" ? code : EXIT_OK;
  } catch (e) {
    return report(ctx, e, helpHint);
  }
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
  const one = SPECS.filter((s) => s.raw.split(" ")[0] === only);
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

// ---- errors and output ----------------------------------------------------------------------------

function report(ctx: Ctx, e: unknown, helpHint: string): number {
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
  } else if (e instanceof LuoConnectionClosed) {
    code = e.code;
    message = e.message;
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
  if (ctx.json) ctx.io.stdout(JSON.stringify(doc ?? { ok: false, error: { code, message: e instanceof Error ? e.message : message } }) + "\n");
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

function oneLine(s: string): string {
  return s.replace(/\s*[\r\n]+\s*/g, "; ");
}

/** The reply as luoctl prints it with --json: without the transport fields. */
export function stripReply(r: Record<string, unknown>): Record<string, unknown> {
  const { reply: _reply, tag: _tag, fds: _fds, ...rest } = r;
  return rest;
}

function emit(ctx: Ctx, reply: Record<string, unknown>, human: () => string): void {
  if (ctx.json) ctx.io.stdout(JSON.stringify(stripReply(reply)) + "\n");
  else ctx.io.stdout(human() + "\n");
}

/** One quick request: a blocking connection, no event loop (luoctl's startup matters). */
async function withClient<T>(ctx: Ctx, f: (c: LuoRequests) => Promise<T>): Promise<T> {
  const c = await (ctx.io.connectOnce ? ctx.io.connectOnce(ctx.socket) : ctx.io.connect(ctx.socket));
  try {
    return await f(c);
  } finally {
    c.close();
  }
}

// ---- help -----------------------------------------------------------------------------------------

function helpCommand(io: CtlIo, rest: unknown[]): number {
  const name = rest[0] === undefined ? null : unmark(String(rest[0]));
  if (name === null) {
    io.stdout(helpText(null) + "\n");
    return EXIT_OK;
  }
  const spec = SPECS.find((s) => s.raw.split(" ")[0] === name);
  if (!spec) {
    io.stderr(`luoctl: unknown command "${name}"; see "luoctl --help"\n`);
    return EXIT_USAGE;
  }
  io.stdout(specHelp(spec) + "\n");
  return EXIT_OK;
}

function helpText(command: Command | null): string {
  if (command) {
    const spec = SPECS.find((s) => s.raw === command.rawName);
    if (spec) return specHelp(spec);
  }
  const w = Math.max(...SPECS.map((s) => usageOf(s).length));
  const cmds = SPECS.map((s) => `  ${usageOf(s).padEnd(w)}  ${s.summary}`).join("\n");
  return [
    `luoctl ${VERSION} — control luod, the Linux Live Update (LUO) broker`,
    "",
    "Usage: luoctl [OPTIONS] COMMAND [ARGS]",
    "",
    "Commands:",
    cmds,
    "",
    "Options:",
    optionLines(GLOBAL_OPTIONS),
    "",
    `Run "luoctl COMMAND --help" for a command's options.`,
    "",
    EPILOG,
  ].join("\n");
}

function usageOf(s: Spec): string {
  const [name, ...rest] = s.raw.split(" ");
  return [name, ...rest.map((a) => a.replace(/[<>[\]]/g, "").toUpperCase())].join(" ");
}

function specHelp(s: Spec): string {
  const parts = [
    `Usage: luoctl ${usageOf(s)}${s.options.length ? " [OPTIONS]" : ""}`,
    "",
    s.summary + ".",
    "",
    s.details,
  ];
  if (s.options.length) parts.push("", "Options:", optionLines(s.options));
  parts.push("", "Global options:", optionLines(GLOBAL_OPTIONS));
  if (s.examples?.length) parts.push("", "Examples:", ...s.examples.map((e) => `  ${e}`));
  parts.push("", EPILOG);
  return parts.join("\n");
}

function optionLines(opts: [string, string][]): string {
  const show = (raw: string) => raw.replace(/<([^>]+)>/, (_m, v: string) => v.toUpperCase());
  const w = Math.max(...opts.map(([r]) => show(r).length));
  return opts.map(([r, d]) => `  ${show(r).padEnd(w)}  ${d}`).join("\n");
}

// ---- load -----------------------------------------------------------------------------------------

/** The command line luoctl sends with LOAD (luod normalizes and checks it). */
export function buildCmdline(o: { cmdline?: string; reuse: boolean; append: string[] }, procCmdline: () => string): string {
  if (o.cmdline !== undefined && o.reuse) throw new UsageError("--cmdline and --reuse-cmdline exclude each other");
  if (o.cmdline === undefined && !o.reuse && o.append.length === 0) {
    throw new UsageError("load needs a command line: --cmdline STRING, --reuse-cmdline, or --append STRING");
  }
  let base = o.cmdline ?? "";
  if (o.reuse) {
    try {
      base = procCmdline().replace(/\n$/, "").trim();
    } catch (e) {
      throw new LocalError("EIO", `cannot read /proc/cmdline: ${(e as Error).message}`);
    }
  }
  const parts = [base, ...o.append].map((p) => p.trim()).filter((p) => p !== "");
  return parts.join(" ");
}

function openForLoad(path: string, what: string): number {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (e) {
    const code = (e as { code?: string }).code ?? "EIO";
    // node's message: "ENOENT: no such file or directory, open '/x'"
    const why = /^[A-Z0-9]+: ([^,]+)/.exec((e as Error).message)?.[1];
    throw new LocalError(code, `cannot open ${what} ${path}: ${why ? `${why} (${code})` : code}`);
  }
  try {
    if (!fstatSync(fd).isFile()) throw new LocalError("EINVAL", `${what} ${path} is not a regular file`);
  } catch (e) {
    closeSync(fd);
    throw e;
  }
  return fd;
}

async function cmdLoad(ctx: Ctx, args: string[], opts: Record<string, unknown>): Promise<number> {
  const kernel = unmark(args[0]!);
  const initrd = lastValue(opts.initrd, "initrd");
  const shaText = lastValue(opts.sha256, "sha256");
  const sha256 = shaText === undefined ? undefined : parseSha256(shaText);
  const cmdline = buildCmdline(
    { cmdline: lastValue(opts.cmdline, "cmdline"), reuse: opts.reuseCmdline === true, append: optionValues(opts.append, "append") },
    () => ctx.io.readProcCmdline(),
  );
  const fds: number[] = [];
  try {
    const kernelFd = openForLoad(kernel, "kernel");
    fds.push(kernelFd);
    const initrdFd = initrd === undefined ? null : openForLoad(initrd, "initrd");
    if (initrdFd !== null) fds.push(initrdFd);
    const r = await withClient(ctx, (c) =>
      c.load({ kernelFd, initrdFd, cmdline, force: opts.force === true, sha256 }, { timeoutMs: LOAD_TIMEOUT_MS }),
    );
    emit(ctx, r, () => formatLoad(r));
    return EXIT_OK;
  } finally {
    for (const fd of fds) closeSync(fd);
  }
}

// ---- kexec ----------------------------------------------------------------------------------------

/** How often a non-TTY progress line repeats when nothing changed. */
const PROGRESS_REPEAT_MS = 5000;

async function cmdKexec(ctx: Ctx, _args: string[], opts: Record<string, unknown>): Promise<number> {
  const timeoutText = lastValue(opts.timeout, "timeout");
  const timeoutMs = timeoutText === undefined ? undefined : parseDuration(timeoutText);
  if (timeoutMs !== undefined && (timeoutMs < KEXEC_TIMEOUT_MIN_MS || timeoutMs > KEXEC_TIMEOUT_MAX_MS)) {
    throw new UsageError(`--timeout ${timeoutText}: must be from ${formatDuration(KEXEC_TIMEOUT_MIN_MS)} to ${formatDuration(KEXEC_TIMEOUT_MAX_MS)}`);
  }
  const dryRun = opts.dryRun === true;
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
      io.stdout(JSON.stringify(ev) + "\n");
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
    if (ctx.json) io.stdout(JSON.stringify({ ok: true, ...ev }) + "\n");
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
  // If luod never answers (wedged), give up after the READY deadline plus a margin. After
  // REBOOTING there is no limit: sync() before the jump may take long, and success ends us anyway.
  let rebooting = false;
  const watchdog = setTimeout(() => {
    if (!rebooting) client.close();
  }, (timeoutMs ?? KEXEC_DEFAULT_TIMEOUT_MS) + KEXEC_MARGIN_MS);
  try {
    const result = await client.kexec({
      timeoutMs,
      dryRun,
      onProgress,
      onRebooting: (ev) => {
        rebooting = true;
        onRebooting(ev);
      },
    });
    clearLive();
    if (result.rebooting) return EXIT_OK; // the verdict was printed at REBOOTING
    if (ctx.json) io.stdout(JSON.stringify(stripReply(result.reply)) + "\n");
    else {
      io.stdout(formatKexecDone(result.reply) + "\n");
      const t = formatTimings(result.timings);
      if (t) io.stdout(`timings: ${t}\n`);
    }
    return EXIT_OK;
  } catch (e) {
    clearLive();
    if (e instanceof LuoError && !(e instanceof LuoConnectionClosed) && !(e instanceof LuoConnectError)) {
      if (ctx.json) io.stdout(JSON.stringify(e.reply ? stripReply(e.reply) : { ok: false, error: { code: e.code, message: e.message } }) + "\n");
      const what = rebooting ? "the jump failed" : started ? "update aborted" : "cannot start the update";
      io.stderr(`luoctl: ${what}: ${oneLine(e.message)}${e.message.includes(e.code) ? "" : ` (${e.code})`}\n`);
      return EXIT_FAILED;
    }
    if (e instanceof LuoConnectionClosed && e.code === "ESHUTDOWN") {
      throw new LuoError("ETIMEDOUT", "no answer from luod after the READY deadline; check `luoctl status`");
    }
    throw e;
  } finally {
    clearTimeout(watchdog);
    removeInterrupt();
    client.close();
  }
}

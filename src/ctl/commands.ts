// luoctl's commands and options, in --help order: each command's usage, help texts, options and
// handler (the handlers are in cmd-*.ts); its exit codes and environment. main.ts parses against
// this table, help.ts prints it, src/manual/ makes luoctl(8) and the shell completions of it.
import { DEFAULT_SOCKET } from "../wire/limits";
import { EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, type Ctx } from "./context";
import { cmdDiscard, cmdList, cmdStatus } from "./cmd-status";
import { cmdCheck, cmdLoad, cmdUnload } from "./cmd-load";
import { cmdAbort, cmdKexec } from "./cmd-kexec";
import { cmdEvict } from "./cmd-evict";

export interface Spec {
  /** cac raw name, e.g. "load <kernel>". */
  raw: string;
  summary: string;
  details: string;
  options: [string, string][];
  examples?: string[];
  run(ctx: Ctx, args: string[], opts: Record<string, unknown>): Promise<number>;
}

/** The command of a spec: "load" of "load <kernel>". */
export function commandName(spec: Spec): string {
  return spec.raw.split(" ")[0]!;
}

/** What luoctl is: the first line of --help, the NAME of luoctl(8). */
export const PURPOSE = "control luod, the Linux Live Update (LUO) broker";

export const GLOBAL_OPTIONS: [string, string][] = [
  ["--socket <path>", `luod's socket (default: $LUOD_SOCKET or ${DEFAULT_SOCKET})`],
  ["--json", "machine-readable output on stdout (one JSON document; kexec: JSON lines)"],
  [
    "--reply-timeout <dur>",
    "how long to wait for luod's reply (default 15s; load: 2m; kexec: its --timeout plus 1m)",
  ],
  ["-h, --help", "show help (for a command: luoctl COMMAND --help)"],
  ["-v, --version", "show the version, and the version of the luod it reaches"],
];

export const SPECS: readonly Spec[] = [
  {
    raw: "status",
    summary: "Show luod's phase, the loaded kernel, clients and restored sessions",
    details:
      "Shows the phase (idle, preparing, committing), the update in progress, the kernel luod loaded\n" +
      "with its command line, the clients (subscribed/ready) and the sessions restored after a live-update\n" +
      "boot with their state and age. Unclaimed sessions are marked with *: their memory stays reserved\n" +
      "until their owner claims them or `luoctl discard ID` frees them.",
    options: [],
    run: cmdStatus,
  },
  {
    raw: "list",
    summary: "List subscribed clients",
    details:
      "One line per client: id, state (subscribed, preserving, ready), pid, uid, gid, unit, whether it is\n" +
      "connected, how long ago it subscribed, and its session during an update. A subscription outlives its\n" +
      "connection and a luod restart: a client shown not connected is expected back (pid: its last one),\n" +
      "and `luoctl kexec` refuses to leave it behind; `luoctl evict ID` forgets it.",
    options: [],
    run: cmdList,
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
      ["--initrd <file>", "initramfs to load with the kernel (kexec-tools' --ramdisk is an alias)"],
      ["--cmdline <string>", "the new kernel's command line (kexec-tools' --command-line is an alias)"],
      ["--reuse-cmdline", "start from the running kernel's command line (/proc/cmdline)"],
      ["--append <string>", "append to the command line (may be repeated); before a ' -- ' in it, as kexec-tools does"],
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
    run: cmdUnload,
  },
  {
    raw: "check",
    summary: "Preflight checks for a live update (exit 1 when not ready)",
    details:
      "Asks luod whether a live update could run now: /dev/liveupdate present, kexec allowed, lockdown,\n" +
      "the running kernel's LUO ABI, a kernel loaded by luod with the same ABI and its command line\n" +
      "(panic= set), the memory the sessions keep against what the new kernel will have, the image\n" +
      "against KHO's scratch area, every subscribed client connected. With --kernel FILE the checks\n" +
      "are about that image instead (verified like `luoctl load`, never loaded; the command line is\n" +
      "the running one unless given). Exits 1 when something is not ready; warnings do not fail it.",
    options: [
      ["--kernel <file>", "check this image instead of the loaded kernel (it is not loaded)"],
      ["--initrd <file>", "with --kernel: the initramfs that would go with it"],
      ["--cmdline <string>", "with --kernel: the command line it would get"],
      ["--reuse-cmdline", "with --kernel: the running kernel's command line (the default)"],
      ["--append <string>", "with --kernel: append to the command line (may be repeated)"],
    ],
    examples: [
      "luoctl check",
      "luoctl check --kernel /boot/vmlinuz-7.2.14 --initrd /boot/initrd.img-7.2.14",
      "luoctl check --json | jq '.abi'",
    ],
    run: cmdCheck,
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
      "A subscribed client that is not connected (restarting, or not back since luod restarted) would be\n" +
      "left behind: luod refuses to start (ENOTCONN, naming it, exit 1) until it reconnects, `luoctl evict ID`\n" +
      "forgets it, or --force leaves it out of the update.\n" +
      "Progress is shown on stderr: `ready 3/5, waiting: vm-1 vm-7 (12s left)`. Ctrl-C aborts the update.\n" +
      "DUR: 30s, 2m, 500ms, 1m30s, or a number of seconds (default 30s). luoctl waits for luod's\n" +
      "answer for the READY deadline plus a minute (--reply-timeout changes it), then exits 1.",
    options: [
      ["--timeout <dur>", "how long clients get to become READY (default 30s)"],
      ["--dry-run", "stop after every client is READY; do not reboot"],
      ["--force", "leave out subscribed clients that are not connected (their sessions are not carried)"],
    ],
    run: cmdKexec,
  },
  {
    raw: "abort",
    summary: "Abort the update in progress",
    details: "Aborts an update that is waiting for clients: they get ABORTED and carry on. Too late once luod\nis committing. Succeeds (exit 0) also when no update is running; the output says so.",
    options: [["--reason <text>", "reason passed on to the clients"]],
    run: cmdAbort,
  },
  {
    raw: "discard <id>",
    summary: "Free an unclaimed restored session",
    details: "Finishes the restored session of client ID without handing it to anyone: its preserved memory\nis freed. Only for unclaimed sessions; see `luoctl status`.",
    options: [],
    run: cmdDiscard,
  },
  {
    raw: "evict <id>",
    summary: "Remove a subscribed client (closes its connection)",
    details:
      "Drops client ID: luod closes its connection and forgets its subscription; luod's log records who\n" +
      "asked. During an update the update is aborted (its reason names ID and you). A client whose\n" +
      "session is prepared (its memory already preserved) is evicted only with --force: its session is\n" +
      "released, and its memory will not be carried across the next update unless it PREPAREs again.",
    options: [
      ["--force", "evict also a client whose session is prepared (releases that session)"],
      ["--reason <text>", "reason written to luod's log and, during an update, into its abort reason"],
    ],
    examples: ['luoctl evict vm-7 --reason "supervisor hung"'],
    run: cmdEvict,
  },
];

/** luoctl's exit codes (context.ts) and what each means. */
export const EXIT_STATUS: readonly [number, string][] = [
  [EXIT_OK, "success"],
  [EXIT_FAILED, "the operation failed (luod refused, the update was aborted, check: not ready)"],
  [EXIT_USAGE, "usage error (unknown command or option, bad or missing argument)"],
  [
    EXIT_UNREACHABLE,
    "cannot reach luod (no socket, connection refused, permission denied, connection lost, no reply within --reply-timeout, or an invalid reply)",
  ],
];

/** The environment variables luoctl reads. */
export const ENVIRONMENT: readonly [string, string][] = [
  ["LUOD_SOCKET", "socket path when --socket is not given"],
  ["NO_COLOR", "when set, no colours (luoctl colours its output only on a terminal)"],
];

/**
 * kexec-tools' spellings of luoctl's options, so the hands of an operator who knows `kexec -l`
 * work: rewritten to luoctl's own names before parsing (cac's aliases would split the value).
 */
export const OPTION_ALIASES: Readonly<Record<string, string>> = { ramdisk: "initrd", "command-line": "cmdline" };

/** argv with kexec-tools' option spellings (`--ramdisk`, `--command-line`, `=VALUE` forms too) renamed to luoctl's. */
export function renameAliases(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--") return [...out, ...argv.slice(i)];
    const m = /^--([a-z-]+)(=.*)?$/s.exec(arg);
    const to = m ? OPTION_ALIASES[m[1]!] : undefined;
    out.push(to ? `--${to}${m![2] ?? ""}` : arg);
  }
  return out;
}

/**
 * The long names of the options that take a value ("--kernel <file>" → "kernel"), global ones
 * included: their values are protected from mri (args.ts). Derived, so a new option is never missed.
 */
export const VALUE_OPTIONS: ReadonlySet<string> = new Set(
  [...GLOBAL_OPTIONS, ...SPECS.flatMap((s) => s.options)].filter(([raw]) => raw.includes("<")).map(([raw]) => raw.slice(2, raw.indexOf(" "))),
);

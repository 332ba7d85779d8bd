// The man pages luoctl(8), luod(8), luod.conf(5) and luo-qemu(8), made from the tables --help is
// made of (ctl/commands.ts, daemon/settings.ts and config-args.ts, qemu/main.ts): an option in
// --help is in the page because both come from the same row. What only a man page says (the
// DESCRIPTION's prose, FILES, SEE ALSO) is written here.
import { DEFAULT_SOCKET } from "../wire/limits";
import { ENVIRONMENT, EXIT_STATUS as CTL_EXIT_STATUS, GLOBAL_OPTIONS, OPTION_ALIASES, PURPOSE as CTL_PURPOSE, SPECS } from "../ctl/commands";
import { usageOf } from "../ctl/help";
import { DEFAULT_CONFIG_FILE, EXIT_STATUS as LUOD_EXIT_STATUS, PURPOSE as LUOD_PURPOSE, optionRows } from "../daemon/config-args";
import { DEFAULTS, OPTIONS as SETTINGS } from "../daemon/settings";
import { DESCRIPTION as QEMU_DESCRIPTION, EXIT_STATUS as QEMU_EXIT_STATUS, OPTIONS as QEMU_OPTIONS, PURPOSE as QEMU_PURPOSE, optionLabel, USAGE as QEMU_USAGE } from "../qemu/main";
import { bold, entry, example, italic, literal, macro, optionTag, text } from "./roff";

/** What every page's header says: the package's version and the pages' date (YYYY-MM-DD). */
export interface PageMeta {
  version: string;
  date: string;
}

/**
 * The pages' date when SOURCE_DATE_EPOCH is not set: a constant, so that a build does not depend
 * on the clock (reproducible builds). Move it when the pages change.
 */
export const MANUAL_DATE = "2026-12-04";

function header(name: string, section: string, meta: PageMeta, source: string): string[] {
  const title = section === "5" ? "File Formats" : "System Administration";
  return [
    `.\\" ${name}(${section}), generated from ${source} by scripts/build-manual.ts: do not edit.`,
    macro("TH", name.toUpperCase(), section, meta.date, `luo-agent ${meta.version}`, title),
    // no hyphenation (an option split at a line end could not be copied), ragged right
    ".nh",
    ".ad l",
  ];
}

/** NAME: "name \- what it is" (the purpose as --help says it). */
function nameSection(name: string, purpose: string): string[] {
  return [".SH NAME", `${literal(name)} \\- ${text(purpose)}`];
}

function exitStatus(rows: readonly [number, string][]): string[] {
  return [".SH EXIT STATUS", ...rows.map(([code, meaning]) => entry(bold(String(code)), meaning))];
}

function seeAlso(pages: string[]): string[] {
  return [".SH SEE ALSO", pages.map((p) => p.replace(/^(.*)\((\d)\)$/, (_m, n: string, s: string) => `${bold(literal(n))}(${s})`)).join(",\n")];
}

/** A luoctl command as typed: "load KERNEL", the command bold, its arguments italic. */
function commandWords(usage: string): string {
  const [name, ...args] = usage.split(" ");
  return [bold(literal(name!)), ...args.map((a) => italic(literal(a)))].join(" ");
}

/** A luoctl command's synopsis line: `luoctl [OPTIONS] load KERNEL [OPTIONS]`. */
function commandSynopsis(usage: string, hasOptions: boolean): string {
  const options = `[${italic("OPTIONS")}]`;
  return [bold("luoctl"), options, commandWords(usage), ...(hasOptions ? [options] : [])].join(" ");
}

export function luoctlPage(meta: PageMeta): string {
  const aliases = Object.entries(OPTION_ALIASES);
  const lines = [
    ...header("luoctl", "8", meta, "src/ctl/commands.ts"),
    ...nameSection("luoctl", CTL_PURPOSE),
    ".SH SYNOPSIS",
    SPECS.map((s) => commandSynopsis(usageOf(s), s.options.length > 0)).join("\n.br\n"),
    ".br",
    `${bold("luoctl")} ${bold("help")} [${italic("COMMAND")}]`,
    ".SH DESCRIPTION",
    text(
      "luoctl is the administrator's tool for luod(8), the broker of Linux Live Update (LUO): it loads the next kernel, " +
        "checks whether a live update could run, runs it (`luoctl kexec`) and shows who takes part. It talks to luod over " +
        "its unix socket; every command is one request. Output is text for people on stdout (progress and errors on stderr), " +
        "or with --json one JSON document (kexec: JSON lines) whose format is versioned.",
    ),
    ".PP",
    text(
      `Options may come before or after the command. kexec-tools' spellings are accepted: ${aliases.map(([from, to]) => `--${from} for --${to}`).join(", ")}. ` +
        "An option's value is the next word, whatever it is (a value starting with '-' too), or follows an '='.",
    ),
    ".SH COMMANDS",
    ...SPECS.flatMap((s) => [
      `.SS ${commandWords(usageOf(s))}`,
      text(`${s.summary}.`),
      ".PP",
      text(s.details),
      ...(s.options.length ? [".PP", "Options:", ".RS 4", ...s.options.map(([raw, help]) => entry(optionTag(raw), help)), ".RE"] : []),
    ]),
    `.SS ${bold("help")} [${italic("COMMAND")}]`,
    text("Shows luoctl's help, or a command's (the same as `luoctl COMMAND --help`)."),
    ".SH OPTIONS",
    text("These options are accepted by every command."),
    ...GLOBAL_OPTIONS.map(([raw, help]) => entry(optionTag(raw), help)),
    ...exitStatus(CTL_EXIT_STATUS),
    ".SH ENVIRONMENT",
    ...ENVIRONMENT.map(([name, meaning]) => entry(bold(literal(name)), meaning)),
    ".SH FILES",
    entry(italic(literal(DEFAULT_SOCKET)), "luod's socket, unless --socket or $LUOD_SOCKET names another."),
    ".SH EXAMPLES",
    text("A live update: load the next kernel, check, run it."),
    example([
      "luoctl load /boot/vmlinuz-NEW --initrd /boot/initrd.img-NEW --reuse-cmdline",
      "luoctl check",
      "luoctl kexec --timeout 1m",
    ]),
    ".PP",
    text("More, from the commands' help:"),
    example(SPECS.flatMap((s) => s.examples ?? [])),
    ...seeAlso(["luod(8)", "luod.conf(5)", "luo-qemu(8)", "kexec(8)", "systemctl(1)"]),
  ];
  return lines.join("\n") + "\n";
}

export function luodPage(meta: PageMeta): string {
  const lines = [
    ...header("luod", "8", meta, "src/daemon/settings.ts and src/daemon/config-args.ts"),
    ...nameSection("luod", LUOD_PURPOSE),
    ".SH SYNOPSIS",
    `${bold("luod")} [${italic("OPTIONS")}]`,
    ".SH DESCRIPTION",
    text(
      "luod is the userspace broker of Linux Live Update (LUO). Applications (clients, such as luo-qemu(8)) subscribe " +
        "over its unix socket; when an administrator runs `luoctl kexec`, luod gives each client a LUO session, waits " +
        "until every client has preserved its memfds in it, records who owns which session, and jumps into the kernel " +
        "loaded with `luoctl load` (kexec). After the live-update boot luod hands every client its session back.",
    ),
    ".PP",
    text(
      `Settings come from built-in defaults, then the config file (${DEFAULT_CONFIG_FILE}, see luod.conf(5)), then the ` +
        "command line: flags win. luod runs as root, usually as the systemd service luod.service.",
    ),
    ".SH OPTIONS",
    ...optionRows().map(([raw, help]) => entry(optionTag(raw), help)),
    ".SH SIGNALS",
    entry(bold("SIGTERM"), "stop (exit 0); an update in progress is aborted first, unless `systemctl kexec` has already taken it over"),
    entry(bold("SIGINT"), "the same as SIGTERM"),
    entry(bold("SIGHUP"), "read the config file again, with the same flags on top; log what changed (some settings need a restart)"),
    ...exitStatus(LUOD_EXIT_STATUS),
    ".SH ENVIRONMENT",
    entry(bold("NOTIFY_SOCKET"), "set by systemd: luod reports its state with sd_notify"),
    entry(bold("LISTEN_FDS"), "set by systemd: the fds of luod's fd store (sessions carried across a restart or the jump)"),
    ".SH FILES",
    entry(italic(literal(DEFAULT_CONFIG_FILE)), "the config file (luod.conf(5)); it may be absent"),
    entry(italic(literal(DEFAULT_SOCKET)), "the listening socket (socket)"),
    entry(italic(literal(DEFAULTS.stateDir)), "the state directory (state-dir): records that outlive a luod restart within one boot"),
    entry(italic(literal(DEFAULTS.device)), "the LUO device (device)"),
    ".SH EXAMPLES",
    text("In the foreground, members of group kvm may subscribe, with debug messages:"),
    example(["luod --client-group kvm --verbose"]),
    ".PP",
    text("Under systemd, reload the config file:"),
    example(["systemctl reload luod"]),
    ...seeAlso(["luoctl(8)", "luod.conf(5)", "luo-qemu(8)", "systemd.service(5)", "kexec(8)"]),
  ];
  return lines.join("\n") + "\n";
}

export function luodConfPage(meta: PageMeta): string {
  const lines = [
    ...header("luod.conf", "5", meta, "src/daemon/settings.ts"),
    ...nameSection("luod.conf", "configuration file of luod, the Linux Live Update broker"),
    ".SH SYNOPSIS",
    italic(literal(DEFAULT_CONFIG_FILE)),
    ".SH DESCRIPTION",
    text(
      `luod(8) reads ${DEFAULT_CONFIG_FILE} (or the file given with --config) at start and again on SIGHUP. ` +
        "One `key = value` per line; the keys are luod's long options without their dashes; `#` starts a comment; " +
        "a value may be double-quoted (JSON string syntax). An unknown or repeated key, or a bad value, stops luod " +
        "with a line naming the file and line (exit 2). Command-line flags override the file.",
    ),
    ".PP",
    text(
      "The default file may be absent; a file named with --config must exist. When luod runs as root the file must be " +
        "a regular file that belongs to root and is not writable by group or others: whoever can write it decides who may " +
        "run a live update.",
    ),
    ".SH KEYS",
    ...SETTINGS.map((o) => entry(`${bold(literal(o.flag))}${o.arg ? ` = ${italic(literal(o.arg))}` : ` = ${italic("BOOLEAN")}`}`, o.help)),
    ".SH EXAMPLES",
    example(["# " + DEFAULT_CONFIG_FILE, "client-group = kvm", "admin-group = wheel", "max-connections = 512"]),
    ".SH FILES",
    entry(italic(literal(DEFAULT_CONFIG_FILE)), "the file; packages install a commented example that shows every key with its default"),
    ...seeAlso(["luod(8)", "luoctl(8)"]),
  ];
  return lines.join("\n") + "\n";
}

export function luoQemuPage(meta: PageMeta): string {
  const [cmd, ...rest] = QEMU_USAGE.split(" ");
  const lines = [
    ...header("luo-qemu", "8", meta, "src/qemu/main.ts"),
    ...nameSection("luo-qemu", QEMU_PURPOSE),
    ".SH SYNOPSIS",
    [bold(literal(cmd!)), ...rest.map((w) => (/^[a-z-]+$/.test(w) ? bold(literal(w)) : /^[A-Z]/.test(w) ? italic(literal(w)) : literal(w)))].join(" "),
    ".SH DESCRIPTION",
    ...QEMU_DESCRIPTION.flatMap((p, i) => [...(i ? [".PP"] : []), text(p)]),
    ".SH OPTIONS",
    ...QEMU_OPTIONS.map((o) => entry(optionTag(optionLabel(o)), o.help)),
    ...exitStatus(QEMU_EXIT_STATUS),
    ".SH ENVIRONMENT",
    entry(bold("LUOD_SOCKET"), "luod's socket when --socket is not given"),
    ".SH FILES",
    entry(italic(literal("/run/luo-qemu/ID")), "the VM's run directory (QMP and migration sockets), unless --run-dir"),
    entry(italic(literal(DEFAULT_SOCKET)), "luod's socket"),
    ".SH EXAMPLES",
    example(["luo-qemu run vm-1 --memory 4G -- -drive file=/var/lib/vm/vm-1.qcow2,if=virtio -nographic"]),
    ...seeAlso(["luod(8)", "luoctl(8)", "qemu-system-x86_64(1)"]),
  ];
  return lines.join("\n") + "\n";
}

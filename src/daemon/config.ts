// luod's settings: built-in defaults < the config file < command-line flags.
//
// The config file (default /etc/luod.conf, or --config FILE) holds `key = value` lines whose keys
// are the long flags without their dashes; `#` starts a comment; a value may be double-quoted.
//
//   # /etc/luod.conf
//   client-group = kvm
//   admin-group = wheel
//   max-connections = 512
//
// An absent default file is fine; an absent --config file, an unknown key, a repeated key or a bad
// value is an error that names the file and line. Every value, from either source, is checked by
// the same valibot schema. Pure except for reading the file (and its stat): group names are
// resolved to gids by the caller (resolveGroup), so this module stays testable.
import * as v from "valibot";
import cac from "cac";
import { protectOptionValues, lastValue, unmark } from "../cli-options";
import { readFileSync, statSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { DEFAULT_SOCKET } from "../wire/limits";
import { parseDurationMs } from "../duration";

export { DEFAULT_SOCKET };

export const DEFAULT_CONFIG_FILE = "/etc/luod.conf";

/** A startup error: one line, exit code 2. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

export interface Settings {
  socket: string;
  stateDir: string;
  device: string;
  /** Group names or numeric gids, as given; null: not configured. */
  adminGroup: string | null;
  clientGroup: string | null;
  /** The socket file's group; null: the client group, else the admin group, else root. */
  socketGroup: string | null;
  /** The socket file's mode; null: 0660 when the socket has a group, else 0600. */
  socketMode: number | null;
  maxConnections: number;
  /** A connection with no accepted request after this long is closed; 0: never. */
  firstRequestTimeoutMs: number;
  /** Pause between every client READY and the commit (fault drills); 0 in production. */
  commitDelayMs: number;
  /** How the jump is made: luod's own reboot(), `systemctl kexec` with the fd store, or pick (docs/systemd.md). */
  kexecMode: "auto" | "direct" | "systemd";
  verbose: boolean;
}

export type SettingKey = keyof Settings;

// ---------------------------------------------------------------------------------------------
// Value schemas: string in, typed value out

const GROUP_RE = /^(?:\d{1,10}|[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?)$/;
const UNIX_PATH_MAX = 107; // sun_path minus its NUL

const PathValue = v.pipe(
  v.string(),
  v.startsWith("/", "must be an absolute path"),
  v.check((s) => !s.includes("\0"), "must not contain a NUL byte"),
);
const SocketPathValue = v.pipe(PathValue, v.maxBytes(UNIX_PATH_MAX, `must be at most ${UNIX_PATH_MAX} bytes (a unix socket path)`));
const GroupValue = v.pipe(v.string(), v.regex(GROUP_RE, "must be a group name or a numeric gid"));
const ModeValue = v.pipe(
  v.string(),
  v.regex(/^0?[0-7]{3}$/, "must be an octal mode such as 0660"),
  v.transform((s) => parseInt(s, 8)),
);
const CountValue = v.pipe(
  v.string(),
  v.regex(/^\d{1,7}$/, "must be a whole number"),
  v.transform(Number),
  v.minValue(1, "must be at least 1"),
  v.maxValue(65536, "must be at most 65536"),
);
const DurationValue = v.pipe(
  v.string(),
  v.transform(parseDurationMs),
  v.number("must be a duration such as 10s, 500ms or 2m (0: never)"),
  v.check((ms) => ms === 0 || (ms >= 100 && ms <= 86_400_000), "must be 0 (never) or from 100ms to 24h"),
);
const MillisecondsValue = v.pipe(
  v.string(),
  v.regex(/^\d{1,8}$/, "must be a whole number of milliseconds"),
  v.transform(Number),
);
const FlagValue = v.pipe(
  v.picklist(["true", "false", "yes", "no", "on", "off", "1", "0"], "must be true or false"),
  v.transform((s) => ["true", "yes", "on", "1"].includes(s)),
);

interface OptionSpec {
  key: SettingKey;
  flag: string;
  arg?: string;
  schema: v.GenericSchema<string, unknown>;
  help: string;
}

/** Every setting, in --help order. The config file key is `flag`. */
export const OPTIONS: readonly OptionSpec[] = [
  { key: "socket", flag: "socket", arg: "PATH", schema: SocketPathValue, help: `listening socket (default ${DEFAULT_SOCKET})` },
  { key: "stateDir", flag: "state-dir", arg: "DIR", schema: PathValue, help: "state kept across luod restarts within one boot, on a tmpfs (default /run/luod)" },
  { key: "device", flag: "device", arg: "PATH", schema: PathValue, help: "the LUO device (default /dev/liveupdate)" },
  { key: "adminGroup", flag: "admin-group", arg: "GROUP", schema: GroupValue, help: "members may send admin requests (LOAD, KEXEC, …) besides root (default: root only)" },
  { key: "clientGroup", flag: "client-group", arg: "GROUP", schema: GroupValue, help: "members may send client requests (SUBSCRIBE, CLAIM, …) besides root (default: root only)" },
  { key: "socketGroup", flag: "socket-group", arg: "GROUP", schema: GroupValue, help: "group of the socket file (default: the client group, else the admin group, else root)" },
  { key: "socketMode", flag: "socket-mode", arg: "OCTAL", schema: ModeValue, help: "mode of the socket file (default 0660 when it has a group, else 0600)" },
  { key: "maxConnections", flag: "max-connections", arg: "N", schema: CountValue, help: "connections beyond this are closed at once; root gets 8 more (default 256)" },
  { key: "firstRequestTimeoutMs", flag: "first-request-timeout", arg: "DURATION", schema: DurationValue, help: "close a connection that has no request accepted within this time, 0 never (default 10s)" },
  { key: "commitDelayMs", flag: "commit-delay", arg: "MS", schema: MillisecondsValue, help: "wait between every client READY and the commit, for fault drills (default 0)" },
  { key: "kexecMode", flag: "kexec-mode", arg: "MODE", schema: v.picklist(["auto", "direct", "systemd"], "must be auto, direct or systemd"), help: "direct: luod calls reboot(KEXEC); systemd: the fd store and `systemctl kexec`; auto: systemd when run by systemd >= 261 with an fd store (default auto)" },
  { key: "verbose", flag: "verbose", schema: FlagValue, help: "log debug messages" },
];

export const DEFAULTS: Readonly<Settings> = {
  socket: DEFAULT_SOCKET,
  stateDir: "/run/luod",
  device: "/dev/liveupdate",
  adminGroup: null,
  clientGroup: null,
  socketGroup: null,
  socketMode: null,
  maxConnections: 256,
  firstRequestTimeoutMs: 10_000,
  commitDelayMs: 0,
  kexecMode: "auto",
  verbose: false,
};

const BY_FLAG = new Map(OPTIONS.map((o) => [o.flag, o]));

function checkValue(spec: OptionSpec, raw: string, where: string): unknown {
  const r = v.safeParse(spec.schema, raw);
  if (r.success) return r.output;
  throw new ConfigError(`${where}${spec.flag}: ${JSON.stringify(raw)} ${r.issues[0].message}`);
}

// ---------------------------------------------------------------------------------------------
// The config file

/** Parses config file text into settings; `name` prefixes error messages ("file:line: "). */
export function parseConfigText(text: string, name: string): Partial<Settings> {
  const out: Partial<Record<SettingKey, unknown>> = {};
  const seen = new Map<string, number>();
  text.split("\n").forEach((raw, i) => {
    const where = `${name}:${i + 1}: `;
    const line = stripComment(raw, where).trim();
    if (line === "") return;
    const m = /^([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(.*)$/.exec(line);
    if (!m) throw new ConfigError(`${where}expected "key = value", got ${JSON.stringify(line.slice(0, 60))}`);
    const key = m[1]!;
    const spec = BY_FLAG.get(key) ?? BY_FLAG.get(key.replace(/_/g, "-"));
    if (!spec) throw new ConfigError(`${where}unknown key "${key}" (known: ${OPTIONS.map((o) => o.flag).join(", ")})`);
    if (seen.has(spec.flag)) throw new ConfigError(`${where}"${spec.flag}" was already set on line ${seen.get(spec.flag)}`);
    seen.set(spec.flag, i + 1);
    out[spec.key] = checkValue(spec, unquote(m[2]!.trim(), where), where);
  });
  return out as Partial<Settings>;
}

function stripComment(line: string, where: string): string {
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c === '"') quoted = !quoted;
    else if (c === "\\" && quoted) i++;
    else if (c === "#" && !quoted) return line.slice(0, i);
  }
  if (quoted) throw new ConfigError(`${where}unterminated quoted value`);
  return line;
}

function unquote(value: string, where: string): string {
  if (!value.startsWith('"')) return value;
  try {
    const s: unknown = JSON.parse(value);
    if (typeof s === "string") return s;
  } catch {
    // fall through
  }
  throw new ConfigError(`${where}bad quoted value ${value.slice(0, 60)}`);
}

/**
 * Reads the config file. `explicit`: given with --config, so it must exist; the default file may
 * be absent. When luod runs as root the file must belong to root and not be writable by others:
 * whoever can write it decides who may send KEXEC.
 */
export function readConfigFile(path: string, explicit: boolean, opts: { enforceOwner?: boolean } = {}): Partial<Settings> {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === "ENOENT" && !explicit) return {};
    throw new ConfigError(`cannot read config file ${path}: ${code ?? (e as Error).message}`);
  }
  if (opts.enforceOwner ?? process.getuid?.() === 0) {
    const st = statSync(path);
    if (st.isFile() && (st.uid !== 0 || (st.mode & 0o022) !== 0))
      throw new ConfigError(`config file ${path} must belong to root and not be writable by group or others (uid ${st.uid}, mode 0${(st.mode & 0o777).toString(8)})`);
  }
  return parseConfigText(text, path);
}

// ---------------------------------------------------------------------------------------------
// The command line

export type ParsedArgs =
  | { kind: "help" }
  | { kind: "version" }
  | { kind: "run"; configFile: string; explicitConfig: boolean; flags: Partial<Settings> };

/**
 * getopt_long style: `--key value`, `--key=value`, `--verbose` (or `--verbose=false`), `-h`,
 * `--help`, `-v`, `--version`, `--config FILE`. Throws ConfigError for anything else.
 */
export function parseArgs(args: readonly string[]): ParsedArgs {
  const cli = cac("luod");
  cli.option("--config <file>", "config file");
  for (const o of OPTIONS) cli.option(o.arg ? `--${o.flag} <${o.arg}>` : `--${o.flag}`, o.help, o.arg ? { type: [String] } : undefined);
  cli.option("-h, --help", "this help").option("-v, --version", "the version");
  const valueFlags = new Set(["config", ...OPTIONS.filter((o) => o.arg).map((o) => o.flag)]);
  // `--verbose=no`: mri would read the switch as set and "no" as an argument; check it here
  const switches = new Map(OPTIONS.filter((o) => !o.arg).map((o) => [o.flag, o]));
  const words = args.flatMap((arg) => {
    const m = /^--([a-z-]+)=(.*)$/s.exec(arg);
    const spec = m && switches.get(m[1]!);
    if (!spec) return [arg];
    return checkValue(spec, m[2]!, "--") === true ? [`--${spec.flag}`] : [];
  });
  let parsed: ReturnType<typeof cli.parse>;
  try {
    parsed = cli.parse(["luod", "luod", ...protectOptionValues(words, valueFlags)], { run: false });
  } catch (e) {
    throw new ConfigError(`${(e as Error).message} (see luod --help)`);
  }
  const o = parsed.options as Record<string, unknown>;
  if (o.help) return { kind: "help" };
  if (o.version) return { kind: "version" };
  if (parsed.args.length) throw new ConfigError(`unexpected argument ${JSON.stringify(unmark(String(parsed.args[0])))} (see luod --help)`);
  // without subcommands cac accepts any option: refuse the unknown ones (a typo must not be ignored)
  const known = new Set(["--", "config", "help", "h", "version", "v", ...OPTIONS.map((x) => camelCase(x.flag))]);
  const unknown = Object.keys(o).find((k) => !known.has(k));
  if (unknown) throw new ConfigError(`unknown option ${unknown.length > 1 ? "--" : "-"}${kebabCase(unknown)} (see luod --help)`);

  const flags: Partial<Record<SettingKey, unknown>> = {};
  for (const spec of OPTIONS) {
    const raw = o[camelCase(spec.flag)];
    if (raw === undefined) continue;
    const value = spec.arg === undefined ? "true" : valueOf(raw, spec.flag, "a value");
    if (value !== undefined) flags[spec.key] = checkValue(spec, value, "--");
  }
  const config = valueOf(o.config, "config", "a file");
  if (config === "") throw new ConfigError("--config needs a file");
  return {
    kind: "run",
    configFile: config ?? DEFAULT_CONFIG_FILE,
    explicitConfig: config !== undefined,
    flags: flags as Partial<Settings>,
  };
}

/** The last value of a value-taking option; a missing value is a ConfigError. */
function valueOf(raw: unknown, flag: string, what: string): string | undefined {
  try {
    return lastValue(raw, flag);
  } catch {
    throw new ConfigError(`--${flag} needs ${what}`);
  }
}

const camelCase = (flag: string) => flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
const kebabCase = (key: string) => key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

/** Defaults < config file < flags. */
export function mergeSettings(file: Partial<Settings>, flags: Partial<Settings>): Settings {
  return { ...DEFAULTS, ...file, ...flags };
}

export function helpText(version: string): string {
  const rows: [string, string][] = [
    ["--config FILE", `config file of key = value lines (default ${DEFAULT_CONFIG_FILE}, may be absent)`],
    ...OPTIONS.map((o): [string, string] => [`--${o.flag}${o.arg ? ` ${o.arg}` : ""}`, o.help]),
    ["-h, --help", "this help"],
    ["-v, --version", "the version"],
  ];
  const width = Math.max(...rows.map((r) => r[0].length));
  return [
    `luod ${version}: the Linux Live Update broker; keeps applications' memfds across a kexec (LUO).`,
    "",
    "usage: luod [options]",
    "",
    ...rows.map(([a, b]) => `  ${a.padEnd(width)}  ${b}`),
    "",
    "Flags override the config file. Exit codes: 0 stopped by SIGTERM/SIGINT, 1 runtime error, 2 bad",
    "options or config.",
  ].join("\n");
}

// ---------------------------------------------------------------------------------------------
// Groups

/**
 * A group name (from /etc/group, then NSS through getent) or a numeric gid. Throws ConfigError
 * for an unknown name. `groupFile` is for tests.
 */
export function resolveGroup(group: string, opts: { groupFile?: string; useGetent?: boolean } = {}): number {
  if (/^\d+$/.test(group)) return Number(group);
  const fromFile = (text: string) => {
    const line = text.split("\n").find((l) => l.split(":")[0] === group);
    const gid = line?.split(":")[2];
    return gid !== undefined && /^\d+$/.test(gid) ? Number(gid) : null;
  };
  try {
    const gid = fromFile(readFileSync(opts.groupFile ?? "/etc/group", "utf8"));
    if (gid !== null) return gid;
  } catch {
    // no readable group file: try NSS
  }
  if (opts.useGetent ?? true) {
    try {
      const r = spawnSync("getent", ["group", group], { encoding: "utf8", timeout: 5000 });
      if (r.status === 0) {
        const gid = fromFile(r.stdout);
        if (gid !== null) return gid;
      }
    } catch {
      // no getent
    }
  }
  throw new ConfigError(`unknown group "${group}"`);
}

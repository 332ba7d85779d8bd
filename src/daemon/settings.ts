// luod's settings: what each one is (type, flag and config-file key, value schema, help text), their
// built-in defaults, and the precedence defaults < config file < flags. Every value, from either
// source, is checked by the same valibot schema (checkValue).
import * as v from "valibot";
import { DEFAULT_SOCKET } from "../wire/limits";
import { parseDurationMs } from "../duration";

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
  /** Connections one uid may hold; null: all but a sixteenth of maxConnections (server.ts, perUidDefault). */
  maxConnectionsPerUid: number | null;
  /** A connection with no accepted request after this long is closed; 0: never. */
  firstRequestTimeoutMs: number;
  /** Pause between every client READY and the commit (fault drills); 0 in production. */
  commitDelayMs: number;
  /** How the jump is made: luod's own reboot(), `systemctl kexec` with the fd store, or pick (docs/systemd.md). */
  kexecMode: "auto" | "direct" | "systemd";
  /** The running kernel's image, when it is not where distributions put it (abi-gate.ts); null: look there only. */
  runningImage: string | null;
  /** Prometheus metrics for node_exporter's textfile collector are written here (metrics-file.ts); null: none. */
  metricsFile: string | null;
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

export interface OptionSpec {
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
  { key: "maxConnections", flag: "max-connections", arg: "N", schema: CountValue, help: "connections beyond this are closed at once; admins get 8 more, for admin requests only (default 256)" },
  { key: "maxConnectionsPerUid", flag: "max-connections-per-uid", arg: "N", schema: CountValue, help: "connections one uid may hold (default: max-connections minus a sixteenth, 240 of 256)" },
  { key: "firstRequestTimeoutMs", flag: "first-request-timeout", arg: "DURATION", schema: DurationValue, help: "close a connection that has no request accepted within this time, 0 never (default 10s)" },
  { key: "commitDelayMs", flag: "commit-delay", arg: "MS", schema: MillisecondsValue, help: "wait between every client READY and the commit, for fault drills (default 0)" },
  { key: "kexecMode", flag: "kexec-mode", arg: "MODE", schema: v.picklist(["auto", "direct", "systemd"], "must be auto, direct or systemd"), help: "direct: luod calls reboot(KEXEC); systemd: the fd store and `systemctl kexec`; auto: systemd when run by systemd >= 261 with an fd store (default auto)" },
  { key: "runningImage", flag: "running-image", arg: "PATH", schema: PathValue, help: "the running kernel's image, if not at /boot/vmlinuz-$(uname -r) or /usr/lib/modules/$(uname -r)/vmlinuz: read for its LUO ABI, used only if its banner is /proc/version" },
  { key: "metricsFile", flag: "metrics-file", arg: "PATH", schema: PathValue, help: "write Prometheus metrics to this file at start, on changes and at stop, for node_exporter's textfile collector, e.g. /var/lib/prometheus/node-exporter/luod.prom; its directory must exist (default: none)" },
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
  maxConnectionsPerUid: null,
  firstRequestTimeoutMs: 10_000,
  commitDelayMs: 0,
  kexecMode: "auto",
  runningImage: null,
  metricsFile: null,
  verbose: false,
};

/** Checks a value given for `spec` (from the file or a flag); `where` prefixes the error. */
export function checkValue(spec: OptionSpec, raw: string, where: string): unknown {
  const r = v.safeParse(spec.schema, raw);
  if (r.success) return r.output;
  throw new ConfigError(`${where}${spec.flag}: ${JSON.stringify(raw)} ${r.issues[0].message}`);
}

/** Defaults < config file < flags. */
export function mergeSettings(file: Partial<Settings>, flags: Partial<Settings>): Settings {
  return { ...DEFAULTS, ...file, ...flags };
}

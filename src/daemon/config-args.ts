// luod's command line (getopt_long style, through cac) and its --help text.
import cac from "cac";
import { protectOptionValues, lastValue, unmark } from "../cli-options";
import { columns } from "../help-format";
import { ConfigError, OPTIONS, checkValue, type SettingKey, type Settings } from "./settings";

export const DEFAULT_CONFIG_FILE = "/etc/luod.conf";

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
  cli.option("-h, --help", "this help").option("-v, --version", "the version").option("-V", "the version (as kexec-tools and systemctl spell it)");
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
  if (o.version || o.V) return { kind: "version" };
  if (parsed.args.length) throw new ConfigError(`unexpected argument ${JSON.stringify(unmark(String(parsed.args[0])))} (see luod --help)`);
  // without subcommands cac accepts any option: refuse the unknown ones (a typo must not be ignored)
  const known = new Set(["--", "config", "help", "h", "version", "v", "V", ...OPTIONS.map((x) => camelCase(x.flag))]);
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

/** What luod is: the first line of --help, the NAME of luod(8). */
export const PURPOSE = "the Linux Live Update broker; keeps applications' memfds across a kexec (LUO)";

/** luod's exit codes (luodMain returns them) and what each means. */
export const EXIT = { OK: 0, FAILED: 1, CONFIG: 2 } as const;
export const EXIT_STATUS: readonly [number, string][] = [
  [EXIT.OK, "stopped by SIGTERM or SIGINT"],
  [EXIT.FAILED, "a runtime error (the socket is taken, something other than a socket is at its path, a directory others can change, …)"],
  [EXIT.CONFIG, "bad options or config"],
];

/** Every option of luod with what it does, in --help order: --config, the settings, help and version. */
export function optionRows(): [string, string][] {
  return [
    ["--config FILE", `config file of key = value lines (default ${DEFAULT_CONFIG_FILE}, may be absent)`],
    ...OPTIONS.map((o): [string, string] => [`--${o.flag}${o.arg ? ` ${o.arg}` : ""}`, o.help]),
    ["-h, --help", "this help"],
    ["-v, -V, --version", "the version"],
  ];
}

export function helpText(version: string): string {
  return [
    `luod ${version}: ${PURPOSE}.`,
    "",
    "usage: luod [options]",
    "",
    columns(optionRows()),
    "",
    "Flags override the config file.",
    "",
    "Exit status:",
    columns(EXIT_STATUS.map(([code, meaning]) => [String(code), meaning]), 100),
  ].join("\n");
}

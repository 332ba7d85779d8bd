// luod's configuration: built-in defaults < the config file < command-line flags. Group names are
// resolved to gids separately (resolveGroup), so that parsing stays pure and testable.
//
//   settings.ts     every setting: type, flag/key, value schema, help, default; the precedence
//   config-file.ts  the config file (/etc/luod.conf): `key = value` lines, its owner check
//   config-args.ts  the command line and --help
//   groups.ts       group name -> gid
//
// This module is what luod's start-up imports: the parts, in one place.
export { DEFAULT_SOCKET } from "../wire/limits";
export { ConfigError, DEFAULTS, OPTIONS, mergeSettings, type OptionSpec, type SettingKey, type Settings } from "./settings";
export { parseConfigText, readConfigFile } from "./config-file";
export { DEFAULT_CONFIG_FILE, EXIT, helpText, parseArgs, type ParsedArgs } from "./config-args";
export { resolveGroup } from "./groups";

import type { KexecMode } from "./kexec-mode";

/** The settings luod runs with: the merged Settings with group names resolved (main.ts toConfig). */
export interface DaemonConfig {
  socket: string;
  stateDir: string;
  device: string;
  adminGid: number | null;
  clientGid: number | null;
  /** Group of the socket file (null: root's). */
  socketGid: number | null;
  socketMode: number;
  maxConnections: number;
  /** Connections one uid may hold; null/absent: the default of server.ts (perUidDefault). */
  maxConnectionsPerUid?: number | null;
  /** A connection with no accepted request after this long is closed; 0: never. */
  firstRequestTimeoutMs: number;
  /** Pause between every client READY and the commit (fault drills); 0 in production. */
  commitDelayMs: number;
  /** direct, systemd or auto (default): docs/systemd.md */
  kexecMode?: KexecMode;
  /** The running kernel's image (--running-image), tried before the distribution's paths. */
  runningImage?: string | null;
  /** Where the Prometheus metrics go (--metrics-file); null/absent: nowhere. */
  metricsFile?: string | null;
  verbose: boolean;
}

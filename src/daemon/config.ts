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
export { DEFAULT_CONFIG_FILE, helpText, parseArgs, type ParsedArgs } from "./config-args";
export { resolveGroup } from "./groups";

// The example /etc/luod.conf: every key of luod's settings table commented out, with its
// built-in default and what it means (the same help as `luod --help` and luod.conf(5)). Packages
// ship it as a conffile. A line uncommented as it is keeps the default, except the few settings
// unset by default, which show an example value.
import { paragraph } from "../help-format";
import { DEFAULT_CONFIG_FILE } from "../daemon/config-args";
import { DEFAULTS, OPTIONS, type OptionSpec, type SettingKey } from "../daemon/settings";

/** For a setting that is unset by default: an example value, shown as such. */
const EXAMPLES: Partial<Record<SettingKey, string>> = {
  adminGroup: "wheel",
  clientGroup: "kvm",
  socketGroup: "kvm",
  socketMode: "0660",
  maxConnectionsPerUid: "240",
  runningImage: "/boot/vmlinuz",
  metricsFile: "/var/lib/prometheus/node-exporter/luod.prom",
};

/** A default as the config file spells it (durations in seconds when whole). */
function fileValue(spec: OptionSpec): string | null {
  const value = DEFAULTS[spec.key];
  if (value === null) return null;
  if (typeof value === "number" && spec.arg === "DURATION") return value % 1000 === 0 ? `${value / 1000}s` : `${value}ms`;
  return String(value);
}

/** The text of the example config file; `version` is luo-agent's. */
export function exampleConfig(version: string): string {
  const lines = [
    `# ${DEFAULT_CONFIG_FILE}: luod's configuration, read at start and on SIGHUP (luod.conf(5)).`,
    `# Example from luo-agent ${version}: every key is commented out with its built-in default;`,
    "# uncomment a line and change the value to use it. `key = value`; # starts a comment; a value",
    "# may be double-quoted. luod's command-line flags override this file.",
  ];
  for (const spec of OPTIONS) {
    const value = fileValue(spec);
    const example = EXAMPLES[spec.key];
    if (value === null && example === undefined) throw new Error(`luod.conf example: ${spec.flag} has no default and no example`);
    const help = paragraph(spec.help, 98).replace(/^/gm, "# ");
    lines.push("", help, value === null ? `#${spec.flag} = ${example}    # an example; unset, the default above applies` : `#${spec.flag} = ${value}`);
  }
  return lines.join("\n") + "\n";
}

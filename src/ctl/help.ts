// luoctl's help: the overview (`luoctl --help`) and one command's page (`luoctl COMMAND --help`,
// `luoctl help COMMAND`), both made from the command table.
import type { Command } from "cac";
import { VERSION } from "../version";
import { unmark } from "./args";
import { columns } from "../help-format";
import { ENVIRONMENT, EXIT_STATUS, GLOBAL_OPTIONS, PURPOSE, SPECS, commandName, type Spec } from "./commands";
import { EXIT_OK, EXIT_USAGE } from "./context";
import type { CtlIo } from "./io";

const EPILOG = [
  "Exit status:",
  columns(EXIT_STATUS.map(([code, meaning]) => [String(code), meaning]), 100),
  "",
  "Environment:",
  columns(ENVIRONMENT),
].join("\n");

export function helpCommand(io: CtlIo, rest: unknown[]): number {
  const name = rest[0] === undefined ? null : unmark(String(rest[0]));
  if (name === null) {
    io.stdout(helpText(null) + "\n");
    return EXIT_OK;
  }
  const spec = SPECS.find((s) => commandName(s) === name);
  if (!spec) {
    io.stderr(`luoctl: unknown command "${name}"; see "luoctl --help"\n`);
    return EXIT_USAGE;
  }
  io.stdout(specHelp(spec) + "\n");
  return EXIT_OK;
}

export function helpText(command: Command | null): string {
  if (command) {
    const spec = SPECS.find((s) => s.raw === command.rawName);
    if (spec) return specHelp(spec);
  }
  const w = Math.max(...SPECS.map((s) => usageOf(s).length));
  const cmds = SPECS.map((s) => `  ${usageOf(s).padEnd(w)}  ${s.summary}`).join("\n");
  return [
    `luoctl ${VERSION} — ${PURPOSE}`,
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

/** A command's usage as help shows it: "load KERNEL" of "load <kernel>". */
export function usageOf(s: Spec): string {
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
  return columns(opts.map(([raw, d]) => [raw.replace(/<([^>]+)>/, (_m, v: string) => v.toUpperCase()), d]));
}

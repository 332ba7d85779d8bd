// luoctl's help: the overview (`luoctl --help`) and one command's page (`luoctl COMMAND --help`,
// `luoctl help COMMAND`), both made from the command table.
import type { Command } from "cac";
import { VERSION } from "../version";
import { unmark } from "./args";
import { GLOBAL_OPTIONS, SPECS, commandName, type Spec } from "./commands";
import { EXIT_OK, EXIT_USAGE } from "./context";
import type { CtlIo } from "./io";

const EPILOG = `Exit status:
  0  success
  1  the operation failed (luod refused, the update was aborted, check: not ready)
  2  usage error (unknown command or option, bad or missing argument)
  3  cannot reach luod (no socket, connection refused, permission denied, connection lost,
     no reply within --reply-timeout, or an invalid reply)

Environment:
  LUOD_SOCKET  socket path when --socket is not given`;

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

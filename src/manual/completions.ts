// bash and zsh completions of luoctl and luod, made from the tables --help is made of
// (ctl/commands.ts, daemon/settings.ts and config-args.ts): every command, every option (per
// command where the table says so), and the values that can be completed: files for --socket,
// the kernel and the initrd, directories, groups, a setting's fixed choices, and the ids of
// `discard` and `evict`, asked of the luod that luoctl reaches (quietly: nothing when it does not
// answer within 2 s).
import { GLOBAL_OPTIONS, OPTION_ALIASES, SPECS, commandName } from "../ctl/commands";
import { DEFAULT_CONFIG_FILE, optionRows } from "../daemon/config-args";
import { OPTIONS as SETTINGS } from "../daemon/settings";

/** What can complete an option's value or an argument. */
type Value = "files" | "dirs" | "groups" | "restored-ids" | "client-ids" | { words: readonly string[] } | "free";

interface CompOption {
  /** "--initrd", or "-h" */
  name: string;
  help: string;
  /** Absent: a switch. */
  value?: Value;
  /** The value's name for zsh's messages ("file"). */
  valueName?: string;
}

interface CompCommand {
  name: string;
  summary: string;
  options: CompOption[];
  /** What completes its positional argument, if it takes one. */
  argument?: { name: string; value: Value };
}

/** A placeholder of the tables ("<file>", "PATH", "DIR", "GROUP") to what completes it. */
function valueOf(placeholder: string): Value {
  const p = placeholder.replace(/[<>]/g, "").toLowerCase();
  if (["file", "path", "kernel"].includes(p)) return "files";
  if (p === "dir") return "dirs";
  if (p === "group") return "groups";
  return "free";
}

/** The options of a table row ("-h, --help", "--initrd <file>", "--config FILE"). */
function optionsOf(raw: string, help: string): CompOption[] {
  return raw.split(", ").map((alt) => {
    const [name, placeholder] = alt.split(" ");
    return placeholder === undefined ? { name: name!, help } : { name: name!, help, value: valueOf(placeholder), valueName: placeholder.replace(/[<>]/g, "").toLowerCase() };
  });
}

/** A row's options and their kexec-tools spellings (OPTION_ALIASES): `--ramdisk` where `--initrd` is. */
function withAliases(opts: CompOption[]): CompOption[] {
  return opts.flatMap((o) => {
    const aliases = Object.entries(OPTION_ALIASES).filter(([, to]) => `--${to}` === o.name);
    return [o, ...aliases.map(([from]) => ({ ...o, name: `--${from}`, help: `kexec-tools' spelling of ${o.name}` }))];
  });
}

/** Where the id of a command that takes one comes from: restored sessions or subscribed clients. */
const ID_SOURCES: Readonly<Record<string, Value>> = { discard: "restored-ids", evict: "client-ids" };

export function luoctlModel(): { global: CompOption[]; commands: CompCommand[] } {
  const global = GLOBAL_OPTIONS.flatMap(([raw, help]) => optionsOf(raw, help));
  const commands = SPECS.map((s): CompCommand => {
    const name = commandName(s);
    const arg = s.raw.split(" ")[1];
    let argument: CompCommand["argument"];
    if (arg !== undefined) {
      const argName = arg.replace(/[<>[\]]/g, "");
      const value = argName === "id" ? ID_SOURCES[name] : valueOf(argName);
      if (value === undefined) throw new Error(`completions: where do the ids of "luoctl ${name}" come from? (ID_SOURCES)`);
      argument = { name: argName, value };
    }
    return { name, summary: s.summary, options: withAliases(s.options.flatMap(([raw, help]) => optionsOf(raw, help))), argument };
  });
  return { global, commands };
}

export function luodModel(): CompOption[] {
  return optionRows().flatMap(([raw, help]) => {
    const opts = optionsOf(raw, help);
    const setting = SETTINGS.find((o) => `--${o.flag}` === opts[0]!.name);
    // a setting with fixed choices (valibot's picklist) completes them
    const choices = (setting?.schema as { type?: string; options?: readonly string[] } | undefined)?.type === "picklist" ? (setting!.schema as unknown as { options: readonly string[] }).options : null;
    return choices ? opts.map((o) => (o.value === undefined ? o : { ...o, value: { words: choices } })) : opts;
  });
}

// ---------------------------------------------------------------------------------------------
// The ids of discard and evict, in shell that bash and zsh share: luoctl --json (STATUS's
// restored[] and LIST's clients[], docs/protocol.md), one object per line, each one's "id"

const IDS_COMMENT = [
  "# _luoctl_ids restored|clients: the unclaimed restored sessions' or the subscribed clients' ids,",
  "# from the luod that luoctl reaches (the --socket on the line, if any); nothing when it does not answer",
];

/** luoctl asked quietly, at the socket of the array variable `socketVar`, within 2 s. */
const askLuoctl = (socketVar: string, command: string) => `command luoctl "\${${socketVar}[@]}" --json --reply-timeout 2s ${command} 2>/dev/null`;

/** $json set to the objects of STATUS's restored[] (none: return `status`). */
const restoredOnly = (socketVar: string, status: string) => [
  `    json=$(${askLuoctl(socketVar, "status")}) || return ${status}`,
  `    [[ $json == *'"restored":['* ]] || return ${status}`,
  `    json=\${json#*'"restored":['}`,
  "    json=${json%%\\]*}",
];

const ID_OF_EACH_LINE = `sed -n 's/.*"id":"\\([^"]*\\)".*/\\1/p'`;
const ALL_IDS = `tr '{' '\\n' | ${ID_OF_EACH_LINE}`;
const UNCLAIMED_IDS = `tr '{' '\\n' | grep '"state":"unclaimed"' | ${ID_OF_EACH_LINE}`;

// ---------------------------------------------------------------------------------------------
// bash

const GENERATED = (what: string, version: string) =>
  [`# ${what} (luo-agent ${version}), generated from the --help tables by scripts/build-manual.ts: do not edit.`];

/** Words for a bash `case` pattern: `--socket|--initrd`. */
const casePattern = (names: string[]) => names.join("|");

/** The bash lines that complete a value of kind `v` into COMPREPLY. */
function bashValue(v: Value, fn: string): string {
  if (v === "files") return `${fn}_files`;
  if (v === "dirs") return `${fn}_files -d`;
  if (v === "groups") return `COMPREPLY=($(compgen -g -- "$cur"))`;
  if (v === "restored-ids") return `COMPREPLY=($(compgen -W "$(${fn}_ids restored)" -- "$cur"))`;
  if (v === "client-ids") return `COMPREPLY=($(compgen -W "$(${fn}_ids clients)" -- "$cur"))`;
  if (v === "free") return "return 0";
  return `COMPREPLY=($(compgen -W "${v.words.join(" ")}" -- "$cur"))`;
}

/** `case $prev in` arms for options that take a value; the value completes, then return. */
function bashValueArms(opts: CompOption[], fn: string): string[] {
  const byValue = new Map<string, { v: Value; names: string[] }>();
  for (const o of opts) {
    if (o.value === undefined) continue;
    const key = JSON.stringify(o.value);
    const entry = byValue.get(key) ?? { v: o.value, names: [] };
    if (!entry.names.includes(o.name)) entry.names.push(o.name);
    byValue.set(key, entry);
  }
  // a value to type (a duration, a command line): nothing to offer, and no option either
  return [...byValue.values()].map(({ v, names }) => `    ${casePattern(names)}) ${v === "free" ? "" : `${bashValue(v, fn)}; `}return 0 ;;`);
}

/** Shared helpers: `cur`/`prev` with `--opt=value` split by COMP_WORDBREAKS, and file completion. */
function bashPrologue(fn: string): string[] {
  return [
    `${fn}_files() {`,
    "  # bash-completion's _filedir when it is there (quoting, ~), else compgen",
    "  if declare -F _filedir >/dev/null; then _filedir \"$@\"; return; fi",
    "  local IFS=$'\\n'",
    "  compopt -o filenames 2>/dev/null",
    '  if [[ $1 == -d ]]; then COMPREPLY=($(compgen -d -- "$cur")); else COMPREPLY=($(compgen -f -- "$cur")); fi',
    "}",
  ];
}

/** The start of a completion function: cur and prev, `--opt=value` (split at "=" by bash) seen through. */
const BASH_CUR_PREV = [
  '  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}',
  "  # `--socket=/ru`: bash splits it into --socket, =, /ru",
  '  if [[ $cur == = ]]; then cur=; elif [[ $prev == = ]]; then prev=${COMP_WORDS[COMP_CWORD-2]}; fi',
];

export function bashLuoctl(version: string): string {
  const { global, commands } = luoctlModel();
  const all = [...global, ...commands.flatMap((c) => c.options)];
  const valueNames = [...new Set(all.filter((o) => o.value !== undefined).map((o) => o.name))];
  const names = (opts: CompOption[]) => opts.map((o) => o.name).join(" ");
  const lines = [
    ...GENERATED("bash completion for luoctl", version),
    "",
    ...bashPrologue("_luoctl"),
    "",
    ...IDS_COMMENT,
    "_luoctl_ids() {",
    "  local i json socket=()",
    "  for ((i = 1; i < ${#COMP_WORDS[@]}; i++)); do",
    '    if [[ ${COMP_WORDS[i]} == --socket ]]; then',
    '      if [[ ${COMP_WORDS[i+1]} == = ]]; then socket=(--socket "${COMP_WORDS[i+2]}"); else socket=(--socket "${COMP_WORDS[i+1]}"); fi',
    "    fi",
    "  done",
    "  if [[ $1 == restored ]]; then",
    ...restoredOnly("socket", "0"),
    `    printf '%s\\n' "$json" | ${UNCLAIMED_IDS}`,
    "  else",
    `    json=$(${askLuoctl("socket", "list")}) || return 0`,
    `    printf '%s\\n' "$json" | ${ALL_IDS}`,
    "  fi",
    "}",
    "",
    "_luoctl() {",
    ...BASH_CUR_PREV,
    "  # the command: the first word that is neither an option nor an option's value; arg counts its arguments",
    "  local i word cmd= arg=0",
    "  for ((i = 1; i < COMP_CWORD; i++)); do",
    "    word=${COMP_WORDS[i]}",
    "    case $word in",
    "      --) break ;;",
    `      ${casePattern(valueNames)})`,
    '        [[ ${COMP_WORDS[i+1]} == = ]] && ((i++))',
    "        ((i++)) ;;",
    "      -* | =) ;;",
    '      *) if [[ -z $cmd ]]; then cmd=$word; else ((arg++)); fi ;;',
    "    esac",
    "  done",
    "  case $prev in",
    ...bashValueArms(all, "_luoctl"),
    "  esac",
    '  if [[ $cur == -* ]]; then',
    "    case $cmd in",
    ...commands.filter((c) => c.options.length).map((c) => `      ${c.name}) COMPREPLY=($(compgen -W "${names([...c.options, ...global])}" -- "$cur")) ;;`),
    `      *) COMPREPLY=($(compgen -W "${names(global)}" -- "$cur")) ;;`,
    "    esac",
    "    return 0",
    "  fi",
    "  case $cmd in",
    `    '') COMPREPLY=($(compgen -W "${commands.map((c) => c.name).join(" ")} help" -- "$cur")) ;;`,
    `    help) ((arg == 0)) && COMPREPLY=($(compgen -W "${commands.map((c) => c.name).join(" ")}" -- "$cur")) ;;`,
    ...commands.filter((c) => c.argument && c.argument.value !== "free").map((c) => `    ${c.name}) ((arg == 0)) && ${bashValue(c.argument!.value, "_luoctl")} ;;`),
    "  esac",
    "  return 0",
    "}",
    "complete -F _luoctl luoctl",
  ];
  return lines.join("\n") + "\n";
}

export function bashLuod(version: string): string {
  const opts = luodModel();
  const lines = [
    ...GENERATED("bash completion for luod", version),
    `# (--config: the config file, default ${DEFAULT_CONFIG_FILE})`,
    "",
    ...bashPrologue("_luod"),
    "",
    "_luod() {",
    ...BASH_CUR_PREV,
    "  case $prev in",
    ...bashValueArms(opts, "_luod"),
    "  esac",
    `  COMPREPLY=($(compgen -W "${opts.map((o) => o.name).join(" ")}" -- "$cur"))`,
    "  return 0",
    "}",
    "complete -F _luod luod",
  ];
  return lines.join("\n") + "\n";
}

// ---------------------------------------------------------------------------------------------
// zsh

/** A string in single quotes for zsh. */
const zq = (s: string) => `'${s.replace(/'/g, "'\\''")}'`;
/** A description inside an _arguments spec's [...]: brackets quoted. */
const zdesc = (s: string) => s.replace(/([[\]])/g, "\\$1");

function zshAction(v: Value): string {
  if (v === "files") return "_files";
  if (v === "dirs") return "_files -/";
  if (v === "groups") return "_groups";
  if (v === "restored-ids") return "_luoctl_ids restored";
  if (v === "client-ids") return "_luoctl_ids clients";
  if (v === "free") return " ";
  return `(${v.words.join(" ")})`;
}

/** An _arguments spec: `'*--initrd=[initramfs…]:file:_files'`; a value may be given again (the last wins). */
function zshSpec(o: CompOption): string {
  if (o.value === undefined) return zq(`${o.name}[${zdesc(o.help)}]`);
  const eq = o.name.startsWith("--") ? "=" : "+";
  return zq(`*${o.name}${eq}[${zdesc(o.help)}]:${o.valueName ?? "value"}:${zshAction(o.value)}`);
}

export function zshLuoctl(version: string): string {
  const { global, commands } = luoctlModel();
  const lines = [
    "#compdef luoctl",
    ...GENERATED("zsh completion for luoctl", version),
    "",
    ...IDS_COMMENT,
    "_luoctl_ids() {",
    "  local json expl",
    "  local -a ids",
    "  if [[ $1 == restored ]]; then",
    ...restoredOnly("luoctl_socket", "1"),
    `    ids=(\${(f)"$(print -r -- "$json" | ${UNCLAIMED_IDS})"})`,
    "  else",
    `    json=$(${askLuoctl("luoctl_socket", "list")}) || return 1`,
    `    ids=(\${(f)"$(print -r -- "$json" | ${ALL_IDS})"})`,
    "  fi",
    '  _wanted ids expl "$1 id" compadd -a ids',
    "}",
    "",
    "_luoctl() {",
    "  local curcontext=$curcontext state state_descr line ret=1",
    "  local -a luoctl_socket global commands",
    "  local i",
    "  # the --socket on the line, before the words are cut down to the command's",
    "  for ((i = 2; i < $#words; i++)); do",
    '    case $words[i] in',
    '      --socket) luoctl_socket=(--socket "$words[i+1]") ;;',
    '      --socket=*) luoctl_socket=("$words[i]") ;;',
    "    esac",
    "  done",
    "  global=(",
    ...global.map((o) => `    ${zshSpec(o)}`),
    "  )",
    "  commands=(",
    ...commands.map((c) => `    ${zq(`${c.name}:${c.summary}`)}`),
    `    ${zq("help:show luoctl's help or a command's")}`,
    "  )",
    "  _arguments -C $global ': :->command' '*:: :->args' && ret=0",
    "  case $state in",
    "    command) _describe -t commands 'luoctl command' commands && ret=0 ;;",
    "    args)",
    "      curcontext=${curcontext%:*:*}:luoctl-$words[1]:",
    "      case $words[1] in",
    ...commands.map((c) => {
      const specs = [...c.options.map(zshSpec), ...(c.argument ? [zq(`:${c.argument.name}:${zshAction(c.argument.value)}`)] : [])];
      return `        ${c.name}) _arguments ${["$global", ...specs].join(" ")} && ret=0 ;;`;
    }),
    `        help) _arguments ${zq(`:command:(${commands.map((c) => c.name).join(" ")})`)} && ret=0 ;;`,
    "      esac ;;",
    "  esac",
    "  return ret",
    "}",
    "",
    '_luoctl "$@"',
  ];
  return lines.join("\n") + "\n";
}

export function zshLuod(version: string): string {
  const lines = [
    "#compdef luod",
    ...GENERATED("zsh completion for luod", version),
    "",
    "_arguments \\",
    ...luodModel().map((o) => `  ${zshSpec(o)} \\`),
    "  && return 0",
    "return 1",
  ];
  return lines.join("\n") + "\n";
}

// luo-qemu: runs one QEMU VM as a luod client whose RAM stays in RAM across a live update
// (docs/vmm.md, "luo-qemu"). The same command line starts the VM on a cold boot and resumes it
// after a live-update boot, so one systemd unit (luo-qemu@.service) serves both.
//
//   luo-qemu run ID --memory SIZE [--machine TYPE] [--qemu PATH] [--socket PATH] [--run-dir DIR]
//                   [--shutdown-timeout DUR] [--no-sandbox] -- QEMU-ARGS…
//
// Exit codes: EXIT in supervisor.ts (0 stopped, 1 failed, 2 usage or refused VM, 3 no luod,
// 4 cannot resume: the session stays with luod).
import cac from "cac";
import { VERSION } from "../version";
import { UsageError, lastValue, protectOptionValues, unmark } from "../cli-options";
import { columns, paragraph } from "../help-format";
import { parseDurationMs } from "../duration";
import { DEFAULT_SOCKET } from "../wire/limits";
import { isValidId } from "../wire/ids";
import { escapeControl } from "../wire/escape";
import { findQemu, kernelHasSeccomp, noQemuLine } from "./qemu-process";
import { machineOptionProblem, parseMemorySize, refusals } from "./vm-config";
import { EXIT, VmSupervisor } from "./supervisor";

/** What luo-qemu is: the NAME of luo-qemu(8). */
export const PURPOSE = "run a QEMU VM whose RAM survives a live update (kexec) through luod";

/** The usage line of --help and the SYNOPSIS of luo-qemu(8). */
export const USAGE = "luo-qemu run ID --memory SIZE [options] -- QEMU-ARGS…";

/** luo-qemu's options, in --help order: `arg` names the value of one that takes a value. */
export const OPTIONS: readonly { flag: string; short?: string; arg?: string; help: string }[] = [
  { flag: "memory", arg: "SIZE", help: "guest RAM: 512M, 4G (whole MiB; required)" },
  {
    flag: "machine",
    arg: "TYPE[,PROPS]",
    help: "machine type (default pc); an alias such as pc is resolved to the versioned type (pc-i440fx-7.2) that is recorded with the saved state",
  },
  { flag: "qemu", arg: "PATH", help: "the QEMU binary (default qemu-system-x86_64 from PATH)" },
  { flag: "socket", arg: "PATH", help: `luod's socket (default $LUOD_SOCKET, else ${DEFAULT_SOCKET})` },
  { flag: "run-dir", arg: "DIR", help: "QMP and migration sockets (default /run/luo-qemu/ID)" },
  { flag: "shutdown-timeout", arg: "DUR", help: "on SIGTERM: time for the guest to power off before quit (default 30s)" },
  { flag: "connect-timeout", arg: "DUR", help: "time to wait for luod at start (default 60s)" },
  { flag: "no-sandbox", help: "do not add QEMU's -sandbox (added when the kernel has seccomp)" },
  { flag: "help", short: "h", help: "this help" },
  { flag: "version", short: "v", help: "the version" },
];

/** luo-qemu's exit codes (EXIT in supervisor.ts) and what each means. */
export const EXIT_STATUS: readonly [number, string][] = [
  [EXIT.OK, "stopped (or left paused for the kexec)"],
  [EXIT.FAILED, "failed (or another luo-qemu runs this VM)"],
  [EXIT.USAGE, "usage error, refused VM or refused by luod"],
  [EXIT.NO_LUOD, "luod not reachable at start (or an update still runs)"],
  [EXIT.CANNOT_RESUME, "a preserved guest could not be resumed (its session is kept)"],
];

/** What luo-qemu does, in --help and luo-qemu(8). */
export const DESCRIPTION = [
  "Runs QEMU with the guest's RAM in a memfd that luod keeps across a live update (kexec): the guest " +
    "is paused for the jump and resumes where it stopped. On a cold boot the command starts the VM; " +
    "after a live-update boot, when luod holds the VM's session, it resumes it.",
  "Not carried, refused at start: tap/bridge/vhost networking, VFIO, vhost devices, balloon and " +
    "memory hot-plug devices, -snapshot, extra memory backends. Disk images are reopened.",
];

const VALUE_OPTIONS = new Set(OPTIONS.filter((o) => o.arg).map((o) => o.flag));
// cac's names: camelCase, and --no-sandbox is the negation of "sandbox"
const KNOWN = new Set([
  "--",
  ...OPTIONS.flatMap((o) => [o.flag.replace(/^no-/, "").replace(/-([a-z])/g, (_, c: string) => c.toUpperCase()), ...(o.short ? [o.short] : [])]),
]);

/** An option as --help shows it: "-h, --help", "--memory SIZE". */
export const optionLabel = (o: (typeof OPTIONS)[number]) => `${o.short ? `-${o.short}, ` : ""}--${o.flag}${o.arg ? ` ${o.arg}` : ""}`;

export const HELP = [
  `usage: ${USAGE}`,
  "",
  paragraph(DESCRIPTION[0]!, 100),
  "",
  columns(OPTIONS.map((o) => [optionLabel(o), o.help]), 100),
  "",
  paragraph(DESCRIPTION[1]!, 100),
  "",
  "Exit status:",
  columns(EXIT_STATUS.map(([code, meaning]) => [String(code), meaning]), 100),
].join("\n");

export async function luoQemuMain(args: string[], env: Record<string, string | undefined> = process.env): Promise<number> {
  const say = (line: string) => process.stderr.write(`${line}\n`);
  let parsed: Awaited<ReturnType<typeof parse>>;
  try {
    parsed = parse(args, env);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    say(`luo-qemu: ${e.message} (see luo-qemu --help)`);
    return EXIT.USAGE;
  }
  if (parsed === "help") {
    process.stdout.write(`${HELP}\n`);
    return EXIT.OK;
  }
  if (parsed === "version") {
    process.stdout.write(`luo-qemu ${VERSION}\n`);
    return EXIT.OK;
  }
  const machineProblem = machineOptionProblem(parsed.machine);
  const refused = [...refusals(parsed.args), ...(machineProblem ? [machineProblem] : [])];
  if (refused.length > 0) {
    for (const r of refused) say(`luo-qemu: refusing this VM: ${escapeControl(r)}`);
    return EXIT.USAGE;
  }
  // Found now, run later: probing QEMU is two QEMU starts, which a resume mostly does without
  // (supervisor.ts). A binary that is not there is refused before luod is asked anything.
  const qemuPath = findQemu(parsed.qemu);
  if (!qemuPath) {
    say(`luo-qemu: ${escapeControl(noQemuLine(parsed.qemu))}`);
    return EXIT.FAILED;
  }
  const supervisor = new VmSupervisor(
    { id: parsed.id, memoryBytes: parsed.memoryBytes, machine: parsed.machine, qemuPath, args: parsed.args, sandbox: parsed.sandbox && kernelHasSeccomp() },
    { socket: parsed.socket, runDir: parsed.runDir, shutdownTimeoutMs: parsed.shutdownTimeoutMs, connectTimeoutMs: parsed.connectTimeoutMs, log: say },
  );
  const onSignal = () => void supervisor.stop();
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  try {
    return await supervisor.run();
  } finally {
    process.off("SIGTERM", onSignal);
    process.off("SIGINT", onSignal);
  }
}

interface RunArgs {
  id: string;
  memoryBytes: number;
  machine: string;
  qemu: string;
  socket: string;
  runDir: string;
  shutdownTimeoutMs: number;
  connectTimeoutMs: number;
  sandbox: boolean;
  args: string[];
}

function parse(argv: readonly string[], env: Record<string, string | undefined>): RunArgs | "help" | "version" {
  const dashes = argv.indexOf("--");
  const mine = dashes < 0 ? argv : argv.slice(0, dashes);
  const qemuArgs = dashes < 0 ? [] : argv.slice(dashes + 1);
  const cli = cac("luo-qemu");
  for (const o of OPTIONS) cli.option(`${o.short ? `-${o.short}, ` : ""}--${o.flag}${o.arg ? " <value>" : ""}`, "", o.arg ? { type: [String] } : undefined);
  let parsed: ReturnType<typeof cli.parse>;
  try {
    parsed = cli.parse(["luo-qemu", "luo-qemu", ...protectOptionValues(mine, VALUE_OPTIONS)], { run: false });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const o = parsed.options as Record<string, unknown>;
  if (o.help) return "help";
  if (o.version) return "version";
  const unknown = Object.keys(o).find((k) => !KNOWN.has(k));
  if (unknown) throw new UsageError(`unknown option --${unknown.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`);
  const [command, id, ...extra] = parsed.args.map((a) => unmark(String(a)));
  if (command === undefined) throw new UsageError("no command given (luo-qemu run ID --memory SIZE -- QEMU-ARGS…)");
  if (command !== "run") throw new UsageError(`unknown command ${JSON.stringify(escapeControl(command))}`);
  if (id === undefined) throw new UsageError("run needs the VM's id");
  if (!isValidId(id)) throw new UsageError(`invalid id ${JSON.stringify(escapeControl(id))}: 1-48 bytes of [A-Za-z0-9._@:-]`);
  if (extra.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(escapeControl(extra[0]!))} (QEMU's arguments go after --)`);
  const memory = lastValue(o.memory, "memory");
  if (memory === undefined) throw new UsageError("--memory SIZE is required");
  const memoryBytes = parseMemorySize(memory);
  if (memoryBytes === null) throw new UsageError(`--memory ${JSON.stringify(escapeControl(memory))}: a whole number of MiB such as 512M or 4G`);
  const duration = (name: string, fallback: number) => {
    const text = lastValue(o[name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase())], name);
    if (text === undefined) return fallback;
    const ms = parseDurationMs(text);
    if (!Number.isFinite(ms) || ms < 0) throw new UsageError(`--${name} ${JSON.stringify(escapeControl(text))}: a duration such as 30s or 2m`);
    return ms;
  };
  const socket = lastValue(o.socket, "socket") ?? env.LUOD_SOCKET ?? DEFAULT_SOCKET;
  const runDir = lastValue(o.runDir, "run-dir") ?? `/run/luo-qemu/${id}`;
  if (socket === "" || runDir === "") throw new UsageError("--socket and --run-dir need a path");
  return {
    id,
    memoryBytes,
    machine: lastValue(o.machine, "machine") ?? "pc",
    qemu: lastValue(o.qemu, "qemu") ?? "qemu-system-x86_64",
    socket,
    runDir,
    shutdownTimeoutMs: duration("shutdown-timeout", 30_000),
    connectTimeoutMs: duration("connect-timeout", 60_000),
    sandbox: o.sandbox !== false,
    args: qemuArgs,
  };
}

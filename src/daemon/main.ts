// luod: command line, start-up (restore after a live-update boot, listen) and shutdown.
import cac from "cac";
import { existsSync, mkdirSync, chmodSync, chownSync, unlinkSync, readFileSync } from "node:fs";
import { dirname } from "node:path";
import { VERSION } from "../version";
import { createLogger, type Logger } from "./log";
import { StateFiles } from "./state-files";
import { realKernel, type KernelPort } from "./kernel-port";
import { Broker } from "./broker";
import { KernelLoader } from "./loader";
import { RestoredSessions } from "./restored";
import { Server } from "./server";
import { decodeManifest, MANIFEST_TOKEN } from "./manifest";
import { INTERNAL_SESSION } from "../wire/ids";
import { EventLoop } from "../kernel/epoll";
import { unixListen, unixConnect } from "../kernel/unix";
import { closeFd } from "../kernel/fd";
import { SysError } from "../kernel/libc";
import { sdNotify } from "../kernel/sdnotify";
import { LIVEUPDATE_DEVICE } from "../kernel/liveupdate";

export const DEFAULT_SOCKET = "/run/luod/liveupdate.sock";

export interface DaemonConfig {
  socket: string;
  stateDir: string;
  device: string;
  adminGid: number | null;
  clientGid: number | null;
  socketMode: number;
  maxConnections: number;
  /** Pause between every client READY and the commit (fault drills); 0 in production. */
  commitDelayMs: number;
  verbose: boolean;
}

export async function luodMain(args: string[]): Promise<number> {
  const cli = cac("luod");
  cli
    .usage("[options]\n\nThe Linux Live Update broker: keeps applications' memfds across a kexec (LUO).")
    .option("--socket <path>", "listening socket", { default: DEFAULT_SOCKET })
    .option("--state-dir <dir>", "state kept across luod restarts within one boot (tmpfs)", { default: "/run/luod" })
    .option("--device <path>", "the LUO device", { default: LIVEUPDATE_DEVICE })
    .option("--admin-group <group>", "group allowed to send admin requests (besides root)")
    .option("--client-group <group>", "group allowed to subscribe and claim (besides root); also the socket's group")
    .option("--socket-mode <octal>", "mode of the socket file (default 0660 with a client group, else 0600)")
    .option("--max-connections <n>", "connections beyond this are refused", { default: 256 })
    .option("--commit-delay <ms>", "wait between every client READY and the commit (fault drills)", { default: 0 })
    .option("--verbose", "log debug messages")
    .help()
    .version(VERSION);
  let opts: Record<string, unknown>;
  try {
    const parsed = cli.parse(["luod", "luod", ...args], { run: false });
    if (parsed.options.help || parsed.options.version) return 0;
    if (parsed.args.length) throw new Error(`unexpected argument: ${parsed.args[0]}`);
    opts = parsed.options;
  } catch (e) {
    console.error(`luod: ${(e as Error).message}`);
    return 2;
  }
  let config: DaemonConfig;
  try {
    config = toConfig(opts);
  } catch (e) {
    console.error(`luod: ${(e as Error).message}`);
    return 2;
  }
  const log = createLogger({ verbose: config.verbose });
  try {
    return await runDaemon(config, log, realKernel(config.device));
  } catch (e) {
    log.error(`luod: ${(e as Error).message}`);
    return 1;
  }
}

function toConfig(o: Record<string, unknown>): DaemonConfig {
  const clientGid = o.clientGroup === undefined ? null : resolveGroup(String(o.clientGroup));
  const adminGid = o.adminGroup === undefined ? null : resolveGroup(String(o.adminGroup));
  const mode = o.socketMode === undefined ? (clientGid === null ? 0o600 : 0o660) : parseInt(String(o.socketMode), 8);
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o777) throw new Error(`bad --socket-mode ${o.socketMode}`);
  const max = Number(o.maxConnections);
  if (!Number.isInteger(max) || max < 1) throw new Error(`bad --max-connections ${o.maxConnections}`);
  const commitDelayMs = Number(o.commitDelay);
  if (!Number.isInteger(commitDelayMs) || commitDelayMs < 0) throw new Error(`bad --commit-delay ${o.commitDelay}`);
  return {
    socket: String(o.socket), stateDir: String(o.stateDir), device: String(o.device),
    adminGid, clientGid, socketMode: mode, maxConnections: max, commitDelayMs, verbose: !!o.verbose,
  };
}

/** A group name from /etc/group, or a numeric gid. */
function resolveGroup(g: string): number {
  if (/^\d+$/.test(g)) return Number(g);
  const line = readFileSync("/etc/group", "utf8").split("\n").find((l) => l.split(":")[0] === g);
  if (!line) throw new Error(`unknown group ${g}`);
  return Number(line.split(":")[2]);
}

/** Starts luod and resolves with its exit code when it stops (SIGTERM/SIGINT). */
export async function runDaemon(config: DaemonConfig, log: Logger, kernel: KernelPort): Promise<number> {
  const files = new StateFiles(config.stateDir);
  const restored = new RestoredSessions(kernel, files, log);
  const boot = restore(kernel, restored, log);
  const loader = new KernelLoader(kernel, files, log);
  const broker = new Broker({ kernel, log, nextKernel: () => loader.loaded(), commitDelayMs: config.commitDelayMs });

  const listenFd = listen(config, log);
  const loop = new EventLoop();
  const server = new Server({
    listenFd, loop, broker, loader, restored, log,
    access: { adminGid: config.adminGid, clientGid: config.clientGid },
    maxConnections: config.maxConnections,
    statusExtra: () => ({ boot, device: kernel.devicePresent() ? "present" : "absent" }),
  });
  const unclaimed = restored.unclaimed().length;
  log.notice(`luod ${VERSION} listening on ${config.socket}; ${boot.kind}${unclaimed ? `, ${unclaimed} session(s) to claim` : ""}`);
  notify(log, `READY=1\nSTATUS=listening; ${boot.kind}${unclaimed ? `; ${unclaimed} unclaimed` : ""}\nMAINPID=${process.pid}`);

  return await new Promise<number>((resolve) => {
    const stop = (sig: string) => {
      log.notice(`${sig}: stopping`);
      notify(log, "STOPPING=1");
      broker.shutdown();
      server.close();
      restored.closeAll();
      loop.close();
      closeFd(listenFd);
      try { unlinkSync(config.socket); } catch { /* already gone */ }
      process.off("SIGTERM", onTerm);
      process.off("SIGINT", onInt);
      resolve(0);
    };
    const onTerm = () => stop("SIGTERM");
    const onInt = () => stop("SIGINT");
    process.on("SIGTERM", onTerm);
    process.on("SIGINT", onInt);
  });
}

interface BootInfo {
  kind: "live-update boot" | "cold boot" | "restarted after a live-update boot" | "no LUO device";
  restore_error?: string;
}

/**
 * After a live-update boot the manifest is in luod's own session. Retrieving it consumes it
 * (once per boot, kernel-luo.md §4.2), so its content goes to the state dir at once: a luod
 * restarted later in this boot reads it from there.
 */
function restore(kernel: KernelPort, restored: RestoredSessions, log: Logger): BootInfo {
  if (restored.loadFromState()) return { kind: "restarted after a live-update boot" };
  if (!kernel.devicePresent()) return { kind: "no LUO device" };
  try {
    const blob = kernel.takeBlob(INTERNAL_SESSION, MANIFEST_TOKEN);
    if (!blob) return { kind: "cold boot" };
    const manifest = decodeManifest(blob);
    restored.adoptManifest(manifest);
    log.notice(`live-update boot: update ${manifest.attempt} from ${manifest.kernel.from} brought ${manifest.entries.length} session(s)`);
    return { kind: "live-update boot" };
  } catch (e) {
    // Never crash on a bad manifest or a busy device: luod must still serve; STATUS shows the error.
    const msg = (e as Error).message;
    log.error(`reading the manifest failed: ${msg}`);
    return { kind: "cold boot", restore_error: msg };
  }
}

/** Binds the socket; refuses to start if another luod answers on it, removes a stale one. */
function listen(config: DaemonConfig, log: Logger): number {
  mkdirSync(dirname(config.socket), { recursive: true, mode: 0o755 });
  if (existsSync(config.socket)) {
    let alive = false;
    try {
      closeFd(unixConnect(config.socket));
      alive = true;
    } catch (e) {
      if (!(e instanceof SysError && (e.code === "ECONNREFUSED" || e.code === "ENOENT"))) throw e;
    }
    if (alive) throw new Error(`another luod is already listening on ${config.socket}`);
    log.info(`removing stale socket ${config.socket}`);
    unlinkSync(config.socket);
  }
  // bind under a tight umask: the socket never exists with a looser mode than configured
  const umask = process.umask(0o177);
  let fd: number;
  try {
    fd = unixListen(config.socket, { backlog: 128 });
  } finally {
    process.umask(umask);
  }
  chmodSync(config.socket, config.socketMode);
  if (config.clientGid !== null) chownSync(config.socket, 0, config.clientGid);
  return fd;
}

/** sd_notify that never takes luod down: a lost notification is logged, not fatal. */
function notify(log: Logger, state: string): void {
  try {
    sdNotify(state);
  } catch (e) {
    log.warning(`sd_notify: ${(e as Error).message}`);
  }
}

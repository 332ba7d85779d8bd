// luod: command line, start-up (restore after a live-update boot, listen) and shutdown.
import { chmodSync, chownSync, closeSync, constants, linkSync, openSync, readFileSync, lstatSync, mkdtempSync, rmSync, unlinkSync, type Stats } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { VERSION } from "../version";
import { createLogger, journalFromEnvironment, type Logger } from "./log";
import { MESSAGE_ID } from "./message-ids";
import { StateFiles } from "./state-files";
import { realKernel, type KernelPort } from "./kernel-port";
import { Broker } from "./broker";
import type { UpdateEvent } from "./update";
import { KernelLoader, type CheckResult } from "./loader";
import { preflightChecks } from "./preflight";
import { RunningAbiSource } from "./abi-gate";
import { probeRunningAbi, readProcVersion } from "./running-abi";
import { readImageAbi } from "./image-reader";
import { RestoredSessions } from "./restored";
import { Server } from "./server";
import { perUidDefault } from "./peers";
import { decodeManifest, MANIFEST_TOKEN } from "./manifest";
import { INTERNAL_SESSION } from "../wire/ids";
import { EventLoop } from "../kernel/epoll";
import { unixListen, unixConnect } from "../kernel/unix";
import { closeFd } from "../kernel/fd";
import { SysError } from "../kernel/libc";
import { sdNotify } from "../kernel/sdnotify";
import { oneLine } from "../wire/errors";
import { escapeControl } from "../wire/escape";
import { parseArgs, readConfigFile, mergeSettings, helpText, resolveGroup, EXIT, type Settings } from "./config";
import { SystemdHandoff } from "./systemd-handoff";
import { ensureTrustedDir, fileKind } from "./trusted-dirs";
import type { DaemonConfig } from "./config";
import { Reloader } from "./reload";
import { LuodMetrics, formatMetrics } from "./metrics";
import { MetricsFile, checkMetricsPath } from "./metrics-file";

export { DEFAULT_SOCKET } from "./config";

export type { DaemonConfig } from "./config";

export async function luodMain(args: string[]): Promise<number> {
  let config: DaemonConfig;
  let reloadConfig: () => DaemonConfig;
  let metricsWarning: string | null = null;
  try {
    const parsed = parseArgs(args);
    if (parsed.kind === "help") {
      console.log(helpText(VERSION));
      return EXIT.OK;
    }
    if (parsed.kind === "version") {
      console.log(`luod ${VERSION}`);
      return EXIT.OK;
    }
    // SIGHUP reads the same file again, with the same flags on top
    reloadConfig = () => toConfig(mergeSettings(readConfigFile(parsed.configFile, parsed.explicitConfig), parsed.flags));
    config = reloadConfig();
    metricsWarning = config.metricsFile ? checkMetricsPath(config.metricsFile) : null;
  } catch (e) {
    // a bad flag or config file: one line, exit 2 (ConfigError), or whatever else failed there
    // (escaped: a config file's bytes may be quoted in it, and it goes to a terminal or the journal)
    console.error(`luod: ${escapeControl(oneLine((e as Error).message))}`);
    return EXIT.CONFIG;
  }
  // under systemd, native journal entries with fields (docs/daemon.md#logs-and-the-audit-trail)
  const logOpts = { verbose: config.verbose, journal: journalFromEnvironment() };
  const log = createLogger(logOpts);
  if (metricsWarning) log.warning(metricsWarning);
  try {
    return await runDaemon(config, log, realKernel(config.device), { reloadConfig, setVerbose: (v) => (logOpts.verbose = v) });
  } catch (e) {
    log.error(`luod: ${(e as Error).message}`);
    return EXIT.FAILED;
  }
}

/** Settings (names, defaults left open) to what runDaemon needs: gids and the socket's mode. */
export function toConfig(s: Settings, groups: (g: string) => number = (g) => resolveGroup(g)): DaemonConfig {
  const adminGid = s.adminGroup === null ? null : groups(s.adminGroup);
  const clientGid = s.clientGroup === null ? null : groups(s.clientGroup);
  const socketGid = s.socketGroup !== null ? groups(s.socketGroup) : clientGid ?? adminGid;
  return {
    socket: s.socket, stateDir: s.stateDir, device: s.device,
    adminGid, clientGid, socketGid,
    socketMode: s.socketMode ?? (socketGid === null ? 0o600 : 0o660),
    maxConnections: s.maxConnections,
    maxConnectionsPerUid: s.maxConnectionsPerUid,
    firstRequestTimeoutMs: s.firstRequestTimeoutMs,
    commitDelayMs: s.commitDelayMs,
    kexecMode: s.kexecMode,
    runningImage: s.runningImage,
    metricsFile: s.metricsFile,
    verbose: s.verbose,
  };
}

/** What SIGHUP needs: the config file read again, and the logger's verbosity. Without it, SIGHUP is only logged. */
export interface ReloadHooks {
  reloadConfig: () => DaemonConfig;
  setVerbose: (verbose: boolean) => void;
}

/** Starts luod and resolves with its exit code when it stops (SIGTERM/SIGINT). SIGHUP reloads the config. */
export async function runDaemon(config: DaemonConfig, log: Logger, kernel: KernelPort, hooks?: ReloadHooks): Promise<number> {
  config = { ...config }; // a reload updates it
  // before any file is read or written there: only root may change these directories
  ensureTrustedDir(dirname(resolve(config.socket)), { what: "socket directory", mode: 0o755 });
  ensureTrustedDir(config.stateDir, { what: "state directory", mode: 0o700 });
  // the fd store ($LISTEN_FDS) and the jump through systemd (src/daemon/systemd-handoff.ts)
  const systemd = new SystemdHandoff({ requested: config.kexecMode ?? "auto", stateDir: config.stateDir, log });
  kernel = systemd.wrap(kernel);
  // Listen first: clients that start with luod after a live-update boot queue in the backlog
  // while the manifest is read, instead of waiting for the socket to appear. Nothing is accepted
  // before the server below exists.
  const listenFd = listen(config, log);
  // The event loop's worker thread starts a JS runtime of its own: it boots while the manifest
  // is read. A bug in one callback must not take luod (and the session fds it holds) down: log
  // it, serve on.
  const loop = new EventLoop({ onError: (e) => log.error(`event loop: ${(e as Error)?.stack ?? String(e)}`) });
  const files = new StateFiles(config.stateDir, log);
  const restored = new RestoredSessions(kernel, files, log);
  // The running kernel's ABI (abi-gate.ts): what the previous luod recorded is taken from the
  // manifest by restore(); the probes run once, in the background, from here (the running image
  // is decoded in a worker, which can take a second): CHECK and STATUS show it when it is known.
  const runningAbi = new RunningAbiSource({
    probe: () => probeRunningAbi({ candidates: config.runningImage ? [config.runningImage] : [] }),
    files, log, procVersion: () => readProcVersion(),
  });
  const boot = restore(kernel, restored, runningAbi, log);
  // The probe decodes the running image in a worker: 0.2-0.6 s of CPU natively (an lz4 kernel is
  // decoded in JavaScript), many seconds under emulation. After a live-update boot whose manifest
  // recorded every string, nothing needs it until a LOAD or CHECK (which run it then); otherwise
  // it waits until the restored sessions are claimed (at most RESTORE_FIRST_MS), off the claims'
  // path (docs/performance.md, "Fifth round").
  if (!runningAbi.recordedComplete()) {
    afterRestore(restored, RESTORE_FIRST_MS, () =>
      runningAbi.get().catch((e) => log.warning(`reading the running kernel's ABI failed: ${oneLine((e as Error).message)}`)));
  }
  const loader = new KernelLoader(kernel, files, log, { readImage: (fd, image) => readImageAbi(fd, image), running: runningAbi });
  // --metrics-file: counted from here, written once the server exists (docs/daemon.md, "Metrics")
  const metrics = config.metricsFile ? new LuodMetrics({ version: VERSION, startedAtMs: Date.now() }) : null;
  const brokerOptions = { kernel, log, nextKernel: () => loader.loaded(), reloadKernel: (stillWanted: () => void) => loader.reload(stillWanted),
    commitDelayMs: config.commitDelayMs,
    nextAttempt: attemptCounter(files),
    onReady: (id: string) => systemd.clientReady(id),
    onAbort: (dryRun: boolean) => systemd.aborted(dryRun),
    onEvent: metrics ? (e: UpdateEvent) => metrics.update(e) : undefined,
    // subscriptions outlive a disconnect and a restart: luod knows whom an update must carry
    files, maxSubscriptionsPerUid: config.maxConnectionsPerUid ?? perUidDefault(config.maxConnections), carried: (id: string) => systemd.carries(id),
  };
  const broker = new Broker(brokerOptions);
  systemd.start({ broker, restored, loader, boot });
  // A kernel loaded before this luod started (by a luod that crashed, or by anyone) is one it
  // cannot vouch for: unloaded, so that no `systemctl reboot` becomes a kexec into it. Not while
  // systemd's kexec, requested by the previous luod, is under way.
  if (!systemd.jumpInProgress) loader.unloadUnvouched("it was loaded before this luod started");

  const serverOptions = {
    listenFd, loop, broker, loader, restored, log,
    access: { adminGid: config.adminGid, clientGid: config.clientGid },
    maxConnections: config.maxConnections,
    maxConnectionsPerUid: config.maxConnectionsPerUid,
    firstRequestTimeoutMs: config.firstRequestTimeoutMs,
    statusExtra: () => ({ boot, device: kernel.devicePresent() ? "present" : "absent", kexec_mode: { mode: systemd.mode, why: systemd.why } }),
    // what the connected clients hold in memfds is what the update will preserve; the expected
    // ones that are away (or carried by the fd store) cannot be looked into
    preflight: (next: CheckResult["next"]) => [
      ...preflightChecks(next, broker.list().filter((c) => c.connected).map((c) => c.pid), broker.missing().length + systemd.counts().carried),
      // how the jump will go: luod's own reboot(KEXEC), or systemctl kexec (docs/systemd.md)
      { name: "kexec-mode", ok: true, detail: `${systemd.mode}: ${systemd.why}` },
    ],
    observer: metrics ?? undefined,
  };
  const server = new Server(serverOptions);
  const metricsFile = metrics && config.metricsFile ? new MetricsFile({
    path: config.metricsFile, log,
    render: (stopped) => formatMetrics(metrics.families({
      phase: stopped ? "stopped" : broker.phase,
      clients: broker.summary().clients,
      restored: restored.list(),
      previous: restored.previous,
      connections: { open: server.connections, accepted: server.stats.accepted, refused: server.stats.refused },
    })),
  }) : null;
  if (metrics && metricsFile) metrics.onChange = (urgent) => metricsFile.changed(urgent);
  metricsFile?.start();
  // the server and the broker read these options when they use them: a reload changes them in place
  const reloader = new Reloader({
    current: config, log, busy: () => broker.phase !== "idle", notify: (state) => notify(log, state),
    read: () => {
      if (!hooks) throw new Error("this luod was started without a config file to reload");
      return hooks.reloadConfig();
    },
    apply: (next) => {
      serverOptions.access = { adminGid: next.adminGid, clientGid: next.clientGid };
      serverOptions.maxConnections = next.maxConnections;
      serverOptions.maxConnectionsPerUid = next.maxConnectionsPerUid;
      serverOptions.firstRequestTimeoutMs = next.firstRequestTimeoutMs;
      brokerOptions.commitDelayMs = next.commitDelayMs;
      brokerOptions.maxSubscriptionsPerUid = next.maxConnectionsPerUid ?? perUidDefault(next.maxConnections);
      hooks?.setVerbose(next.verbose);
    },
  });
  const unclaimed = restored.unclaimed().length;

  return await new Promise<number>((resolve) => {
    const stop = (sig: string) => {
      log.notice(`${sig}: stopping`);
      notify(log, "STOPPING=1");
      // after `systemctl kexec` was accepted the update is not aborted: the fd store carries it
      if (!systemd.stop()) {
        broker.shutdown();
        // stopping outside a jump: a `systemctl reboot` must not become a kexec nobody brokers
        loader.unloadUnvouched("luod is stopping");
      }
      server.close();
      restored.closeAll();
      loop.close();
      closeFd(listenFd);
      try { unlinkSync(config.socket); } catch { /* already gone */ }
      process.off("SIGTERM", onTerm);
      process.off("SIGINT", onInt);
      process.off("SIGHUP", onHup);
      reloader.cancel();
      process.off("uncaughtException", onBug);
      process.off("unhandledRejection", onBug);
      // the file's last word: "stopped" (a stale file without it means a luod that died)
      void (metricsFile?.close() ?? Promise.resolve()).then(() => resolve(0));
    };
    const onTerm = () => stop("SIGTERM");
    const onInt = () => stop("SIGINT");
    // SIGHUP's default action would end luod (exit 129) and every session it holds with it
    const onHup = () => reloader.request();
    // Last resort: luod may hold the only copy of READY clients' sessions, and exiting closes
    // them (an outgoing session dies with its last fd, docs/kernel.md#session-lifetimes). A bug that escapes a
    // timer is logged, not fatal; the event loop's callbacks have their own onError above.
    const onBug = (e: unknown) => log.error(`unexpected error (luod keeps running): ${(e as Error)?.stack ?? String(e)}`);
    process.on("SIGTERM", onTerm);
    process.on("SIGINT", onInt);
    process.on("SIGHUP", onHup);
    process.on("uncaughtException", onBug);
    process.on("unhandledRejection", onBug);
    // only now: a SIGTERM sent the moment luod says it is ready (systemd, a test) must find the
    // handlers installed, or its default action ends luod with 143 and nothing unloaded
    log.notice(`luod ${VERSION} listening on ${config.socket}; ${boot.kind}${unclaimed ? `, ${unclaimed} session(s) to claim` : ""}; kexec mode ${systemd.mode} (${systemd.why})`, { MESSAGE_ID: MESSAGE_ID.started });
    notify(log, `READY=1\nSTATUS=listening; ${boot.kind}${unclaimed ? `; ${unclaimed} unclaimed` : ""}\nMAINPID=${process.pid}`);
  });
}

interface BootInfo {
  kind: "live-update boot" | "cold boot" | "restarted after a live-update boot" | "no LUO device";
  restore_error?: string;
}

/**
 * After a live-update boot the manifest is in luod's own session. Retrieving it consumes it
 * (once per boot, docs/kernel.md#retrieve-once), so its content goes to the state dir at once: a luod
 * restarted later in this boot reads it from there.
 */
function restore(kernel: KernelPort, restored: RestoredSessions, runningAbi: RunningAbiSource, log: Logger): BootInfo {
  if (restored.loadFromState()) return { kind: "restarted after a live-update boot" };
  if (!kernel.devicePresent()) return { kind: "no LUO device" };
  try {
    const blob = kernel.takeBlob(INTERNAL_SESSION, MANIFEST_TOKEN);
    if (blob.kind === "absent") return { kind: "cold boot" };
    const manifest = decodeManifest(blob.data);
    restored.adoptManifest(manifest);
    runningAbi.recordFromManifest(manifest.kernel.next, manifest.attempt);
    log.notice(`live-update boot: update ${manifest.attempt} from ${manifest.kernel.from} brought ${manifest.entries.length} session(s)`, {
      MESSAGE_ID: MESSAGE_ID.restored, LUO_UPDATE: manifest.attempt,
    });
    return { kind: "live-update boot" };
  } catch (e) {
    // Never crash on a bad manifest or a busy device: luod must still serve; STATUS shows the error.
    const msg = (e as Error).message;
    log.error(`reading the manifest failed: ${msg}`);
    return { kind: "cold boot", restore_error: msg };
  }
}

/** Every client of a big host reconnects at once after a live-update boot (the kernel caps this
 *  at net.core.somaxconn, 4096 by default): a short backlog would make their connect() wait. */
const LISTEN_BACKLOG = 4096;

/**
 * Binds the socket; refuses to start if another luod answers on it, removes a stale one.
 * The directory is root's alone (ensureTrustedDir), and the socket is still made where nobody
 * else can reach it: bound in a private directory (mode 0700) inside it under a tight umask,
 * given its group and mode there, then hard-linked into place, which fails (EEXIST) rather than
 * replace anything (docs/daemon.md#directories-and-files-luod-trusts; fchmod on the socket fd
 * would not do: it changes the socket's own inode, not the file, docs/kernel.md#unix-socket-files).
 */
function listen(config: DaemonConfig, log: Logger): number {
  clearSocketPath(config.socket, log);
  const priv = mkdtempSync(join(dirname(resolve(config.socket)), ".luod"));
  // a socket path near the 107-byte limit leaves no room for the private name: reach the
  // directory through an fd of it instead (/proc/self/fd/N is a short path to it)
  const privFd = Buffer.byteLength(priv) + 2 > 107 ? openSync(priv, constants.O_RDONLY | constants.O_DIRECTORY) : null;
  try {
    const tmp = join(privFd === null ? priv : `/proc/self/fd/${privFd}`, "s");
    const umask = process.umask(0o177);
    let fd: number;
    try {
      fd = unixListen(tmp, { backlog: LISTEN_BACKLOG });
    } finally {
      process.umask(umask);
    }
    try {
      // group first, then mode: the socket is never open to a group it was not meant for. Always:
      // in a setgid directory the file would otherwise take the directory's group
      chownSync(tmp, process.geteuid?.() ?? 0, config.socketGid ?? process.getegid?.() ?? 0);
      chmodSync(tmp, config.socketMode);
      linkSync(tmp, config.socket);
    } catch (e) {
      closeFd(fd);
      throw e;
    }
    return fd;
  } finally {
    if (privFd !== null) closeSync(privFd);
    rmSync(priv, { recursive: true, force: true });
  }
}

/**
 * Makes room at the socket path: nothing there, or a socket nobody answers on (luod's own, left
 * by a crash), which is removed. Anything else (another luod, a regular file, a FIFO, a symlink)
 * is refused and left alone.
 */
function clearSocketPath(path: string, log: Logger): void {
  let st: Stats;
  try {
    st = lstatSync(path);
  } catch (e) {
    if ((e as { code?: string }).code === "ENOENT") return;
    throw e;
  }
  if (!st.isSocket()) throw new Error(`${path} exists and is ${fileKind(st)}, not a socket: luod leaves it alone and does not start (remove it, or choose another --socket)`);
  let alive = false;
  try {
    closeFd(unixConnect(path, { nonblock: true }));
    alive = true;
  } catch (e) {
    if (!(e instanceof SysError)) throw e;
    if (e.code === "EAGAIN") alive = true; // a full backlog: someone listens
    else if (e.code !== "ECONNREFUSED" && e.code !== "ENOENT") throw e;
  }
  if (alive) throw new Error(`another luod is already listening on ${path}`);
  log.info(`removing stale socket ${path}`);
  unlinkSync(path);
}

/** How long background work waits for the restored sessions to be claimed before it runs anyway. */
const RESTORE_FIRST_MS = 10_000;

/** Runs `work` once no restored session is unclaimed, or after `maxMs`; at once when none is. */
function afterRestore(restored: RestoredSessions, maxMs: number, work: () => void): void {
  if (restored.unclaimed().length === 0) return work();
  const until = Date.now() + maxMs;
  const timer = setInterval(() => {
    if (restored.unclaimed().length > 0 && Date.now() < until) return;
    clearInterval(timer);
    work();
  }, 250);
  timer.unref();
}

/** sd_notify that never takes luod down: a lost notification is logged, not fatal. */
function notify(log: Logger, state: string): void {
  try {
    sdNotify(state);
  } catch (e) {
    log.warning(`sd_notify: ${(e as Error).message}`);
  }
}

/**
 * Numbers for update attempts and PREPAREd sessions. The state dir records the highest number
 * handed out or reserved, so that a restarted luod never reuses one: the number is part of the
 * session names (docs/protocol.md, Identity). Numbers are reserved in blocks, so a burst of
 * PREPAREs costs one file write per block, not one each; a restart skips the rest of a block.
 */
export function attemptCounter(files: StateFiles, block = 64, uptimeMs: () => number = bootClockMs): () => number {
  let next = 0;
  let reserved = 0;
  return () => {
    if (next >= reserved) {
      const r = files.readChecked<{ last: number }>("attempt");
      // an unusable record (set aside) lost the highest number: start above any a luod of this
      // boot can have handed out (docs/daemon.md#files-under-the-state-dir-default-runluod)
      next = r.kind === "ok" ? r.data.last : r.kind === "absent" ? 0 : Math.max(next, attemptFloor(uptimeMs()));
      reserved = next + block;
      files.write("attempt", { last: reserved });
    }
    return ++next;
  };
}

/**
 * Where attempt numbers restart when attempt.json is unusable: 64 per millisecond since boot.
 * Every luod of this boot started at or above this floor at its own start and hands out far
 * fewer than 64 numbers per millisecond (each is an update or a PREPARE), so no number repeats;
 * 36^9 (the most a session name holds) is reached after some 50 years of uptime.
 */
export function attemptFloor(uptimeMs: number): number {
  return Math.floor(uptimeMs) * 64;
}

/** Milliseconds since boot (CLOCK_BOOTTIME: /proc/uptime counts suspend too). */
function bootClockMs(): number {
  try {
    const ms = Math.floor(Number(readFileSync("/proc/uptime", "utf8").split(" ")[0]) * 1000);
    if (Number.isSafeInteger(ms) && ms > 0) return ms;
  } catch {
    // no /proc: below
  }
  return Date.now() / 64; // the floor is then the wall clock in ms: above any uptime of a real host

}

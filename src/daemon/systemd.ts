// luod as a systemd service (docs/systemd.md): the fd store, and the jump through systemd.
//
// Two ways to jump (`luod --kexec-mode=direct|systemd|auto`):
//  * direct:  luod calls sync() + reboot(LINUX_REBOOT_CMD_KEXEC) itself while it holds every
//             session fd. For hosts without systemd ≥ 261. On a systemd host that skips the orderly
//             shutdown and systemd's own LUO step (systemd-luo.md, "Implications for luod").
//  * systemd: every client session goes into luod's own fd store (FDSTORE=1) as soon as its client
//             is READY, the manifest session "luod" at the commit; then luod runs `systemctl kexec`.
//             systemd stops the units in order, keeps the fds through systemd-shutdown (the unit has
//             FileDescriptorStorePreserve=yes), the kernel carries the sessions, and after the boot
//             PID 1 retrieves them and hands them to luod in $LISTEN_FDS/$LISTEN_FDNAMES.
//  * auto:    systemd when started by systemd ≥ 261 with an fd store that survives a kexec
//             ($NOTIFY_SOCKET, $FDSTORE > 0, FileDescriptorStorePreserve=yes|on-success), else direct.
//
// Sessions in the fd store survive luod itself. Killed (SIGKILL, a crash) and restarted by systemd:
//  * while the kexec it asked for is under way (logind delaying it, or the job queued), the
//    restarted luod only waits to be stopped;
//  * otherwise the update in flight is over, but the sessions of its READY clients are *carried*:
//    they stay in the fd store and join the manifest of the next update (unless their client takes
//    part in it again), so a client that exited after READY still gets its data after the jump.
// The record of which fd store entries are outgoing sessions, and their manifest entries, is the
// state file fdstore.json (/run/luod, this boot only).
//
// Whatever the mode, sessions that come back in $LISTEN_FDS after a kexec are luod's: PID 1
// already retrieved them, so luod never RETRIEVE_SESSIONs them by name (that would fail, EINVAL).
// SystemdHandoff wraps the KernelPort so that the broker and restored.ts use them without knowing:
// retrieveSession() returns a dup of the fd, takeBlob("luod") reads the manifest from it. An
// entry leaves the fd store (FDSTOREREMOVE=1) when luod is done with it: FINISHED or DISCARD of a
// restored session, the manifest once read, the sessions of an aborted update.
//
// FDNAME: systemd refuses ':' in an FDNAME (it separates $LISTEN_FDNAMES; fdname_is_valid), and
// client session names are `luod:<id>/<attempt>`, so ':' and '%' are percent-encoded. The kernel's
// own name (LIVEUPDATE_SESSION_GET_NAME) is what counts when both are known.
import { readFileSync } from "node:fs";
import { unitFromCgroup } from "./access";
import type { KernelPort } from "./kernel-port";
import type { Logger } from "./log";
import type { Broker, NextKernel } from "./broker";
import type { RestoredSession } from "./restored";
import { decodeManifest, encodeManifest, manifestEntry, type ManifestEntry } from "./manifest";
import { StateFiles } from "./state-files";
import { ProtocolError } from "../wire/errors";
import { INTERNAL_SESSION, parseSessionName } from "../wire/ids";
import { sdListenFds, sdNotify, sdNotifyBarrier, sdNotifyWithFds } from "../kernel/sdnotify";
import { closeFd, readWhole } from "../kernel/fd";
import { finishSession, getSessionName, retrieveFd } from "../kernel/liveupdate";

export const KEXEC_MODES = ["auto", "direct", "systemd"] as const;
export type KexecMode = (typeof KEXEC_MODES)[number];
/** The first systemd whose PID 1 carries fd stores across a kexec through LUO (systemd-luo.md §1). */
export const MIN_SYSTEMD_VERSION = 261;

// ---- FDNAME ----------------------------------------------------------------------------------

/** The FDNAME of a session fd: the session name with '%' and ':' percent-encoded. */
export function fdNameOf(session: string): string {
  return session.replace(/%/g, "%25").replace(/:/g, "%3A");
}

/** The session name behind an FDNAME luod gave, or null for any other name. */
export function sessionOfFdName(fdname: string): string | null {
  const s = fdname.replace(/%3A/gi, ":").replace(/%25/g, "%");
  return s === INTERNAL_SESSION || parseSessionName(s) ? s : null;
}

// ---- what luod may assume about its service manager --------------------------------------------

export interface Environment {
  /** $NOTIFY_SOCKET is set: started by a service manager that listens to sd_notify. */
  notifySocket: boolean;
  /** $FDSTORE: FileDescriptorStoreMax= of our unit (systemd ≥ 254 sets it); 0 when unset. */
  fdStoreMax: number;
  /** The manager's version (262 for "262.1-1"), null when unknown. */
  version: number | null;
  /** Our unit, from /proc/self/cgroup. */
  unit: string | null;
  /** FileDescriptorStorePreserve= of our unit ("yes", "on-success", "restart", "no"), null when unknown. */
  preserve: string | null;
}

/** Why systemd mode cannot be used here; empty when it can. */
export function systemdModeProblems(env: Environment): string[] {
  const p: string[] = [];
  if (!env.notifySocket) p.push("not started by systemd ($NOTIFY_SOCKET is unset)");
  if (env.fdStoreMax <= 0) p.push("no fd store ($FDSTORE is unset: FileDescriptorStoreMax= must be > 0)");
  if (env.notifySocket && env.fdStoreMax > 0) {
    if (env.version === null) p.push("the systemd version is unknown");
    else if (env.version < MIN_SYSTEMD_VERSION)
      p.push(`systemd ${env.version} does not carry fd stores across a kexec (needs ${MIN_SYSTEMD_VERSION} or later)`);
    if (env.preserve !== "yes" && env.preserve !== "on-success")
      p.push(`FileDescriptorStorePreserve=${env.preserve ?? "unknown"} (must be yes or on-success for the store to cross a kexec)`);
  }
  return p;
}

/** Picks the mode; throws when `systemd` is asked for but cannot work. */
export function resolveKexecMode(requested: KexecMode, env: Environment): { mode: "direct" | "systemd"; why: string } {
  if (requested === "direct") return { mode: "direct", why: "--kexec-mode=direct" };
  const problems = systemdModeProblems(env);
  if (requested === "systemd") {
    if (problems.length) throw new Error(`--kexec-mode=systemd: ${problems.join("; ")}`);
    return { mode: "systemd", why: "--kexec-mode=systemd" };
  }
  if (problems.length) return { mode: "direct", why: problems.join("; ") };
  return { mode: "systemd", why: `systemd ${env.version}, fd store of ${env.fdStoreMax}, FileDescriptorStorePreserve=${env.preserve}` };
}

// ---- the operations, replaceable in tests -------------------------------------------------------

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface SystemdOps {
  listenFds(): { fd: number; name: string }[];
  /** sd_notify (with fds: sd_pid_notify_with_fds); throws when it cannot be sent. */
  notify(state: string, fds?: readonly number[]): void;
  /** sd_notify_barrier: returns once the manager processed every earlier notification. */
  barrier(timeoutMs: number): void;
  run(argv: string[], timeoutMs: number): CommandResult;
  /** LIVEUPDATE_SESSION_GET_NAME; throws when fd is not a session. */
  sessionName(fd: number): string;
  /** RETRIEVE_FD(token) + read + FINISH of an incoming session fd (the fd stays open). */
  readBlob(sessionFd: number, token: bigint, name: string): Uint8Array;
  close(fd: number): void;
  /** Ends the process (after a requested jump, once luod has stopped). */
  exit(code: number): void;
  env: Record<string, string | undefined>;
}

export const realOps: SystemdOps = {
  listenFds: () => sdListenFds(),
  notify(state, fds = []) {
    if (!(fds.length ? sdNotifyWithFds(state, fds) : sdNotify(state))) throw new Error("$NOTIFY_SOCKET is not set");
  },
  barrier(timeoutMs) {
    if (!sdNotifyBarrier(timeoutMs)) throw new Error("$NOTIFY_SOCKET is not set");
  },
  run(argv, timeoutMs) {
    try {
      const r = Bun.spawnSync(argv, { stdin: "ignore", stdout: "pipe", stderr: "pipe", timeout: timeoutMs });
      return { code: r.exitCode ?? 128 + 9, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
    } catch (e) {
      return { code: 127, stdout: "", stderr: (e as Error).message };
    }
  },
  sessionName: (fd) => getSessionName(fd),
  readBlob(sessionFd, token, name) {
    const fd = retrieveFd(sessionFd, token, name);
    try {
      return readWhole(fd);
    } finally {
      closeFd(fd);
      finishSession(sessionFd, name);
    }
  },
  close: (fd) => closeFd(fd),
  exit: (code) => process.exit(code),
  env: process.env,
};

/** What luod knows about its manager, asking systemctl only when it could matter. */
export function probeEnvironment(ops: SystemdOps): Environment {
  const notifySocket = !!ops.env.NOTIFY_SOCKET;
  const fdStoreMax = /^\d+$/.test(ops.env.FDSTORE ?? "") ? Number(ops.env.FDSTORE) : 0;
  let unit: string | null = null;
  try {
    unit = unitFromCgroup(readFileSync("/proc/self/cgroup", "utf8"));
  } catch {
    /* no cgroup v2 */
  }
  let version: number | null = null;
  let preserve: string | null = null;
  if (notifySocket && fdStoreMax > 0) {
    version = parseSystemdVersion(ops.run(["systemctl", "show", "--property=Version", "--value"], 10_000).stdout);
    if (version === null) version = parseSystemdVersion(ops.run(["systemctl", "--version"], 10_000).stdout);
    if (unit) {
      const p = ops.run(["systemctl", "show", "--property=FileDescriptorStorePreserve", "--value", unit], 10_000);
      preserve = p.code === 0 && p.stdout.trim() ? p.stdout.trim() : null;
    }
  }
  return { notifySocket, fdStoreMax, version, unit, preserve };
}

/** 262 from "262.1-1", "systemd 262 (262.1-1)", "v262-rc1"; null otherwise. */
export function parseSystemdVersion(s: string): number | null {
  const m = /^(?:systemd\s+)?v?(\d{2,4})(?![\d])/.exec(s.trim());
  return m ? Number(m[1]) : null;
}

// ---- the handoff -----------------------------------------------------------------------------------

/** An outgoing session in the fd store; `entry` is its manifest entry (null: the manifest session). */
interface Outgoing {
  fd: number;
  session: string;
  fdname: string;
  entry: ManifestEntry | null;
}

/** The state file fdstore.json: which fd store entries are outgoing sessions, and whether a jump was asked for. */
interface FdStoreRecord {
  jumpRequested: boolean;
  outgoing: { fdname: string; session: string; entry: ManifestEntry | null }[];
}

/** What start() needs from the rest of the daemon. */
export interface DaemonParts {
  broker: Pick<Broker, "summary" | "list">;
  restored: { list(): RestoredSession[] };
  loader: { loaded(): NextKernel | null; unload(): void };
  /** How this start went (main.ts restore()): a restore_error means the manifest could not be read. */
  boot: { kind: string; restore_error?: string };
}

export interface HandoffOptions {
  requested: KexecMode;
  stateDir: string;
  log: Logger;
  ops?: SystemdOps;
  /** For tests: skip probing and use this environment. */
  environment?: Environment;
  now?: () => Date;
}

export class SystemdHandoff {
  readonly mode: "direct" | "systemd";
  readonly why: string;
  readonly env: Environment;
  /** Fds in $LISTEN_FDS that are not luod sessions (left open, unused). */
  readonly foreign: { fd: number; name: string }[] = [];
  private readonly ops: SystemdOps;
  private readonly log: Logger;
  private readonly files: StateFiles;
  private readonly now: () => Date;
  /** Incoming sessions PID 1 retrieved after the kexec and handed to us, by session name. */
  private readonly incoming = new Map<string, { fd: number; fdname: string }>();
  /** Dups of incoming sessions lent to restored.ts, until it closes them. */
  private readonly lent = new Map<number, string>();
  /** Outgoing sessions of the update in progress: fd → session name (createSessions, preserveBlob). */
  private readonly current = new Map<number, string>();
  /** This update's outgoing sessions in the fd store, by session name. */
  private readonly staged = new Map<string, Outgoing>();
  /** READY sessions of an update that never jumped (luod restarted), by client id. */
  private readonly carried = new Map<string, Outgoing>();
  private readyQueue: string[] = [];
  private jumping = false;
  private stopping = false;
  private unloadPending = false;
  private parts: DaemonParts | null = null;
  private statusTimer: ReturnType<typeof setInterval> | null = null;
  private lastStatus = "";
  private jumpStatus = "";

  constructor(opts: HandoffOptions) {
    this.ops = opts.ops ?? realOps;
    this.log = opts.log;
    this.files = new StateFiles(opts.stateDir);
    this.now = opts.now ?? (() => new Date());
    this.env = opts.environment ?? probeEnvironment(this.ops);
    const r = resolveKexecMode(opts.requested, this.env);
    this.mode = r.mode;
    this.why = r.why;
    this.adoptListenFds();
  }

  /** systemd was asked to kexec: luod only waits to be stopped, the update must not be aborted. */
  get jumpInProgress(): boolean {
    return this.jumping;
  }

  counts() {
    return { incoming: this.incoming.size, lent: this.lent.size, staged: this.staged.size, carried: this.carried.size };
  }

  // ---- start-up -----------------------------------------------------------------------------------

  private adoptListenFds(): void {
    const given = this.ops.listenFds();
    if (!given.length) return;
    const record = this.files.read<FdStoreRecord>("fdstore");
    const known = new Map((record?.outgoing ?? []).map((o) => [o.fdname, o]));
    const outgoing: Outgoing[] = [];
    for (const { fd, name } of given) {
      const fromName = sessionOfFdName(name);
      if (fromName === null) {
        this.log.warning(`$LISTEN_FDS: fd ${fd} "${name}" is not a luod session; left alone`);
        this.foreign.push({ fd, name });
        continue;
      }
      let session: string;
      try {
        session = this.ops.sessionName(fd);
      } catch (e) {
        this.log.warning(`fd store entry "${name}" is not a LUO session (${(e as Error).message}); removing it`);
        this.dropFromStore(name, fd);
        continue;
      }
      if (session !== fromName) this.log.warning(`fd store entry "${name}" holds session ${session}; the kernel's name counts`);
      const mine = known.get(name);
      if (mine) outgoing.push({ fd, session, fdname: name, entry: mine.entry });
      else if (this.incoming.has(session)) {
        this.log.warning(`the fd store holds session ${session} twice; closing fd ${fd}`);
        this.closeQuietly(fd);
      } else this.incoming.set(session, { fd, fdname: name });
    }
    if (this.incoming.size)
      this.log.notice(`systemd handed back ${this.incoming.size} session(s) from the fd store: ${[...this.incoming.keys()].join(", ")}`);
    if (outgoing.length) this.resumeOutgoing(outgoing, record?.jumpRequested ?? false);
  }

  /**
   * Restarted in the same boot with outgoing sessions in the fd store. If systemd's kexec is
   * still coming, wait for it. Otherwise the READY clients' sessions are carried into the next
   * update; an old manifest session is dropped (the next commit writes a new one).
   */
  private resumeOutgoing(outgoing: Outgoing[], jumpRequested: boolean): void {
    const pending = jumpRequested ? this.kexecPending() : null;
    if (pending) {
      for (const o of outgoing) this.staged.set(o.session, o);
      this.jumping = true;
      this.log.notice(`restarted while systemd's kexec is under way (${pending}): ${outgoing.length} session(s) stay in the fd store; waiting to be stopped`);
      this.jumpStatus = `kexec under way (${pending}): ${outgoing.length} session(s) in the fd store; waiting to be stopped`;
      return;
    }
    if (jumpRequested) {
      this.log.warning("the kexec requested before the restart is not under way any more");
      this.unloadPending = true;
    }
    for (const o of outgoing) {
      if (o.entry) this.carried.set(o.entry.id, o);
      else this.dropFromStore(o.fdname, o.fd);
    }
    this.saveRecord();
    if (this.carried.size)
      this.log.notice(
        `carrying ${this.carried.size} READY session(s) of an update that did not jump (luod restarted): ` +
          `${[...this.carried.keys()].join(", ")}; they join the next update`,
      );
  }

  /** A short reason when systemd is about to kexec (logind delaying it, or the job queued); null otherwise. */
  private kexecPending(): string | null {
    const jobs = this.ops.run(["systemctl", "list-jobs", "--no-legend", "--plain"], 10_000);
    if (jobs.code === 0 && /\bkexec\.target\b/.test(jobs.stdout)) return "kexec.target job queued";
    const p = this.ops.run(
      ["busctl", "get-property", "org.freedesktop.login1", "/org/freedesktop/login1", "org.freedesktop.login1.Manager", "PreparingForShutdown"],
      10_000,
    );
    if (p.code === 0 && /^b true/.test(p.stdout.trim())) return "logind is preparing the shutdown";
    return null;
  }

  /**
   * After the restore: incoming sessions nobody can claim any more leave the fd store (closing
   * an incoming session finishes it and frees its memory). Then STATUS= follows the daemon.
   */
  start(parts: DaemonParts): void {
    this.parts = parts;
    if (this.unloadPending) this.unloadKernel("the kexec it was loaded for did not happen");
    if (parts.boot.restore_error) {
      if (this.incoming.size) this.log.warning(`the manifest could not be read: keeping all ${this.incoming.size} session(s) in the fd store`);
    } else {
      // a session claimed before a restart stays too: luod holds it again until FINISHED (restored.ts)
      const wanted = new Set(parts.restored.list().filter((r) => r.state === "unclaimed" || r.state === "claimed").map((r) => r.session));
      for (const name of [...this.incoming.keys()]) {
        if (wanted.has(name)) continue;
        this.log.info(`session ${name} from the fd store cannot be claimed (finished, discarded, or not in the manifest): releasing it`);
        this.release(name);
      }
    }
    if (this.env.notifySocket) {
      this.lastStatus = ""; // main.ts sends READY=1 with its own STATUS next; the first tick replaces it
      this.statusTimer = setInterval(() => this.refreshStatus(), 1000);
      (this.statusTimer as { unref?: () => void }).unref?.();
    }
  }

  /**
   * SIGTERM/SIGINT. Returns true when a jump is under way: the update must not be aborted then.
   * The broker's update then stays "committing" with its timers running, so once the caller's
   * stop sequence is done (next turn of the loop) the process exits by itself: the fd store
   * holds everything, and systemd is waiting for luod to go.
   */
  stop(): boolean {
    this.stopping = true;
    if (this.statusTimer) clearInterval(this.statusTimer);
    this.statusTimer = null;
    if (this.jumping) setTimeout(() => this.ops.exit(0), 0);
    return this.jumping;
  }

  /** Broker hook: client `id` is READY. In systemd mode its session goes to the fd store. */
  clientReady(id: string): void {
    if (this.mode !== "systemd" || this.parts?.broker.summary().update?.dry_run) return;
    this.readyQueue.push(id);
    // one barrier for a burst of READYs; runs before the commit (queued after us)
    if (this.readyQueue.length === 1) queueMicrotask(() => this.flushReady());
  }

  /**
   * Broker hook: an update ended without a jump. Its sessions leave the fd store: the broker
   * closed those it created (close() unstaged them), but a PREPAREd session stays open for the
   * next update and must not be carried as READY meanwhile. In systemd mode the loaded kernel goes too.
   */
  aborted(dryRun: boolean): void {
    if (this.staged.size) {
      for (const o of this.staged.values()) this.removeFromStore(o.fdname);
      this.staged.clear();
      this.saveRecord();
    }
    if (this.mode !== "systemd" || dryRun) return;
    this.unloadKernel("the update was aborted");
  }

  private unloadKernel(why: string): void {
    this.unloadPending = false;
    if (!this.parts?.loader.loaded()) return;
    try {
      this.parts.loader.unload();
      this.log.notice(`unloaded the next kernel (${why}): while one is loaded every \`systemctl reboot\` is a kexec; \`luoctl load\` again to retry`);
    } catch (e) {
      this.log.warning(`unloading the next kernel (${why}) failed: ${(e as Error).message}`);
    }
  }

  // ---- the KernelPort seen by the broker and restored.ts -------------------------------------------

  wrap(k: KernelPort): KernelPort {
    // nothing to add: the broker and restored.ts talk to the kernel as they always did
    if (this.mode === "direct" && this.incoming.size === 0 && this.carried.size === 0) return k;
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const self = this;
    return {
      devicePresent: () => k.devicePresent(),
      finishSession: (fd, name) => k.finishSession(fd, name),
      dup: (fd) => k.dup(fd),
      kexecLoaded: () => k.kexecLoaded(),
      loadKernel: (kernelFd, initrdFd, cmdline) => k.loadKernel(kernelFd, initrdFd, cmdline),
      unloadKernel: () => k.unloadKernel(),
      release: () => k.release(),
      startSync: () => k.startSync(),
      createSessions(names) {
        const fds = k.createSessions(names);
        fds.forEach((fd, i) => self.current.set(fd, names[i]!));
        self.supersede(names);
        return fds;
      },
      preserveBlob(name, token, data) {
        const fd = k.preserveBlob(name, token, name === INTERNAL_SESSION ? self.withCarried(data) : data);
        self.current.set(fd, name);
        return fd;
      },
      retrieveSession(name) {
        const e = self.incoming.get(name);
        if (!e) return k.retrieveSession(name);
        const d = k.dup(e.fd);
        self.lent.set(d, name);
        return { kind: "retrieved", fd: d };
      },
      takeBlob(name, token) {
        if (!self.incoming.has(name)) return k.takeBlob(name, token);
        try {
          return { kind: "taken", data: self.ops.readBlob(self.incoming.get(name)!.fd, token, name) };
        } finally {
          self.release(name);
        }
      },
      close(fd) {
        const lentName = self.lent.get(fd);
        self.lent.delete(fd);
        const session = self.current.get(fd);
        self.current.delete(fd);
        k.close(fd);
        // restored.ts closes its copy after FINISHED or DISCARD: the session is done with
        if (lentName !== undefined && !self.stopping) self.release(lentName);
        // the broker closes its copies when an update ends without a jump
        if (session !== undefined) self.unstage(session);
      },
      jump() {
        if (self.mode === "direct") return k.jump();
        self.jumpThroughSystemd();
        // systemd will stop luod: the broker stays "committing" until then (main.ts does not abort it)
        return "delegated to systemd";
      },
    };
  }

  // ---- staging ------------------------------------------------------------------------------------

  private flushReady(): void {
    const ids = this.readyQueue;
    this.readyQueue = [];
    const clients = new Map((this.parts?.broker.list() ?? []).map((c) => [c.id, c]));
    let n = 0;
    for (const id of ids) {
      const c = clients.get(id);
      const fd = c?.session ? this.fdOf(c.session) : undefined;
      if (!c || !c.session || fd === undefined || this.staged.has(c.session)) continue;
      const entry = manifestEntry(c, c.session, c.since, this.now().toISOString());
      if (this.stage({ fd, session: c.session, fdname: fdNameOf(c.session), entry })) n++;
    }
    if (!n) return;
    this.saveRecord();
    try {
      this.ops.barrier(10_000);
    } catch (e) {
      this.log.warning(`sd_notify BARRIER after staging ${n} session(s): ${(e as Error).message}`);
    }
  }

  /** FDSTORE=1 for one outgoing session. False (and a warning) when it cannot be sent or there is no room. */
  private stage(o: Outgoing): boolean {
    if (this.storeUsed() >= this.env.fdStoreMax) {
      this.log.warning(`no room in the fd store (FileDescriptorStoreMax=${this.env.fdStoreMax}) for ${o.session}; it is staged at the commit or the update fails`);
      return false;
    }
    try {
      this.ops.notify(`FDSTORE=1\nFDNAME=${o.fdname}\nFDPOLL=0`, [o.fd]);
    } catch (e) {
      this.log.warning(`FDSTORE ${o.session}: ${(e as Error).message}`);
      return false;
    }
    this.staged.set(o.session, o);
    return true;
  }

  /** A session of the update in progress was closed (aborted update): out of the fd store. */
  private unstage(session: string): void {
    const o = this.staged.get(session);
    if (!o) return;
    this.staged.delete(session);
    this.removeFromStore(o.fdname);
    this.saveRecord();
  }

  /** New sessions for these clients: their carried sessions from before a restart are superseded. */
  private supersede(names: string[]): void {
    let changed = false;
    for (const name of names) {
      const id = parseSessionName(name)?.id;
      const old = id === undefined ? undefined : this.carried.get(id);
      if (!old) continue;
      this.carried.delete(id!);
      this.log.info(`client ${id} takes part in a new update: dropping its carried session ${old.session}`);
      this.dropFromStore(old.fdname, old.fd);
      changed = true;
    }
    if (changed) this.saveRecord();
  }

  /** The broker's manifest plus the carried sessions of clients that are not in it. */
  private withCarried(data: Uint8Array): Uint8Array {
    if (!this.carried.size) return data;
    const m = decodeManifest(data);
    const present = new Set(m.entries.map((e) => e.id));
    const extra = [...this.carried.values()].filter((o) => o.entry && !present.has(o.entry.id)).map((o) => o.entry!);
    m.entries.push(...extra);
    this.log.notice(`update ${m.attempt}: the manifest also lists ${extra.length} carried session(s)`);
    return encodeManifest(m);
  }

  private jumpThroughSystemd(): void {
    const missing: Outgoing[] = [];
    for (const [fd, session] of this.current) {
      if (this.staged.has(session)) continue;
      const id = parseSessionName(session)?.id;
      const c = id === undefined ? undefined : this.parts?.broker.list().find((x) => x.id === id);
      const entry = c ? manifestEntry(c, session, c.since, this.now().toISOString()) : null;
      missing.push({ fd, session, fdname: fdNameOf(session), entry });
    }
    const room = this.env.fdStoreMax - this.storeUsed();
    if (missing.length > room)
      throw new ProtocolError("ENOSPC", `the fd store is too small: ${missing.length} more session(s) need room, ${room} left (FileDescriptorStoreMax=${this.env.fdStoreMax})`);
    for (const o of missing)
      if (!this.stage(o)) throw new ProtocolError("EIO", `putting ${o.session} in the fd store failed`);
    this.saveRecord(true);
    try {
      this.ops.barrier(10_000);
    } catch (e) {
      this.saveRecord(false);
      throw new ProtocolError("EIO", `the service manager did not confirm the fd store: ${(e as Error).message}`);
    }
    const total = this.staged.size + this.carried.size;
    this.log.notice(`${total} session(s) are in the fd store (${this.carried.size} carried); asking systemd to kexec`);
    const r = this.ops.run(["systemctl", "kexec", "--no-wall", "--no-ask-password"], 60_000);
    if (r.code !== 0) {
      this.saveRecord(false);
      const why = (r.stderr || r.stdout).trim().split("\n").pop() || `exit code ${r.code}`;
      throw new ProtocolError("EIO", `systemctl kexec failed: ${why}`);
    }
    this.jumping = true;
    this.jumpStatus = `kexec requested from systemd: ${total} session(s) in the fd store; waiting to be stopped`;
    this.setStatus(this.jumpStatus);
    this.log.notice("systemd accepted the kexec: luod waits to be stopped, the fd store carries the sessions");
  }

  // ---- helpers ------------------------------------------------------------------------------------

  private fdOf(session: string): number | undefined {
    for (const [fd, name] of this.current) if (name === session) return fd;
    return undefined;
  }

  private storeUsed(): number {
    return this.incoming.size + this.staged.size + this.carried.size;
  }

  private saveRecord(jumpRequested = this.jumping): void {
    const outgoing = [...this.staged.values(), ...this.carried.values()].map((o) => ({ fdname: o.fdname, session: o.session, entry: o.entry }));
    if (!outgoing.length && !jumpRequested) this.files.remove("fdstore");
    else this.files.write<FdStoreRecord>("fdstore", { jumpRequested, outgoing });
  }

  /** Done with an incoming session: out of the fd store, our fd closed (finishing it if it was the last). */
  private release(name: string): void {
    const e = this.incoming.get(name);
    if (!e) return;
    this.incoming.delete(name);
    this.dropFromStore(e.fdname, e.fd);
  }

  private dropFromStore(fdname: string, fd: number): void {
    this.removeFromStore(fdname);
    this.closeQuietly(fd);
  }

  private removeFromStore(fdname: string): void {
    try {
      this.ops.notify(`FDSTOREREMOVE=1\nFDNAME=${fdname}`);
    } catch (e) {
      this.log.warning(`FDSTOREREMOVE ${fdname}: ${(e as Error).message}`);
    }
  }

  private closeQuietly(fd: number): void {
    try {
      this.ops.close(fd);
    } catch (e) {
      this.log.warning(`close(${fd}): ${(e as Error).message}`);
    }
  }

  private refreshStatus(): void {
    if (!this.parts) return;
    this.setStatus(this.jumping ? this.jumpStatus : statusLine(this.mode, this.parts, this.counts()));
  }

  private setStatus(line: string): void {
    if (line === this.lastStatus || !this.env.notifySocket) return;
    this.lastStatus = line;
    try {
      this.ops.notify(`STATUS=${line}`);
    } catch (e) {
      this.log.warning(`sd_notify STATUS: ${(e as Error).message}`);
    }
  }
}

/** The STATUS= line while luod is not jumping. */
export function statusLine(mode: string, parts: DaemonParts, counts: { incoming: number; staged: number; carried: number }): string {
  const s = parts.broker.summary();
  const u = s.update;
  const store = counts.staged + counts.carried ? `; ${counts.staged + counts.carried} session(s) in the fd store` : "";
  if (u && s.phase === "preparing") return `update ${u.attempt}${u.dry_run ? " (dry run)" : ""}: ${u.ready}/${u.total} client(s) READY${store}`;
  if (u) return `update ${u.attempt}${u.dry_run ? " (dry run)" : ""}: all ${u.total} client(s) READY, committing${store}`;
  const unclaimed = parts.restored.list().filter((r) => r.state === "unclaimed").length;
  const k = parts.loader.loaded();
  return (
    `idle, ${mode} mode, ${parts.boot.kind}: ${s.clients.subscribed} client(s) subscribed, ${unclaimed} restored session(s) to claim` +
    `${counts.carried ? `, ${counts.carried} carried session(s)` : ""}, ${k ? `next kernel ${k.version.split(" ")[0]} loaded` : "no kernel loaded"}`
  );
}

// luod as a systemd service (docs/systemd.md): the handoff between luod and PID 1 across a jump.
// The mode is chosen in kexec-mode.ts; the fd store's contents and its record are fd-store.ts.
//
// Whatever the mode, sessions that come back in $LISTEN_FDS after a kexec are luod's: PID 1
// already retrieved them, so luod never RETRIEVE_SESSIONs them by name (that would fail, EINVAL).
// SystemdHandoff wraps the KernelPort so that the broker and restored.ts use them without knowing:
// retrieveSession() returns a dup of the fd, takeBlob("luod") reads the manifest from it. An
// entry leaves the fd store (FDSTOREREMOVE=1) when luod is done with it: FINISHED or DISCARD of a
// restored session, the manifest once read, the sessions of an aborted update.
//
// In systemd mode the wrapped port's jump() stages whatever is not yet in the fd store, asks
// systemd to kexec and returns "delegated to systemd"; a restarted luod carries READY sessions of
// an update that did not jump into the next one (fd-store.ts).
import type { KernelPort } from "./kernel-port";
import type { Logger } from "./log";
import { MESSAGE_ID } from "./message-ids";
import type { Broker, NextKernel } from "./broker";
import type { RestoredSession } from "./restored";
import { manifestEntry } from "./manifest";
import { StateFiles } from "./state-files";
import { FdStore, fdNameOf, type Outgoing } from "./fd-store";
import { probeEnvironment, resolveKexecMode, type Environment, type KexecMode } from "./kexec-mode";
import { kexecPending, realOps, type SystemdOps } from "./service-manager";
import { StatusNotifier, statusLine } from "./systemd-status";
import { ProtocolError } from "../wire/errors";
import { INTERNAL_SESSION, parseSessionName } from "../wire/ids";

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
  private readonly ops: SystemdOps;
  private readonly log: Logger;
  private readonly now: () => Date;
  /** Incoming (handed back by PID 1), staged and carried sessions: what luod has in the fd store. */
  private readonly store: FdStore;
  /** Dups of incoming sessions lent to restored.ts, until it closes them. */
  private readonly lent = new Map<number, string>();
  /** Outgoing sessions of the update in progress: fd → session name (createSessions, preserveBlob). */
  private readonly current = new Map<number, string>();
  private readyQueue: string[] = [];
  private jumping = false;
  private stopping = false;
  private unloadPending = false;
  private parts: DaemonParts | null = null;
  private readonly status: StatusNotifier;
  private statusTimer: ReturnType<typeof setInterval> | null = null;
  private jumpStatus = "";

  constructor(opts: HandoffOptions) {
    this.ops = opts.ops ?? realOps;
    this.log = opts.log;
    const files = new StateFiles(opts.stateDir, opts.log);
    this.now = opts.now ?? (() => new Date());
    this.env = opts.environment ?? probeEnvironment(this.ops);
    this.store = new FdStore(this.ops, this.log, files, this.env.fdStoreMax);
    this.status = new StatusNotifier(this.ops, this.log, this.env.notifySocket);
    const r = resolveKexecMode(opts.requested, this.env);
    this.mode = r.mode;
    this.why = r.why;
    this.adoptListenFds();
  }

  /** Fds in $LISTEN_FDS that are not luod sessions (left open, unused). */
  get foreign(): readonly { fd: number; name: string }[] {
    return this.store.foreign;
  }

  /** systemd was asked to kexec: luod only waits to be stopped, the update must not be aborted. */
  get jumpInProgress(): boolean {
    return this.jumping;
  }

  counts() {
    return { incoming: this.store.incoming.size, lent: this.lent.size, staged: this.store.staged.size, carried: this.store.carried.size };
  }

  // ---- start-up -----------------------------------------------------------------------------------

  private adoptListenFds(): void {
    const given = this.ops.listenFds();
    if (!given.length) return;
    const { outgoing, jumpRequested } = this.store.adopt(given);
    if (this.store.incoming.size)
      this.log.notice(`systemd handed back ${this.store.incoming.size} session(s) from the fd store: ${[...this.store.incoming.keys()].join(", ")}`);
    if (outgoing.length) this.resumeOutgoing(outgoing, jumpRequested);
  }

  /**
   * Restarted in the same boot with outgoing sessions in the fd store. If systemd's kexec is
   * still coming, wait for it. Otherwise the READY clients' sessions are carried into the next
   * update; an old manifest session is dropped (the next commit writes a new one).
   */
  private resumeOutgoing(outgoing: Outgoing[], jumpRequested: boolean): void {
    const pending = jumpRequested ? kexecPending(this.ops) : null;
    if (pending) {
      for (const o of outgoing) this.store.staged.set(o.session, o);
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
      if (o.entry) this.store.carried.set(o.entry.id, o);
      else this.store.drop(o.fdname, o.fd);
    }
    this.saveRecord();
    if (this.store.carried.size)
      this.log.notice(
        `carrying ${this.store.carried.size} READY session(s) of an update that did not jump (luod restarted): ` +
          `${[...this.store.carried.keys()].join(", ")}; they join the next update`,
      );
  }

  /**
   * After the restore: incoming sessions nobody can claim any more leave the fd store (closing
   * an incoming session finishes it and frees its memory). Then STATUS= follows the daemon.
   */
  start(parts: DaemonParts): void {
    this.parts = parts;
    if (this.unloadPending) this.unloadKernel("the kexec it was loaded for did not happen");
    if (parts.boot.restore_error) {
      if (this.store.incoming.size) this.log.warning(`the manifest could not be read: keeping all ${this.store.incoming.size} session(s) in the fd store`);
    } else {
      // a session claimed before a restart stays too: luod holds it again until FINISHED (restored.ts)
      const wanted = new Set(parts.restored.list().filter((r) => r.state === "unclaimed" || r.state === "claimed").map((r) => r.session));
      for (const name of [...this.store.incoming.keys()]) {
        if (wanted.has(name)) continue;
        this.log.info(`session ${name} from the fd store cannot be claimed (finished, discarded, or not in the manifest): releasing it`);
        this.store.release(name);
      }
    }
    if (this.env.notifySocket) {
      this.status.forget(); // main.ts sends READY=1 with its own STATUS next; the first tick replaces it
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

  /** Broker hook: client `id`'s READY session is carried into the next update (an expected client that need not reconnect). */
  carries(id: string): boolean {
    return this.store.carried.has(id);
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
    if (this.store.staged.size) {
      for (const o of this.store.staged.values()) this.store.remove(o.fdname);
      this.store.staged.clear();
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
    if (this.mode === "direct" && this.store.incoming.size === 0 && this.store.carried.size === 0) return k;
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
        self.store.supersede(names, self.jumping);
        return fds;
      },
      preserveBlob(name, token, data) {
        const fd = k.preserveBlob(name, token, name === INTERNAL_SESSION ? self.store.withCarried(data) : data);
        self.current.set(fd, name);
        return fd;
      },
      retrieveSession(name) {
        const e = self.store.incoming.get(name);
        if (!e) return k.retrieveSession(name);
        const d = k.dup(e.fd);
        self.lent.set(d, name);
        return { kind: "retrieved", fd: d };
      },
      takeBlob(name, token) {
        if (!self.store.incoming.has(name)) return k.takeBlob(name, token);
        try {
          return { kind: "taken", data: self.ops.readBlob(self.store.incoming.get(name)!.fd, token, name) };
        } finally {
          self.store.release(name);
        }
      },
      close(fd) {
        const lentName = self.lent.get(fd);
        self.lent.delete(fd);
        const session = self.current.get(fd);
        self.current.delete(fd);
        k.close(fd);
        // restored.ts closes its copy after FINISHED or DISCARD: the session is done with
        if (lentName !== undefined && !self.stopping) self.store.release(lentName);
        // the broker closes its copies when an update ends without a jump
        if (session !== undefined) self.store.unstage(session, self.jumping);
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
      // an update aborted since the READY (a FAIL in the same batch) has nothing left to stage
      if (c?.state !== "ready") continue;
      const fd = c.session ? this.fdOf(c.session) : undefined;
      if (!c.session || fd === undefined || this.store.staged.has(c.session)) continue;
      const entry = manifestEntry(c, c.session, c.since, this.now().toISOString());
      if (this.store.put({ fd, session: c.session, fdname: fdNameOf(c.session), entry })) n++;
    }
    if (!n) return;
    this.saveRecord();
    try {
      this.ops.barrier(10_000);
    } catch (e) {
      this.log.warning(`sd_notify BARRIER after staging ${n} session(s): ${(e as Error).message}`);
    }
  }

  private jumpThroughSystemd(): void {
    const missing: Outgoing[] = [];
    for (const [fd, session] of this.current) {
      if (this.store.staged.has(session)) continue;
      const id = parseSessionName(session)?.id;
      const c = id === undefined ? undefined : this.parts?.broker.list().find((x) => x.id === id);
      const entry = c ? manifestEntry(c, session, c.since, this.now().toISOString()) : null;
      missing.push({ fd, session, fdname: fdNameOf(session), entry });
    }
    const room = this.env.fdStoreMax - this.store.used();
    if (missing.length > room)
      throw new ProtocolError("ENOSPC", `the fd store is too small: ${missing.length} more session(s) need room, ${room} left (FileDescriptorStoreMax=${this.env.fdStoreMax})`);
    for (const o of missing)
      if (!this.store.put(o)) throw new ProtocolError("EIO", `putting ${o.session} in the fd store failed`);
    this.saveRecord(true);
    try {
      this.ops.barrier(10_000);
    } catch (e) {
      this.saveRecord(false);
      throw new ProtocolError("EIO", `the service manager did not confirm the fd store: ${(e as Error).message}`);
    }
    const total = this.store.staged.size + this.store.carried.size;
    this.log.notice(`${total} session(s) are in the fd store (${this.store.carried.size} carried); asking systemd to kexec`);
    const r = this.ops.run(["systemctl", "kexec", "--no-wall", "--no-ask-password"], 60_000);
    if (r.code !== 0) {
      this.saveRecord(false);
      const why = (r.stderr || r.stdout).trim().split("\n").pop() || `exit code ${r.code}`;
      throw new ProtocolError("EIO", `systemctl kexec failed: ${why}`);
    }
    this.jumping = true;
    this.jumpStatus = `kexec requested from systemd: ${total} session(s) in the fd store; waiting to be stopped`;
    this.status.set(this.jumpStatus);
    this.log.notice("systemd accepted the kexec: luod waits to be stopped, the fd store carries the sessions", { MESSAGE_ID: MESSAGE_ID.kexecAccepted });
  }

  // ---- helpers ------------------------------------------------------------------------------------

  private fdOf(session: string): number | undefined {
    for (const [fd, name] of this.current) if (name === session) return fd;
    return undefined;
  }

  private saveRecord(jumpRequested = this.jumping): void {
    this.store.save(jumpRequested);
  }

  private refreshStatus(): void {
    if (!this.parts) return;
    this.status.set(this.jumping ? this.jumpStatus : statusLine(this.mode, this.parts, this.counts()));
  }
}

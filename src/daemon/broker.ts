// The live-update barrier: subscribed clients, the phases of one update, the manifest and the jump.
//
//   idle → preparing (sessions created, fds sent, deadline running)
//        → committing (all READY, manifest preserved, sync) → reboot(KEXEC)
//   any failure (FAIL, deadline, a client lost before READY, ABORT, reboot returning) → idle
//
// luod keeps its own copy of every outgoing session fd until the jump: an outgoing session dies
// with its last fd (docs/kernel.md#session-lifetimes), so a client may exit after READY and lose nothing.
//
// A client may PREPARE while idle: its session is created then, and it preserves its memfds at
// once. Contents stay live after PRESERVE_FD, only the size freezes (docs/kernel.md#memfd-preservation), so the
// heavy pinning leaves the barrier; START_PRESERVATION then only asks it to quiesce. A prepared
// session outlives aborted updates and ends with the subscription.
import type { KernelPort } from "./kernel-port";
import type { Logger } from "./log";
import { encodeManifest, manifestEntry, MANIFEST_TOKEN, MANIFEST_VERSION, MANIFEST_FORMAT, type Manifest } from "./manifest";
import { ProtocolError, errorCodeOf, type ErrorCode } from "../wire/errors";
import { sessionNameFor, INTERNAL_SESSION } from "../wire/ids";
import { abortedEvent, preservationRequestEvent, progressEvent, rebootingEvent, startPreservationEvent } from "../wire/events";
import { VERSION } from "../version";

/** One connection, as the broker sees it. */
export interface Peer {
  readonly serial: number;
  readonly cred: { pid: number; uid: number; gid: number };
  readonly unit: string | null;
  /** An array goes out in one write, its lines' fds (in order) with its first byte. */
  send(msg: object | readonly object[], fds?: number[]): boolean;
}

export type ClientState = "subscribed" | "prepared" | "preserving" | "ready";
interface Client {
  id: string;
  peer: Peer | null; // null: disconnected after READY, luod holds the session alone
  /** Captured at SUBSCRIBE: it must outlive the connection, it goes into the manifest. */
  owner: { uid: number; gid: number; pid: number; unit: string | null };
  state: ClientState;
  subscribedAt: Date;
  readyAt: Date | null;
  session: { name: string; fd: number } | null;
  /** The session came from PREPARE: it is not created by the update and survives its abort. */
  prepared: boolean;
}

export type Phase = "idle" | "preparing" | "committing";

export interface NextKernel {
  version: string;
  sha256: string;
  cmdline: string;
}

export type KexecOutcome =
  | { ok: true; dryRun: boolean; timings: Record<string, number> }
  | { ok: false; code: ErrorCode; message: string; timings: Record<string, number> };

interface Update {
  attempt: number;
  dryRun: boolean;
  admin: Peer | null;
  timeoutMs: number;
  deadline: number;
  t0: number;
  timings: Record<string, number>;
  participants: Client[];
  internalFd: number | null;
  readyCount: number;
  /** A PROGRESS event is scheduled (they are coalesced: one per 100 ms at most). */
  progressTimer: ReturnType<typeof setTimeout> | null;
  timer: ReturnType<typeof setTimeout>;
  ticker: ReturnType<typeof setInterval>;
  done: (o: KexecOutcome) => void;
}

export interface BrokerOptions {
  kernel: KernelPort;
  log: Logger;
  /** The kernel luod loaded for the jump (null: none). Read at KEXEC time. */
  nextKernel: () => NextKernel | null;
  /**
   * Wait this long between "every client READY" and the commit (fault drills: it opens the
   * window in which luod can be killed, or the loaded kernel removed, after the barrier).
   */
  commitDelayMs?: number;
  /** Numbers update attempts; never repeats within a boot (it names the sessions). */
  nextAttempt?: () => number;
  /** A client became READY (systemd-handoff.ts puts its session in the fd store). */
  onReady?: (id: string) => void;
  /** An update ended without a jump, a finished dry run included (systemd-handoff.ts empties its fd store of it, and unloads the kernel after a real one). */
  onAbort?: (dryRun: boolean) => void;
  now?: () => number;
}

export class Broker {
  private readonly clients = new Map<string, Client>();
  /** The same clients by connection: every request finds its client in O(1). */
  private readonly byPeer = new Map<Peer, Client>();
  private update: Update | null = null;
  private committing = false;
  private lastAttempt = 0;
  private readonly kernel: KernelPort;
  private readonly log: Logger;
  private readonly now: () => number;

  constructor(private readonly opts: BrokerOptions) {
    this.kernel = opts.kernel;
    this.log = opts.log;
    this.now = opts.now ?? Date.now;
  }

  get phase(): Phase {
    return this.update === null ? "idle" : this.committing ? "committing" : "preparing";
  }

  // ---- client requests -----------------------------------------------------------------------

  subscribe(peer: Peer, id: string): { id: string } {
    const existing = this.clients.get(id);
    if (existing && existing.peer === peer) return { id };
    if (this.update) throw new ProtocolError("EBUSY", `an update is in progress (${this.phase}); subscribe again after it`);
    if (existing?.peer) throw new ProtocolError("EEXIST", `${id} is already subscribed by pid ${existing.peer.cred.pid}`);
    const mine = this.clientOf(peer);
    if (mine) throw new ProtocolError("EEXIST", `this connection is already subscribed as ${mine.id}`);
    const owner = { uid: peer.cred.uid, gid: peer.cred.gid, pid: peer.cred.pid, unit: peer.unit };
    const client: Client = {
      id, peer, owner, state: "subscribed", subscribedAt: new Date(this.now()), readyAt: null, session: null, prepared: false,
    };
    this.clients.set(id, client);
    this.byPeer.set(peer, client);
    this.log.info(`client ${id} subscribed (pid ${peer.cred.pid}, uid ${peer.cred.uid})`);
    return { id };
  }

  /**
   * PREPARE: the client's session for the next update, created now. The caller sends `fd` with
   * the reply (luod keeps it). Asking again returns the same session.
   */
  prepare(peer: Peer, id?: string): { id: string; session: string; fd: number } {
    const c = this.requireClient(peer, id);
    if (this.update) throw new ProtocolError("EBUSY", `an update is in progress (${this.phase}): its START_PRESERVATION brings the session`);
    if (!c.session) {
      if (!this.kernel.devicePresent())
        throw new ProtocolError("ENODEV", "/dev/liveupdate is missing: this kernel has no LUO (CONFIG_LIVEUPDATE and liveupdate=on)");
      // a number of its own: the name must not collide with a session of this or an earlier attempt
      const name = sessionNameFor(c.id, this.nextAttempt());
      const [fd] = this.kernel.createSessions([name]);
      c.session = { name, fd: fd! };
      c.prepared = true;
      c.state = "prepared";
      this.log.info(`client ${c.id} prepared session ${name}`);
    }
    return { id: c.id, session: c.session.name, fd: c.session.fd };
  }

  ready(peer: Peer, id?: string): { id: string } {
    const c = this.requireClient(peer, id);
    if (!this.update || c.state === "subscribed" || c.state === "prepared")
      throw new ProtocolError("EBUSY", `no update is in progress: START_PRESERVATION has not come for ${c.id}`);
    if (c.state !== "ready") {
      c.state = "ready";
      c.readyAt = new Date(this.now());
      this.update.readyCount++;
      this.log.debug(`client ${c.id} is READY`);
      this.opts.onReady?.(c.id);
      this.progressSoon();
      this.maybeCommit();
    }
    return { id: c.id };
  }

  fail(peer: Peer, reason: string | undefined): void {
    const c = this.requireClient(peer);
    if (!this.update) throw new ProtocolError("EBUSY", "no update is in progress");
    this.abort("ECANCELED", `client ${c.id} sent FAIL${reason ? `: ${reason}` : ""}`);
  }

  unsubscribe(peer: Peer): void {
    const c = this.requireClient(peer);
    if (this.update) throw new ProtocolError("EBUSY", "an update is in progress; send FAIL to stop it");
    this.forget(c);
    this.log.info(`client ${c.id} unsubscribed`);
  }

  /** A connection went away. Before READY in an update that aborts it; after READY luod holds on. */
  peerClosed(peer: Peer): void {
    const c = this.clientOf(peer);
    if (!c) return;
    if (!this.update) {
      this.forget(c);
      this.log.info(`client ${c.id} disconnected`);
      return;
    }
    if (c.state === "ready") {
      this.byPeer.delete(peer);
      c.peer = null;
      this.log.info(`client ${c.id} disconnected after READY; luod holds its session`);
      return;
    }
    this.abort("ECANCELED", `client ${c.id} disconnected before READY`);
    this.forget(c);
  }

  // ---- admin requests ------------------------------------------------------------------------

  list() {
    return [...this.clients.values()].map((c) => ({
      id: c.id,
      ...c.owner,
      state: c.state,
      connected: c.peer !== null,
      since: c.subscribedAt.toISOString(),
      session: c.session?.name ?? null,
    }));
  }

  summary() {
    const u = this.update;
    const all = [...this.clients.values()];
    return {
      phase: this.phase,
      update: u && {
        attempt: u.attempt,
        dry_run: u.dryRun,
        ready: u.participants.filter((c) => c.state === "ready").length,
        total: u.participants.length,
        waiting: u.participants.filter((c) => c.state !== "ready").map((c) => c.id),
        remaining_ms: Math.max(0, u.deadline - this.now()),
      },
      clients: {
        subscribed: all.length,
        prepared: all.filter((c) => c.prepared).length,
        ready: all.filter((c) => c.state === "ready").length,
      },
    };
  }

  /** Runs one update. Resolves when it is aborted, finished as a dry run, or reboot() returned. */
  kexec(admin: Peer | null, opts: { timeoutMs: number; dryRun: boolean }): Promise<KexecOutcome> {
    if (this.update) return Promise.reject(new ProtocolError("EBUSY", `an update is already ${this.phase}`));
    if (!this.kernel.devicePresent())
      return Promise.reject(new ProtocolError("ENODEV", "/dev/liveupdate is missing: this kernel has no LUO (CONFIG_LIVEUPDATE and liveupdate=on)"));
    if (!opts.dryRun) {
      if (!this.opts.nextKernel())
        return Promise.reject(new ProtocolError("EINVAL", "no kernel is loaded by luod: run `luoctl load` first"));
      if (this.kernel.kexecLoaded() === false)
        return Promise.reject(new ProtocolError("EINVAL", "the kernel luod loaded is no longer loaded (kexec unloaded by someone else): run `luoctl load` again"));
    }
    const t0 = this.now();
    const attempt = this.nextAttempt();
    const participants = [...this.clients.values()];
    return new Promise<KexecOutcome>((resolve) => {
      const u: Update = {
        attempt, dryRun: opts.dryRun, admin, timeoutMs: opts.timeoutMs, deadline: t0 + opts.timeoutMs, t0,
        timings: {}, participants, internalFd: null, readyCount: 0, progressTimer: null,
        timer: setTimeout(() => this.onDeadline(), opts.timeoutMs),
        ticker: setInterval(() => this.progress(), 1000),
        done: resolve,
      };
      this.update = u;
      this.log.notice(`update ${attempt} started${opts.dryRun ? " (dry run)" : ""}: ${participants.length} client(s), READY due in ${opts.timeoutMs} ms`);
      if (!opts.dryRun) {
        // the page cache drains while clients prepare
        const dirty = this.kernel.startSync();
        if (dirty !== null) this.log.info(`update ${attempt}: ${Math.round(dirty / 1024)} MiB of page cache dirty: writing it back meanwhile`);
      }
      this.createSessions(u);
    });
  }

  /** Admin ABORT. Returns whether an update was running. */
  abortByAdmin(reason: string | undefined): boolean {
    if (!this.update) return false;
    if (this.committing) throw new ProtocolError("EBUSY", "the update is committing: too late to abort");
    this.abort("ECANCELED", `aborted by an administrator${reason ? `: ${reason}` : ""}`);
    return true;
  }

  shutdown(): void {
    if (this.update) this.abort("ECANCELED", "luod is stopping");
  }

  // ---- the update ----------------------------------------------------------------------------

  private createSessions(u: Update): void {
    const fresh = u.participants.filter((c) => !c.prepared);
    const names = fresh.map((c) => sessionNameFor(c.id, u.attempt));
    let fds: number[];
    try {
      fds = names.length ? this.kernel.createSessions(names) : [];
    } catch (e) {
      this.abort(errorCodeOf(e, "EIO"), `creating sessions failed: ${(e as Error).message}`);
      return;
    }
    u.timings.sessions_created_ms = this.now() - u.t0;
    const deadline = new Date(u.deadline).toISOString();
    // Every session is recorded before the first send: a send can close a connection (slow
    // consumer), which aborts the update, and the abort must find every fd to release.
    fresh.forEach((c, i) => (c.session = { name: names[i], fd: fds[i] }));
    for (const c of u.participants) c.state = "preserving";
    const request = preservationRequestEvent(u.attempt, u.timeoutMs, deadline);
    for (const c of u.participants) {
      if (this.update !== u) return; // aborted by a send that closed a connection
      const { name, fd } = c.session!;
      // a prepared client has its session fd already; the others get it with these lines
      const start = startPreservationEvent(c.id, name, u.attempt, c.prepared);
      // one write per client for both events (half the sendmsgs, one wakeup of the client)
      c.peer?.send([request, start], c.prepared ? [] : [fd]);
    }
    if (this.update !== u) return;
    u.timings.fds_sent_ms = this.now() - u.t0;
    this.progress();
    this.maybeCommit();
  }

  private maybeCommit(): void {
    const u = this.update;
    if (!u || this.committing || u.readyCount < u.participants.length) return;
    this.committing = true;
    u.timings.all_ready_ms = this.now() - u.t0;
    if (u.progressTimer) clearTimeout(u.progressTimer);
    u.progressTimer = null;
    this.progress(); // the operator sees "n/n ready" before the jump
    // Leave the promise chain: commit may end in reboot(), which never returns on success.
    const delay = this.opts.commitDelayMs ?? 0;
    if (delay > 0) {
      this.log.notice(`update ${u.attempt}: every client is READY; committing in ${delay} ms (--commit-delay)`);
      setTimeout(() => this.update === u && this.commit(u), delay);
    } else {
      queueMicrotask(() => this.commit(u));
    }
  }

  private commit(u: Update): void {
    const manifest: Manifest = {
      format: MANIFEST_FORMAT,
      version: MANIFEST_VERSION,
      luod: VERSION,
      attempt: u.attempt,
      createdAt: new Date(this.now()).toISOString(),
      kernel: { from: safe(() => this.kernel.release(), "unknown"), next: this.opts.nextKernel() },
      timings: u.timings,
      entries: u.participants.map((c) =>
        manifestEntry({ id: c.id, ...c.owner }, c.session!.name, c.subscribedAt.toISOString(), c.readyAt?.toISOString() ?? null),
      ),
    };
    try {
      u.timings.manifest_ms = this.now() - u.t0;
      manifest.timings = { ...u.timings };
      u.internalFd = this.kernel.preserveBlob(INTERNAL_SESSION, MANIFEST_TOKEN, encodeManifest(manifest));
    } catch (e) {
      this.abort(errorCodeOf(e, "EIO"), `preserving the manifest failed: ${(e as Error).message}`);
      return;
    }
    u.timings.manifest_preserved_ms = this.now() - u.t0;
    if (u.dryRun) {
      this.finish(u, { ok: true, dryRun: true, timings: { ...u.timings } }, "dry run complete");
      return;
    }
    u.timings.reboot_called_ms = this.now() - u.t0;
    this.log.notice(`update ${u.attempt}: all ${u.participants.length} client(s) READY, manifest preserved; jumping into the loaded kernel`);
    u.admin?.send(rebootingEvent(u.attempt, { ...u.timings }));
    try {
      // Returns "delegated to systemd" (or "jumped", from a fake kernel): the update stays
      // "committing" until luod is stopped (main.ts does not abort it then).
      this.kernel.jump();
    } catch (e) {
      // The freeze runs inside reboot(); on failure the kernel rolled everything back
      // (docs/kernel.md#the-freeze-and-its-rollback): report it and keep the host running. Never fall back to a cold reboot.
      this.abort(errorCodeOf(e, "EIO"), `${(e as Error).message}; the host keeps running`);
    }
  }

  private onDeadline(): void {
    const u = this.update;
    if (!u || this.committing) return;
    const late = u.participants.filter((c) => c.state !== "ready").map((c) => c.id);
    this.abort("ETIMEDOUT", `READY deadline of ${u.timeoutMs} ms passed; not ready: ${late.join(", ")}`);
  }

  private abort(code: ErrorCode, message: string): void {
    const u = this.update;
    if (!u) return;
    this.finish(u, { ok: false, code, message, timings: { ...u.timings } }, message);
  }

  /** Ends the update: every participant gets ABORTED, luod's session copies are released. */
  private finish(u: Update, outcome: KexecOutcome, reason: string): void {
    clearTimeout(u.timer);
    clearInterval(u.ticker);
    if (u.progressTimer) clearTimeout(u.progressTimer);
    this.update = null;
    this.committing = false;
    for (const c of u.participants) {
      c.readyAt = null;
      if (!c.peer) {
        this.forget(c); // gone after READY: nothing left to subscribe
        continue;
      }
      if (!c.prepared) this.dropSession(c);
      c.state = c.prepared ? "prepared" : "subscribed";
      c.peer.send(abortedEvent(u.attempt, reason));
    }
    if (u.internalFd !== null) this.closeQuietly(u.internalFd);
    if (outcome.ok) this.log.notice(`update ${u.attempt}: ${reason}`);
    else this.log.warning(`update ${u.attempt} aborted: ${reason}`);
    u.done(outcome);
    this.opts.onAbort?.(u.dryRun);
  }

  /** READY events come in bursts (1000 clients): one PROGRESS per 100 ms is enough for a human. */
  private progressSoon(): void {
    const u = this.update;
    if (!u?.admin || u.progressTimer) return;
    u.progressTimer = setTimeout(() => {
      u.progressTimer = null;
      if (this.update === u) this.progress();
    }, 100);
  }

  private progress(): void {
    const u = this.update;
    if (!u?.admin) return;
    const s = this.summary().update!;
    u.admin.send(progressEvent(this.phase, s));
  }

  // ---- helpers -------------------------------------------------------------------------------

  private clientOf(peer: Peer): Client | undefined {
    return this.byPeer.get(peer);
  }

  /** The client leaves the broker; luod's copy of its session (prepared, or held after READY) goes. */
  private forget(c: Client): void {
    this.dropSession(c);
    this.clients.delete(c.id);
    if (c.peer) this.byPeer.delete(c.peer);
  }

  private dropSession(c: Client): void {
    if (c.session) this.closeQuietly(c.session.fd);
    c.session = null;
    c.prepared = false;
  }

  private nextAttempt(): number {
    return this.opts.nextAttempt ? this.opts.nextAttempt() : ++this.lastAttempt;
  }

  /** The client of this connection; `id`, when a request names one, must be its id. */
  private requireClient(peer: Peer, id?: string): Client {
    const c = this.clientOf(peer);
    if (!c) throw new ProtocolError("ENOENT", "this connection has not subscribed (send SUBSCRIBE first)");
    if (id !== undefined && id !== c.id) throw new ProtocolError("EINVAL", `this connection is subscribed as ${c.id}, not ${id}`);
    return c;
  }

  private closeQuietly(fd: number): void {
    try {
      this.kernel.close(fd);
    } catch (e) {
      this.log.warning(`close(${fd}): ${(e as Error).message}`);
    }
  }
}


function safe<T>(f: () => T, fallback: T): T {
  try {
    return f();
  } catch {
    return fallback;
  }
}

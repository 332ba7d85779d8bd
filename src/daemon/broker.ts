// The broker: the one object server/dispatch, systemd-handoff and main talk to. It answers the
// clients' requests (SUBSCRIBE, PREPARE, READY, FAIL, UNSUBSCRIBE) and the admin's (LIST, STATUS,
// KEXEC, ABORT); subscribers.ts holds the clients, update.ts runs the update.
//
// A client may PREPARE while idle: its session is created then, and it preserves its memfds at
// once. Contents stay live after PRESERVE_FD, only the size freezes (docs/kernel.md#memfd-preservation), so the
// heavy pinning leaves the barrier; START_PRESERVATION then only asks it to quiesce. A prepared
// session outlives aborted updates and ends with the subscription.
import type { KernelPort } from "./kernel-port";
import type { Logger, LogFields } from "./log";
import { MESSAGE_ID } from "./message-ids";
import { Subscribers, names, type Client, type Peer } from "./subscribers";
import { UpdateRunner, type KexecOptions, type KexecOutcome, type Phase, type UpdateOptions } from "./update";
import { ExpectedRecord, type ExpectedEntry } from "./expected";
import type { StateFiles } from "./state-files";
import { ProtocolError } from "../wire/errors";
import { sessionNameFor } from "../wire/ids";

export type { Peer, ClientState } from "./subscribers";
export type { Phase, NextKernel, KexecOutcome } from "./update";

export interface BrokerOptions extends UpdateOptions {
  kernel: KernelPort;
  log: Logger;
  /** Numbers update attempts; never repeats within a boot (it names the sessions). */
  nextAttempt?: () => number;
  now?: () => number;
  /**
   * Where the expected subscriptions are kept across a luod restart (`subscriptions.json`);
   * without it they still outlive a disconnect, but not luod.
   */
  files?: StateFiles;
  /** Subscriptions (connected or expected) one uid may hold; read at each SUBSCRIBE. Default: no limit. */
  maxSubscriptionsPerUid?: number;
  /** Whether client `id`'s READY session is carried into the next update without it (systemd's fd store). */
  carried?: (id: string) => boolean;
}

export class Broker {
  private readonly subscribers: Subscribers;
  private readonly updates: UpdateRunner;
  private lastAttempt = 0;
  private readonly kernel: KernelPort;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly expected: ExpectedRecord | null;

  constructor(private readonly opts: BrokerOptions) {
    this.kernel = opts.kernel;
    this.log = opts.log;
    this.now = opts.now ?? Date.now;
    this.subscribers = new Subscribers(this.kernel, this.log);
    this.updates = new UpdateRunner(opts, {
      kernel: this.kernel,
      log: this.log,
      now: this.now,
      subscribers: this.subscribers,
      nextAttempt: () => this.nextAttempt(),
      missing: () => this.missing(),
    });
    this.expected = opts.files ? new ExpectedRecord(opts.files, this.log, () => this.expectedEntries()) : null;
    for (const e of this.expected?.load() ?? []) {
      if (this.subscribers.get(e.id)) continue;
      this.subscribers.add({
        id: e.id, peer: null, owner: { uid: e.uid, gid: e.gid, pid: e.pid, unit: e.unit }, state: "subscribed",
        subscribedAt: validDate(e.since, this.now()), readyAt: null, session: null, prepared: false,
      });
    }
    const n = this.subscribers.all().length;
    if (n) this.log.notice(`expecting ${n} subscribed client(s) back from before luod restarted: ${names(this.subscribers.all())}`);
  }

  get phase(): Phase {
    return this.updates.phase;
  }

  // ---- client requests -----------------------------------------------------------------------

  /**
   * `reserved`: the id is held for another uid (its restored session waits to be claimed). A held
   * id is refused the same way whoever holds it; only the holder's own uid (or root) learns its pid.
   * An expected client (subscribed, not connected) is taken up again by its own uid (and its
   * systemd service, when both sides have one: the rule of restored.ts) or root; to another uid it
   * is an id held like any other.
   */
  subscribe(peer: Peer, id: string, opts: { reserved?: boolean } = {}): { id: string } {
    const existing = this.subscribers.get(id);
    if (existing && existing.peer === peer) return { id };
    if (this.updates.inProgress) throw new ProtocolError("EBUSY", `an update is in progress (${this.phase}); subscribe again after it`);
    if (opts.reserved) throw idTaken(id);
    const uid = peer.cred.uid;
    const mine = uid === 0 || (existing !== undefined && uid === existing.owner.uid);
    if (existing?.peer) throw idTaken(id, mine ? ` (subscribed by pid ${existing.peer.cred.pid})` : "");
    if (existing && !mine) throw idTaken(id);
    const held = this.subscribers.clientOf(peer);
    if (held) throw new ProtocolError("EEXIST", `this connection is already subscribed as ${held.id}`);
    if (existing) {
      const unit = peer.unit;
      if (uid !== 0 && existing.owner.unit && unit && unit !== existing.owner.unit)
        throw new ProtocolError("EPERM", `${id} was subscribed from unit ${existing.owner.unit}, not ${unit}`);
      this.subscribers.attach(existing, peer);
      existing.owner = { uid, gid: peer.cred.gid, pid: peer.cred.pid, unit };
      this.expected?.save();
      this.log.info(`client ${id} is back (pid ${peer.cred.pid}, uid ${uid})`, clientFields(existing));
      return { id };
    }
    const limit = this.opts.maxSubscriptionsPerUid;
    if (limit !== undefined && this.subscribers.all().filter((c) => c.owner.uid === uid).length >= limit)
      throw new ProtocolError("ENOSPC", `uid ${uid} holds ${limit} subscriptions already (max-connections-per-uid), counting the expected ones: UNSUBSCRIBE, or luoctl evict, one of them`);
    const owner = { uid, gid: peer.cred.gid, pid: peer.cred.pid, unit: peer.unit };
    const client: Client & { peer: Peer } = {
      id, peer, owner, state: "subscribed", subscribedAt: new Date(this.now()), readyAt: null, session: null, prepared: false,
    };
    this.subscribers.add(client);
    this.expected?.save();
    this.log.info(`client ${id} subscribed (pid ${peer.cred.pid}, uid ${uid})`, clientFields(client));
    return { id };
  }

  /**
   * PREPARE: the client's session for the next update, created now. The caller sends `fd` with
   * the reply (luod keeps it). Asking again returns the same session.
   */
  prepare(peer: Peer, id?: string): { id: string; session: string; fd: number } {
    const c = this.subscribers.requireClient(peer, id);
    if (this.updates.inProgress) throw new ProtocolError("EBUSY", `an update is in progress (${this.phase}): its START_PRESERVATION brings the session`);
    if (!c.session) {
      if (!this.kernel.devicePresent())
        throw new ProtocolError("ENODEV", "/dev/liveupdate is missing: this kernel has no LUO (CONFIG_LIVEUPDATE and liveupdate=on)");
      // a number of its own: the name must not collide with a session of this or an earlier attempt
      const name = sessionNameFor(c.id, this.nextAttempt());
      const [fd] = this.kernel.createSessions([name]);
      c.session = { name, fd: fd! };
      c.prepared = true;
      c.state = "prepared";
      this.log.info(`client ${c.id} prepared session ${name}`, clientFields(c));
    }
    return { id: c.id, session: c.session.name, fd: c.session.fd };
  }

  ready(peer: Peer, id?: string): { id: string } {
    const c = this.subscribers.requireClient(peer, id);
    this.updates.ready(c);
    return { id: c.id };
  }

  fail(peer: Peer, reason: string | undefined): void {
    const c = this.subscribers.requireClient(peer);
    if (!this.updates.inProgress) throw new ProtocolError("EBUSY", "no update is in progress");
    this.updates.abort("client_failed", "ECANCELED", `client ${c.id} sent FAIL${reason ? `: ${reason}` : ""}`, { about: [c], anonymous: "another client sent FAIL" });
  }

  unsubscribe(peer: Peer): void {
    const c = this.subscribers.requireClient(peer);
    if (this.updates.inProgress) throw new ProtocolError("EBUSY", "an update is in progress; send FAIL to stop it");
    this.subscribers.forget(c);
    this.expected?.save();
    this.log.info(`client ${c.id} unsubscribed`, clientFields(c));
  }

  /**
   * A connection went away. Its subscription stays, expected back (until UNSUBSCRIBE or EVICT):
   * an update refuses to start without it. During an update, before READY, that aborts the update;
   * after READY luod holds its session. A PREPAREd session is released (its client is gone).
   */
  peerClosed(peer: Peer): void {
    const c = this.subscribers.clientOf(peer);
    if (!c) return;
    if (this.updates.inProgress && c.state === "ready") {
      this.subscribers.detach(c);
      this.log.info(`client ${c.id} disconnected after READY; luod holds its session`, clientFields(c));
      return;
    }
    if (this.updates.inProgress)
      this.updates.abort("client_disconnected", "ECANCELED", `client ${c.id} disconnected before READY`, { about: [c], anonymous: "another client disconnected before READY" });
    this.subscribers.detach(c);
    this.subscribers.dropSession(c);
    c.state = "subscribed";
    this.log.info(`client ${c.id} disconnected; its subscription is expected back (luoctl evict ${c.id} forgets it)`, clientFields(c));
  }

  /**
   * Expected clients that are not connected, and whose session is not carried without them:
   * an update would leave them behind.
   */
  missing(): Client[] {
    return this.subscribers.disconnected().filter((c) => !this.opts.carried?.(c.id));
  }

  /** CHECK's line about the expected clients. */
  clientsCheck(): { name: string; ok: boolean; detail: string } {
    const gone = this.missing();
    if (!gone.length) return { name: "clients", ok: true, detail: `every subscribed client is connected (${this.subscribers.all().length - this.subscribers.disconnected().length})` };
    return { name: "clients", ok: false, detail: `${gone.length} expected client(s) not connected: ${names(gone)} (luoctl evict ID forgets one; luoctl kexec --force leaves them out)` };
  }

  // ---- admin requests ------------------------------------------------------------------------

  list() {
    return this.subscribers.all().map((c) => ({
      id: c.id,
      ...c.owner,
      state: c.state,
      connected: c.peer !== null,
      since: c.subscribedAt.toISOString(),
      session: c.session?.name ?? null,
    }));
  }

  /** STATUS's view of the broker; `forUid` (a client's): the update lists only that uid's ids. */
  summary(forUid: number | null = null) {
    const all = this.subscribers.all();
    const update = this.updates.status();
    if (update && forUid !== null)
      update.waiting = update.waiting.filter((id) => this.subscribers.get(id)?.owner.uid === forUid);
    return {
      phase: this.phase,
      update,
      clients: {
        subscribed: all.length,
        disconnected: all.filter((c) => c.peer === null).length,
        prepared: all.filter((c) => c.prepared).length,
        ready: all.filter((c) => c.state === "ready").length,
      },
    };
  }

  /** Runs one update. Resolves when it is aborted, finished as a dry run, or reboot() returned. */
  kexec(admin: Peer | null, opts: KexecOptions): Promise<KexecOutcome> {
    return this.updates.kexec(admin, opts);
  }

  /** Admin ABORT. Returns whether an update was running. */
  abortByAdmin(reason: string | undefined): boolean {
    return this.updates.abortByAdmin(reason);
  }

  /**
   * Admin EVICT: the client leaves luod, whatever it is doing. Its connection is closed, its
   * subscription forgotten; an update it takes part in is aborted first (its reason names the
   * client and the administrator). A PREPAREd session is released with it, which costs its memory
   * across the next update: only with `force`. Too late once the update is committing.
   */
  evict(admin: Peer, id: string, opts: { force?: boolean; reason?: string } = {}) {
    const c = this.subscribers.get(id);
    if (!c) throw new ProtocolError("ENOENT", `no client ${id} is subscribed`);
    if (this.updates.phase === "committing") throw new ProtocolError("EBUSY", "the update is committing: too late to evict");
    const cost = c.prepared && c.session
      ? `its prepared session ${c.session.name} is released: its memory will not be carried across the next update unless it PREPAREs again`
      : null;
    if (cost && !opts.force) throw new ProtocolError("EBUSY", `${id} has a prepared session (its memory is already preserved); evicting it releases that session: use force (luoctl evict --force)`);
    const who = `uid ${admin.cred.uid}, pid ${admin.cred.pid}`;
    const why = `client ${id} evicted by an administrator (${who})${opts.reason ? `: ${opts.reason}` : ""}`;
    const running = this.updates.running(c);
    const abortedUpdate = running?.participant ? running.attempt : null;
    if (abortedUpdate !== null) this.updates.abort("client_evicted", "ECANCELED", why, { about: [c], anonymous: `a client was evicted by an administrator (${who})` });
    const released = cost ? c.session!.name : null;
    const peer = c.peer;
    this.subscribers.forget(c);
    this.expected?.save();
    peer?.close?.(why);
    this.log.notice(`${why}${peer ? ` (pid ${c.owner.pid} disconnected)` : ""}${abortedUpdate !== null ? `; update ${abortedUpdate} aborted` : ""}${cost ? `; ${cost}` : ""}`, {
      MESSAGE_ID: MESSAGE_ID.clientEvicted, ...clientFields(c), LUO_UPDATE: abortedUpdate,
    });
    return { id, disconnected: peer !== null, aborted_update: abortedUpdate, released_session: released };
  }

  shutdown(): void {
    if (this.updates.inProgress) this.updates.abort("luod_stopping", "ECANCELED", "luod is stopping");
    this.flushExpected();
  }

  /** Writes `subscriptions.json` now (shutdown, tests); a failure is logged. */
  flushExpected(): void {
    try {
      this.expected?.flush();
    } catch (e) {
      this.log.error(`writing the subscription record: ${(e as Error).message}`);
    }
  }

  private expectedEntries(): ExpectedEntry[] {
    return this.subscribers.all().map((c) => ({ id: c.id, ...c.owner, since: c.subscribedAt.toISOString() }));
  }

  private nextAttempt(): number {
    return this.opts.nextAttempt ? this.opts.nextAttempt() : ++this.lastAttempt;
  }
}

/** SUBSCRIBE of an id someone else holds: a subscriber, or a restored session waiting for its owner. */
function idTaken(id: string, detail = ""): ProtocolError {
  return new ProtocolError("EEXIST", `id ${id} is taken${detail}`);
}

function validDate(text: string, fallback: number): Date {
  const t = Date.parse(text);
  return new Date(Number.isFinite(t) ? t : fallback);
}

/** The journal fields of a message about client `c` (docs/daemon.md#logs-and-the-audit-trail). */
function clientFields(c: Client): LogFields {
  return { LUO_CLIENT: c.id, LUO_UID: c.owner.uid, LUO_PID: c.owner.pid, LUO_UNIT: c.owner.unit };
}

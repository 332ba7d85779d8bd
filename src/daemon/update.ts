// One update at a time, phase by phase: the barrier, the manifest commit, the jump, the abort.
//
//   idle → preparing (sessions created, fds sent, deadline running)
//        → committing (all READY, manifest preserved, sync) → reboot(KEXEC)
//   any failure (FAIL, deadline, a client lost before READY, ABORT, reboot returning) → idle
//
// luod keeps its own copy of every outgoing session fd until the jump: an outgoing session dies
// with its last fd (docs/kernel.md#session-lifetimes), so a client may exit after READY and lose nothing.
import type { KernelPort } from "./kernel-port";
import type { Logger } from "./log";
import { MESSAGE_ID } from "./message-ids";
import type { AbiStrings } from "./image-abi";
import { encodeManifest, manifestEntry, MANIFEST_TOKEN, MANIFEST_VERSION, MANIFEST_FORMAT, type Manifest } from "./manifest";
import { closeQuietly, names, type Client, type Peer, type Subscribers } from "./subscribers";
import { ProtocolError, errorCodeOf, type ErrorCode } from "../wire/errors";
import { sessionNameFor, INTERNAL_SESSION } from "../wire/ids";
import { abortedEvent, preservationRequestEvent, progressEvent, rebootingEvent, startPreservationEvent } from "../wire/events";
import { VERSION } from "../version";

export type Phase = "idle" | "preparing" | "committing";

export interface NextKernel {
  version: string;
  sha256: string;
  cmdline: string;
  /** The image's "Linux version …" banner: after the jump, /proc/version of the new kernel. */
  banner?: string | null;
  /** Its ABI strings: the next luod's record of its own kernel (abi-gate.ts). */
  abi?: AbiStrings;
}

/**
 * Why an update was aborted, from a fixed set (never a client's text): the metrics count
 * aborts by it (metrics.ts; docs/daemon.md, "Metrics").
 */
export const ABORT_REASONS = [
  "client_failed", "client_disconnected", "client_evicted", "deadline", "admin", "luod_stopping",
  "sessions_failed", "manifest_failed", "jump_failed",
] as const;
export type AbortReason = (typeof ABORT_REASONS)[number];

export interface KexecOptions {
  timeoutMs: number;
  dryRun: boolean;
  /** Leave out the expected clients that are not connected. */
  force?: boolean;
  /** Called once the update has started (its attempt number): past every refusal. */
  onStart?: (attempt: number) => void;
}

export type KexecOutcome =
  | { ok: true; dryRun: boolean; timings: Record<string, number> }
  | { ok: false; reason: AbortReason; code: ErrorCode; message: string; timings: Record<string, number> };

/**
 * What the runner tells an observer (metrics.ts): an update started, every client was READY
 * (after `barrierMs` from KEXEC), it completed (a dry run, or the jump handed over: a direct
 * jump that works never returns), or it was aborted.
 */
export type UpdateEvent =
  | { kind: "started"; attempt: number; dryRun: boolean }
  | { kind: "all-ready"; attempt: number; barrierMs: number }
  | { kind: "completed"; attempt: number; dryRun: boolean }
  | { kind: "aborted"; attempt: number; reason: AbortReason };

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

/** What luod configures about its updates (part of BrokerOptions). */
export interface UpdateOptions {
  /** The kernel luod loaded for the jump (null: none). Read at KEXEC time. */
  nextKernel: () => NextKernel | null;
  /**
   * A real KEXEC, before any client is paused: make sure the kernel in the kernel is the one luod
   * verified (loader.ts reload()). Throws the refusal. `stillWanted` throws if the update should
   * not start any more. Without it the loaded kernel is taken as it is (unit tests).
   */
  reloadKernel?: (stillWanted: () => void) => Promise<void>;
  /**
   * Wait this long between "every client READY" and the commit (fault drills: it opens the
   * window in which luod can be killed, or the loaded kernel removed, after the barrier).
   */
  commitDelayMs?: number;
  /** A client became READY (systemd-handoff.ts puts its session in the fd store). */
  onReady?: (id: string) => void;
  /** An update ended without a jump, a finished dry run included (systemd-handoff.ts empties its fd store of it, and unloads the kernel after a real one). */
  onAbort?: (dryRun: boolean) => void;
  /** Each step of an update (metrics.ts counts them); must not throw. */
  onEvent?: (e: UpdateEvent) => void;
}

/** What the runner shares with the broker that owns it. */
export interface UpdateRunnerParts {
  kernel: KernelPort;
  log: Logger;
  now: () => number;
  subscribers: Subscribers;
  /** The broker's attempt numbers (PREPARE draws from them too). */
  nextAttempt: () => number;
  /** Expected clients that are not connected (and not carried): KEXEC refuses to leave them behind unless forced. */
  missing: () => Client[];
}

export class UpdateRunner {
  private update: Update | null = null;
  private committing = false;
  /** A KEXEC is re-verifying the loaded kernel: another one is refused (EBUSY). */
  private starting = false;
  /** An admin ABORTed while a KEXEC re-verified the kernel: that KEXEC does not start (the reason). */
  private cancelled: string | null = null;
  private readonly kernel: KernelPort;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly subscribers: Subscribers;
  private readonly nextAttempt: () => number;
  private readonly missing: () => Client[];

  /** `opts` is read when each value is needed, as the broker's options are. */
  constructor(
    private readonly opts: UpdateOptions,
    parts: UpdateRunnerParts,
  ) {
    this.kernel = parts.kernel;
    this.log = parts.log;
    this.now = parts.now;
    this.subscribers = parts.subscribers;
    this.nextAttempt = parts.nextAttempt;
    this.missing = parts.missing;
  }

  get phase(): Phase {
    return this.update === null ? "idle" : this.committing ? "committing" : "preparing";
  }

  get inProgress(): boolean {
    return this.update !== null;
  }

  /** The running update as STATUS and PROGRESS show it; null when idle. */
  status() {
    const u = this.update;
    return (
      u && {
        attempt: u.attempt,
        dry_run: u.dryRun,
        ready: u.participants.filter((c) => c.state === "ready").length,
        total: u.participants.length,
        waiting: u.participants.filter((c) => c.state !== "ready").map((c) => c.id),
        remaining_ms: Math.max(0, u.deadline - this.now()),
      }
    );
  }

  /**
   * Runs one update. Resolves when it is aborted, finished as a dry run, or reboot() returned.
   * An expected client that is not connected would be left behind: refused (ENOTCONN, naming
   * them) before anything else, unless `force`, which leaves them out and logs it.
   */
  async kexec(admin: Peer | null, opts: KexecOptions): Promise<KexecOutcome> {
    if (this.starting) throw new ProtocolError("EBUSY", "another KEXEC is re-verifying the loaded kernel");
    let missing = this.preconditions(opts);
    if (!opts.dryRun && this.opts.reloadKernel) {
      this.starting = true;
      this.cancelled = null;
      // while the image is re-hashed, clients may disconnect and an admin may ABORT: the reload
      // stops before loading, and the checks are made again before anyone is paused
      const stillWanted = () => {
        if (this.cancelled !== null) throw new ProtocolError("ECANCELED", this.cancelled);
        this.preconditions(opts);
      };
      try {
        await this.opts.reloadKernel(stillWanted);
        stillWanted();
      } finally {
        this.starting = false;
        this.cancelled = null;
      }
      missing = this.preconditions(opts);
    }
    return this.begin(admin, opts, missing);
  }

  /** What must hold for a KEXEC to start (throws the refusal); the clients it would leave out. */
  private preconditions(opts: { dryRun: boolean; force?: boolean }): Client[] {
    if (this.update) throw new ProtocolError("EBUSY", `an update is already ${this.phase}`);
    const missing = this.missing();
    if (missing.length && !opts.force)
      throw new ProtocolError("ENOTCONN",
        `${missing.length} subscribed client(s) not connected, their tenants would be left behind: ${names(missing)}; ` +
          "wait for them to reconnect, `luoctl evict ID` to forget one, or `luoctl kexec --force` to leave them out");
    if (!this.kernel.devicePresent())
      throw new ProtocolError("ENODEV", "/dev/liveupdate is missing: this kernel has no LUO (CONFIG_LIVEUPDATE and liveupdate=on)");
    if (!opts.dryRun) {
      if (!this.opts.nextKernel())
        throw new ProtocolError("EINVAL", "no kernel is loaded by luod: run `luoctl load` first");
      if (this.kernel.kexecLoaded() === false)
        throw new ProtocolError("EINVAL", "the kernel luod loaded is no longer loaded (kexec unloaded by someone else): run `luoctl load` again");
    }
    return missing;
  }

  private begin(admin: Peer | null, opts: KexecOptions, missing: Client[]): Promise<KexecOutcome> {
    const t0 = this.now();
    const attempt = this.nextAttempt();
    const participants = this.subscribers.all().filter((c) => c.peer !== null);
    return new Promise<KexecOutcome>((resolve) => {
      const u: Update = {
        attempt, dryRun: opts.dryRun, admin, timeoutMs: opts.timeoutMs, deadline: t0 + opts.timeoutMs, t0,
        timings: {}, participants, internalFd: null, readyCount: 0, progressTimer: null,
        timer: setTimeout(() => this.onDeadline(), opts.timeoutMs),
        ticker: setInterval(() => this.progress(), 1000),
        done: resolve,
      };
      this.update = u;
      this.opts.onEvent?.({ kind: "started", attempt, dryRun: opts.dryRun });
      this.log.notice(`update ${attempt} started${opts.dryRun ? " (dry run)" : ""}: ${participants.length} client(s), READY due in ${opts.timeoutMs} ms`, {
        MESSAGE_ID: MESSAGE_ID.updateStarted, LUO_UPDATE: attempt, LUO_UID: admin?.cred.uid, LUO_PID: admin?.cred.pid, LUO_UNIT: admin?.unit,
      });
      opts.onStart?.(attempt);
      if (missing.length)
        this.log.warning(`update ${attempt}: forced: ${missing.length} subscribed client(s) not connected are left out of it, their sessions will not be carried: ${names(missing)}`);
      if (!opts.dryRun) {
        // the page cache drains while clients prepare
        const dirty = this.kernel.startSync();
        if (dirty !== null) this.log.info(`update ${attempt}: ${Math.round(dirty / 1024)} MiB of page cache dirty: writing it back meanwhile`);
      }
      this.createSessions(u);
    });
  }

  /** READY from a participant of the running update. */
  ready(c: Client): void {
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
  }

  /** Admin ABORT. Returns whether an update was running (or a KEXEC re-verifying the kernel, which then does not start). */
  abortByAdmin(reason: string | undefined): boolean {
    if (!this.update) {
      if (!this.starting) return false;
      this.cancelled = `aborted by an administrator${reason ? `: ${reason}` : ""} before the update started`;
      return true;
    }
    if (this.committing) throw new ProtocolError("EBUSY", "the update is committing: too late to abort");
    this.abort("admin", "ECANCELED", `aborted by an administrator${reason ? `: ${reason}` : ""}`);
    return true;
  }

  /** The attempt number of the running update (null when idle) and whether `c` takes part in it. */
  running(c: Client): { attempt: number; participant: boolean } | null {
    const u = this.update;
    return u && { attempt: u.attempt, participant: u.participants.includes(c) };
  }

  /**
   * Ends the running update, if any, with this error. When the message names clients (`about`),
   * a participant of another uid gets `anonymous` in its ABORTED instead: a tenant does not learn
   * the others' ids or reasons (the admin's reply and the log keep the whole message).
   */
  abort(reason: AbortReason, code: ErrorCode, message: string, names?: { about: readonly Client[]; anonymous: string }): void {
    const u = this.update;
    if (!u) return;
    this.finish(u, { ok: false, reason, code, message, timings: { ...u.timings } }, message, names);
  }

  private createSessions(u: Update): void {
    const fresh = u.participants.filter((c) => !c.prepared);
    const names = fresh.map((c) => sessionNameFor(c.id, u.attempt));
    let fds: number[];
    try {
      fds = names.length ? this.kernel.createSessions(names) : [];
    } catch (e) {
      const code = errorCodeOf(e, "EIO");
      this.abort("sessions_failed", code, `creating sessions failed: ${(e as Error).message}`, { about: fresh, anonymous: `creating sessions failed (${code})` });
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
    this.opts.onEvent?.({ kind: "all-ready", attempt: u.attempt, barrierMs: u.timings.all_ready_ms });
    if (u.progressTimer) clearTimeout(u.progressTimer);
    u.progressTimer = null;
    this.progress(); // the operator sees "n/n ready" before the jump
    // Leave the promise chain: commit may end in reboot(), which never returns on success.
    const delay = this.opts.commitDelayMs ?? 0;
    if (delay > 0) {
      this.log.notice(`update ${u.attempt}: every client is READY; committing in ${delay} ms (--commit-delay)`);
      setTimeout(() => this.update === u && this.commit(u), delay);
    } else {
      // A FAIL read in the same batch as the last READY aborts the update before this runs.
      queueMicrotask(() => this.update === u && this.commit(u));
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
      this.abort("manifest_failed", errorCodeOf(e, "EIO"), `preserving the manifest failed: ${(e as Error).message}`);
      return;
    }
    u.timings.manifest_preserved_ms = this.now() - u.t0;
    if (u.dryRun) {
      this.finish(u, { ok: true, dryRun: true, timings: { ...u.timings } }, "dry run complete");
      return;
    }
    u.timings.reboot_called_ms = this.now() - u.t0;
    this.log.notice(`update ${u.attempt}: all ${u.participants.length} client(s) READY, manifest preserved; jumping into the loaded kernel`, {
      MESSAGE_ID: MESSAGE_ID.jumping, LUO_UPDATE: u.attempt,
    });
    u.admin?.send(rebootingEvent(u.attempt, { ...u.timings }));
    try {
      // Returns "delegated to systemd" (or "jumped", from a fake kernel): the update stays
      // "committing" until luod is stopped (main.ts does not abort it then).
      this.kernel.jump();
    } catch (e) {
      // The freeze runs inside reboot(); on failure the kernel rolled everything back
      // (docs/kernel.md#the-freeze-and-its-rollback): report it and keep the host running. Never fall back to a cold reboot.
      this.abort("jump_failed", errorCodeOf(e, "EIO"), `${(e as Error).message}; the host keeps running`);
      return;
    }
    this.opts.onEvent?.({ kind: "completed", attempt: u.attempt, dryRun: false });
  }

  private onDeadline(): void {
    const u = this.update;
    if (!u || this.committing) return;
    const late = u.participants.filter((c) => c.state !== "ready").map((c) => c.id);
    const lateClients = u.participants.filter((c) => c.state !== "ready");
    this.abort("deadline", "ETIMEDOUT", `READY deadline of ${u.timeoutMs} ms passed; not ready: ${late.join(", ")}`, {
      about: lateClients, anonymous: `READY deadline of ${u.timeoutMs} ms passed; not every client was READY`,
    });
  }

  /** Ends the update: every participant gets ABORTED, luod's session copies are released. */
  private finish(u: Update, outcome: KexecOutcome, reason: string, names?: { about: readonly Client[]; anonymous: string }): void {
    clearTimeout(u.timer);
    clearInterval(u.ticker);
    if (u.progressTimer) clearTimeout(u.progressTimer);
    this.update = null;
    this.committing = false;
    for (const c of u.participants) {
      c.readyAt = null;
      if (!c.peer) {
        // gone after READY: its subscription stays expected, its session goes
        this.subscribers.dropSession(c);
        c.state = "subscribed";
        continue;
      }
      if (!c.prepared) this.subscribers.dropSession(c);
      c.state = c.prepared ? "prepared" : "subscribed";
      const uid = c.owner.uid;
      const mayKnow = !names || uid === 0 || names.about.every((o) => o.owner.uid === uid);
      c.peer.send(abortedEvent(u.attempt, mayKnow ? reason : names.anonymous));
    }
    if (u.internalFd !== null) closeQuietly(this.kernel, this.log, u.internalFd);
    // the one client an abort is about (its FAIL, its disconnect, its eviction) is named in a field too
    const client = names?.about.length === 1 ? names.about[0]! : null;
    const fields = { LUO_UPDATE: u.attempt, LUO_CLIENT: client?.id, LUO_UID: client?.owner.uid, LUO_PID: client?.owner.pid, LUO_UNIT: client?.owner.unit };
    if (outcome.ok) this.log.notice(`update ${u.attempt}: ${reason}`, { MESSAGE_ID: MESSAGE_ID.dryRunFinished, ...fields });
    else this.log.warning(`update ${u.attempt} aborted: ${reason}`, { MESSAGE_ID: MESSAGE_ID.updateAborted, ...fields });
    u.done(outcome);
    this.opts.onEvent?.(outcome.ok ? { kind: "completed", attempt: u.attempt, dryRun: outcome.dryRun } : { kind: "aborted", attempt: u.attempt, reason: outcome.reason });
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
    const s = this.status()!;
    u.admin.send(progressEvent(this.phase, s));
  }
}

function safe<T>(f: () => T, fallback: T): T {
  try {
    return f();
  } catch {
    return fallback;
  }
}

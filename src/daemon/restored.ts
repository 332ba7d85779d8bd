// Sessions that came back from the previous kernel, one per manifest entry:
//   unclaimed → claimed → finished, or unclaimed → discarded.
// A restored session can be retrieved once per boot and closing it finishes it
// (docs/kernel.md#retrieve-once), so it is retrieved only when its owner CLAIMs, and luod keeps a
// copy until FINISHED.
// The registry is mirrored to a file under the state dir (tmpfs /run): a luod restarted after the
// boot still knows every unclaimed session, although the kernel's manifest session is gone.
import type { Manifest, ManifestEntry } from "./manifest";
import { type KernelPort, type RetrievedSession } from "./kernel-port";
import { ProtocolError, errorCodeOf } from "../wire/errors";
import type { PreviousUpdateInfo } from "../wire/replies";
import { ThrottledWrite, type StateFiles } from "./state-files";
import type { Logger } from "./log";
import { MESSAGE_ID } from "./message-ids";

/** The state file is rewritten whole; under a burst of CLAIMs, at most this often. */
export const SAVE_INTERVAL_MS = 100;

export type RestoredState = "unclaimed" | "claimed" | "finished" | "discarded";

export interface RestoredSession {
  id: string;
  session: string;
  uid: number;
  gid: number;
  unit: string | null;
  state: RestoredState;
  restoredAt: string;
  changedAt: string;
  claimedByPid: number | null;
}

/**
 * What the previous kernel's luod recorded about the update that brought us here. restored.json
 * keeps it in this (camelCase) spelling, as every luod so far wrote it, so that a luod of the
 * previous version restarted in this boot still reads the file; `created_at` is read too, for a
 * later luod that writes the wire's spelling (docs/protocol.md#compatibility).
 */
export interface PreviousUpdate {
  attempt: number;
  createdAt: string;
  from: string;
  timings: Record<string, number>;
}

interface RestoredFile {
  previous: PreviousUpdate | null;
  sessions: RestoredSession[];
}

/** restored.json's `previous` as read: either spelling of the time (state-files.ts checks one is there). */
type SavedPrevious = Omit<PreviousUpdate, "createdAt"> & { createdAt?: string; created_at?: string };

/** STATUS's `previous_update`: snake_case, and the deprecated `createdAt` kept within protocol 1. */
export function previousUpdateJson(p: PreviousUpdate | null): PreviousUpdateInfo | null {
  return p && { attempt: p.attempt, created_at: p.createdAt, from: p.from, timings: { ...p.timings }, createdAt: p.createdAt };
}

export class RestoredSessions {
  private readonly sessions = new Map<string, RestoredSession>();
  /** luod's own copy of each claimed session fd, until FINISHED. Not persisted: fds die with us. */
  private readonly held = new Map<string, number>();
  previous: PreviousUpdate | null = null;

  constructor(
    private readonly kernel: KernelPort,
    private readonly files: StateFiles,
    private readonly log: Logger,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /**
   * After a restart in the same boot: the state file is the only record left. A session claimed
   * before the restart is taken back when the kernel port still has a copy (under systemd, the
   * fd store kept one and PID 1 handed it back): luod holds it again until FINISHED, so the client
   * may die and CLAIM again. Without that copy, the client holds the only one.
   */
  loadFromState(): boolean {
    const saved = this.files.read<Omit<RestoredFile, "previous"> & { previous: SavedPrevious | null }>("restored");
    if (!saved) return false;
    const p = saved.previous;
    this.previous = p && { attempt: p.attempt, createdAt: (p.createdAt ?? p.created_at)!, from: p.from, timings: p.timings };
    for (const s of saved.sessions) this.sessions.set(s.id, s);
    for (const s of saved.sessions) if (s.state === "claimed") this.takeBack(s);
    return true;
  }

  private takeBack(s: RestoredSession): void {
    let r: RetrievedSession;
    try {
      r = this.kernel.retrieveSession(s.session);
    } catch (e) {
      this.log.info(`restored session ${s.session} was claimed before luod restarted; its client holds the only copy (${(e as Error).message})`);
      return;
    }
    switch (r.kind) {
      case "retrieved":
        this.held.set(s.id, r.fd);
        this.log.notice(`restored session ${s.session}, claimed before luod restarted, is held again (the fd store kept it)`);
        return;
      case "absent":
        // its client closed it, after FINISHED or not: the kernel has finished it (docs/kernel.md#session-lifetimes)
        this.transition(s, "finished");
        this.save();
        this.log.notice(`restored session ${s.session}, claimed before luod restarted, is gone: its client closed it`);
        return;
      case "alreadyRetrieved":
        // retrieved and still open, in its client only (no fd store)
        this.log.info(`restored session ${s.session} was claimed before luod restarted; its client holds the only copy (RETRIEVE_SESSION: EINVAL, retrieved and still open)`);
        return;
    }
  }

  /** First start after a live-update boot: adopt the manifest the previous kernel's luod wrote. */
  adoptManifest(m: Manifest): void {
    const at = this.now().toISOString();
    this.previous = { attempt: m.attempt, createdAt: m.createdAt, from: m.kernel.from, timings: m.timings };
    for (const e of m.entries) this.sessions.set(e.id, fromEntry(e, at));
    this.flush(); // at once: the kernel's manifest is consumed, this file is the only record left
  }

  list(): RestoredSession[] {
    return [...this.sessions.values()];
  }

  unclaimed(): RestoredSession[] {
    return this.list().filter((s) => s.state === "unclaimed");
  }

  /** The restored session of `id` while it is unclaimed or claimed (O(1): SUBSCRIBE asks per client). */
  waiting(id: string): RestoredSession | null {
    const s = this.sessions.get(id);
    return s && (s.state === "unclaimed" || s.state === "claimed") ? s : null;
  }

  /** Returns luod's copy of the session fd; the caller sends it (the wire layer dups it). */
  claim(id: string, cred: { uid: number; pid: number; unit?: string | null }): { session: string; fd: number } {
    const s = this.sessions.get(id);
    // an id is not a password: only the uid that subscribed gets the session back, and when both
    // sides ran under systemd, only from the same unit. Another uid learns nothing: its CLAIM is
    // answered exactly as one of an id that has no session at all (no owner, no state).
    if (s && cred.uid !== 0 && cred.uid !== s.uid) throw nothingToClaim(id);
    if (!s || s.state === "finished" || s.state === "discarded")
      throw new ProtocolError("ENOENT", `nothing to claim for ${id}${s ? ` (it was ${s.state})` : ""}`);
    if (cred.uid !== 0 && s.unit && cred.unit && cred.unit !== s.unit)
      throw new ProtocolError("EPERM", `${id} belongs to unit ${s.unit}, not ${cred.unit}`);
    const held = this.held.get(id);
    if (held !== undefined) {
      s.claimedByPid = cred.pid;
      this.save();
      return { session: s.session, fd: held };
    }
    if (s.state === "claimed")
      throw onlyInItsClient(id);
    let r: RetrievedSession;
    try {
      r = this.kernel.retrieveSession(s.session);
    } catch (e) {
      throw new ProtocolError(errorCodeOf(e, "EIO"), `cannot retrieve ${s.session}: ${(e as Error).message}`);
    }
    if (r.kind === "alreadyRetrieved") {
      // already retrieved in this boot and still open; our record is one step behind
      // (luod was killed right after a CLAIM): its client holds the only copy
      this.transition(s, "claimed");
      this.save();
      throw onlyInItsClient(id);
    }
    if (r.kind === "absent") throw new ProtocolError("ENOENT", `cannot retrieve ${s.session}: RETRIEVE_SESSION: ENOENT, no such incoming session`);
    const fd = r.fd;
    this.held.set(id, fd);
    this.transition(s, "claimed");
    s.claimedByPid = cred.pid;
    this.save();
    this.log.info(`restored session ${s.session} claimed by pid ${cred.pid} (uid ${cred.uid})`, {
      MESSAGE_ID: MESSAGE_ID.sessionClaimed, LUO_CLIENT: id, LUO_UID: cred.uid, LUO_PID: cred.pid, LUO_UNIT: s.unit,
    });
    return { session: s.session, fd };
  }

  finished(id: string, cred: { uid: number; pid?: number }): void {
    const s = this.sessions.get(id);
    // another uid's session: the same answer as for an id that has none
    if (!s || s.state !== "claimed" || (cred.uid !== 0 && cred.uid !== s.uid)) throw new ProtocolError("ENOENT", `${id} is not claimed`);
    this.dropHeld(id);
    this.transition(s, "finished");
    this.save();
    this.log.info(`restored session ${s.session} finished`, {
      MESSAGE_ID: MESSAGE_ID.sessionFinished, LUO_CLIENT: id, LUO_UID: cred.uid, LUO_PID: cred.pid, LUO_UNIT: s.unit,
    });
  }

  /** Frees an unclaimed session: retrieve, FINISH (drops unretrieved memfds), close. */
  discard(id: string): void {
    const s = this.sessions.get(id);
    if (!s || s.state === "finished" || s.state === "discarded") throw new ProtocolError("ENOENT", `no restored session ${id}`);
    if (s.state === "claimed")
      throw new ProtocolError("EBUSY", `${id} is claimed (pid ${s.claimedByPid}); its client must send FINISHED`);
    let r: RetrievedSession;
    try {
      r = this.kernel.retrieveSession(s.session);
      if (r.kind === "retrieved") {
        try {
          this.kernel.finishSession(r.fd, s.session);
        } finally {
          this.kernel.close(r.fd);
        }
      }
    } catch (e) {
      // e.g. ENOENT from opening the device: LUO is missing, the record stays
      throw new ProtocolError(errorCodeOf(e, "EIO"), `cannot discard ${s.session}: ${(e as Error).message}`);
    }
    if (r.kind === "alreadyRetrieved")
      throw new ProtocolError("EINVAL", `cannot discard ${s.session}: RETRIEVE_SESSION: EINVAL, retrieved in this boot and still open`);
    // absent: the kernel no longer has it (finished elsewhere); the record goes either way
    this.transition(s, "discarded");
    this.save();
    this.log.notice(`restored session ${s.session} discarded by an administrator`, {
      MESSAGE_ID: MESSAGE_ID.sessionDiscarded, LUO_CLIENT: id, LUO_UID: s.uid, LUO_UNIT: s.unit,
    });
  }

  closeAll(): void {
    if (this.writer.pending) this.flush();
    for (const id of [...this.held.keys()]) this.dropHeld(id);
  }

  private dropHeld(id: string): void {
    const fd = this.held.get(id);
    if (fd === undefined) return;
    this.held.delete(id);
    try {
      this.kernel.close(fd);
    } catch (e) {
      this.log.warning(`closing restored session fd of ${id}: ${(e as Error).message}`);
    }
  }

  private transition(s: RestoredSession, to: RestoredState): void {
    s.state = to;
    s.changedAt = this.now().toISOString();
  }

  /**
   * Mirrors the registry to the state file, at most once per SAVE_INTERVAL_MS: a restore of 1000
   * clients whose CLAIMs trickle in writes the whole file a few dozen times, not 2000. A luod
   * killed before the write leaves a record one step behind; claim() recognises such a session.
   */
  private save(): void {
    this.writer.schedule();
  }

  /** Writes the state file now (also at shutdown, and by tests). */
  flush(): void {
    this.writer.writeNow();
  }

  // a full or vanished state dir must not take luod down: it still holds the sessions
  private readonly writer = new ThrottledWrite(
    SAVE_INTERVAL_MS,
    () => this.files.write<RestoredFile>("restored", { previous: this.previous, sessions: this.list() }),
    (e) => this.log.error(`writing the restored-session record: ${e.message}`),
  );
}

/** CLAIM of an id with no session, or with another uid's: the two are indistinguishable. */
function nothingToClaim(id: string): ProtocolError {
  return new ProtocolError("ENOENT", `nothing to claim for ${id}`);
}

/** CLAIM of a session whose only copy is in the client that claimed it before luod restarted. */
function onlyInItsClient(id: string): ProtocolError {
  return new ProtocolError("EBUSY", `${id} was claimed before luod restarted; its client holds the only copy`);
}

function fromEntry(e: ManifestEntry, at: string): RestoredSession {
  return {
    id: e.id, session: e.session, uid: e.uid, gid: e.gid, unit: e.unit,
    state: "unclaimed", restoredAt: at, changedAt: at, claimedByPid: null,
  };
}

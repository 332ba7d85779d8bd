// luod's fd store (systemd mode, docs/systemd.md): putting sessions in (FDSTORE=1) and taking
// them out (FDSTOREREMOVE=1), what it holds, and the record of it.
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
// FDNAME: systemd refuses ':' in an FDNAME (it separates $LISTEN_FDNAMES; fdname_is_valid), and
// client session names are `luod:<id>/<attempt>`, so ':' and '%' are percent-encoded. The kernel's
// own name (LIVEUPDATE_SESSION_GET_NAME) is what counts when both are known.
import type { Logger } from "./log";
import { decodeManifest, encodeManifest, type ManifestEntry } from "./manifest";
import type { SystemdOps } from "./service-manager";
import type { StateFiles } from "./state-files";
import { INTERNAL_SESSION, parseSessionName } from "../wire/ids";

/** The FDNAME of a session fd: the session name with '%' and ':' percent-encoded. */
export function fdNameOf(session: string): string {
  return session.replace(/%/g, "%25").replace(/:/g, "%3A");
}

/** The session name behind an FDNAME luod gave, or null for any other name. */
export function sessionOfFdName(fdname: string): string | null {
  const s = fdname.replace(/%3A/gi, ":").replace(/%25/g, "%");
  return s === INTERNAL_SESSION || parseSessionName(s) ? s : null;
}

/** An outgoing session in the fd store; `entry` is its manifest entry (null: the manifest session). */
export interface Outgoing {
  fd: number;
  session: string;
  fdname: string;
  entry: ManifestEntry | null;
}

/** The state file fdstore.json: which fd store entries are outgoing sessions, and whether a jump was asked for. */
export interface FdStoreRecord {
  jumpRequested: boolean;
  outgoing: { fdname: string; session: string; entry: ManifestEntry | null }[];
}

/** What is in luod's fd store, and the messages that change it. */
export class FdStore {
  /** Incoming sessions PID 1 retrieved after the kexec and handed to us, by session name. */
  readonly incoming = new Map<string, { fd: number; fdname: string }>();
  /** This update's outgoing sessions in the fd store, by session name. */
  readonly staged = new Map<string, Outgoing>();
  /** READY sessions of an update that never jumped (luod restarted), by client id. */
  readonly carried = new Map<string, Outgoing>();
  /** Fds in $LISTEN_FDS that are not luod sessions (left open, unused). */
  readonly foreign: { fd: number; name: string }[] = [];

  /** `max`: FileDescriptorStoreMax= of our unit ($FDSTORE). */
  constructor(
    private readonly ops: Pick<SystemdOps, "notify" | "close" | "sessionName">,
    private readonly log: Logger,
    private readonly files: StateFiles,
    readonly max: number,
  ) {}

  /** Entries luod has in the store. */
  used(): number {
    return this.incoming.size + this.staged.size + this.carried.size;
  }

  /** FDSTORE=1 for one outgoing session. False (and a warning) when it cannot be sent or there is no room. */
  put(o: Outgoing): boolean {
    if (this.used() >= this.max) {
      this.log.warning(`no room in the fd store (FileDescriptorStoreMax=${this.max}) for ${o.session}; it is staged at the commit or the update fails`);
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

  /**
   * Sorts what systemd handed us in $LISTEN_FDS: incoming sessions (PID 1 retrieved them after
   * a kexec), luod's own outgoing ones that fdstore.json knows (luod restarted before the jump;
   * returned with the record's jumpRequested), fds that are not luod's (foreign, left alone),
   * and entries that are not LUO sessions (removed).
   */
  adopt(given: readonly { fd: number; name: string }[]): { outgoing: Outgoing[]; jumpRequested: boolean } {
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
        this.drop(name, fd);
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
    return { outgoing, jumpRequested: record?.jumpRequested ?? false };
  }

  /** Writes fdstore.json; removes it when there is nothing to record. */
  save(jumpRequested: boolean): void {
    const outgoing = [...this.staged.values(), ...this.carried.values()].map((o) => ({ fdname: o.fdname, session: o.session, entry: o.entry }));
    if (!outgoing.length && !jumpRequested) this.files.remove("fdstore");
    else this.files.write<FdStoreRecord>("fdstore", { jumpRequested, outgoing });
  }

  /** A session of the update in progress was closed (aborted update): out of the fd store. */
  unstage(session: string, jumpRequested: boolean): void {
    const o = this.staged.get(session);
    if (!o) return;
    this.staged.delete(session);
    this.remove(o.fdname);
    this.save(jumpRequested);
  }

  /** New sessions for these clients: their carried sessions from before a restart are superseded. */
  supersede(names: string[], jumpRequested: boolean): void {
    let changed = false;
    for (const name of names) {
      const id = parseSessionName(name)?.id;
      const old = id === undefined ? undefined : this.carried.get(id);
      if (!old) continue;
      this.carried.delete(id!);
      this.log.info(`client ${id} takes part in a new update: dropping its carried session ${old.session}`);
      this.drop(old.fdname, old.fd);
      changed = true;
    }
    if (changed) this.save(jumpRequested);
  }

  /** The broker's manifest plus the carried sessions of clients that are not in it. */
  withCarried(data: Uint8Array): Uint8Array {
    if (!this.carried.size) return data;
    const m = decodeManifest(data);
    const present = new Set(m.entries.map((e) => e.id));
    const extra = [...this.carried.values()].filter((o) => o.entry && !present.has(o.entry.id)).map((o) => o.entry!);
    m.entries.push(...extra);
    this.log.notice(`update ${m.attempt}: the manifest also lists ${extra.length} carried session(s)`);
    return encodeManifest(m);
  }

  /** Done with an incoming session: out of the fd store, our fd closed (finishing it if it was the last). */
  release(name: string): void {
    const e = this.incoming.get(name);
    if (!e) return;
    this.incoming.delete(name);
    this.drop(e.fdname, e.fd);
  }

  /** FDSTOREREMOVE=1 and close our fd. */
  drop(fdname: string, fd: number): void {
    this.remove(fdname);
    this.closeQuietly(fd);
  }

  /** FDSTOREREMOVE=1; a failure is a warning. */
  remove(fdname: string): void {
    try {
      this.ops.notify(`FDSTOREREMOVE=1\nFDNAME=${fdname}`);
    } catch (e) {
      this.log.warning(`FDSTOREREMOVE ${fdname}: ${(e as Error).message}`);
    }
  }

  closeQuietly(fd: number): void {
    try {
      this.ops.close(fd);
    } catch (e) {
      this.log.warning(`close(${fd}): ${(e as Error).message}`);
    }
  }
}

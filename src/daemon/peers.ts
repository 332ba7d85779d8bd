// The peers luod's server keeps (server.ts): what it knows of each connection (credentials and
// roles taken at accept, its process's pidfd, the reserve slot it holds) and the bounds on how
// many it keeps (docs/daemon.md, "Who may do what"; docs/protocol.md, "Limits").
import type { Connection } from "../wire/connection";
import { unitOf, type Roles } from "./access";
import type { Requester } from "./dispatch";
import type { Command } from "../wire/requests";

/** Connections admins may open beyond the limits, for admin requests only (luoctl during a flood). */
export const ADMIN_RESERVE = 8;
/** A connection in the admin reserve must send its first request within this (luoctl does at once). */
export const RESERVE_FIRST_REQUEST_TIMEOUT_MS = 2_000;
/** The per-uid cap when none is configured: all but this share of maxConnections (see perUidDefault). */
const OTHER_UIDS_SHARE = 16;
/**
 * A connection whose replies wait this long without the peer reading any is closed: a dead client
 * is gone within 20 s even when its socket lives on only in flight (docs/daemon.md, "Dead peers").
 */
export const STALLED_OUTPUT_MS = 15_000;
/** Connections kept at once from peers that have no role (every request is EPERM). */
export const MAX_STRANGERS = 16;

/**
 * The default per-uid cap: all of maxConnections but a sixteenth, rounded down (240 of the
 * default 256; all of a table under 16, where no share is worth keeping). On a
 * host where every VM's supervisor runs under one uid, that uid needs one connection per VM plus
 * a few for luoctl, so the cap must not be much below maxConnections; the sixteenth left keeps
 * other uids (and strangers' share) able to connect when that uid floods. Who needs more VMs
 * raises max-connections, and the cap follows.
 */
export function perUidDefault(maxConnections: number): number {
  return maxConnections - Math.floor(maxConnections / OTHER_UIDS_SHARE);
}

export class ClientPeer implements Requester {
  /** Set once a request passed validation and the permission check. */
  engaged = false;
  /** Admitted into the admin reserve: admin requests only. */
  reserved = false;
  /** A pidfd of the peer's process (closed with the connection), or -1. */
  pidfd = -1;
  timer: ReturnType<typeof setTimeout> | null = null;
  conn!: Connection;
  private unitRead: string | null | undefined;
  constructor(
    readonly serial: number,
    readonly cred: { pid: number; uid: number; gid: number },
    readonly roles: Roles,
  ) {}
  /** Read from /proc on first use (SUBSCRIBE, CLAIM), not for every connection (luoctl). */
  get unit(): string | null {
    if (this.unitRead === undefined) this.unitRead = unitOf(this.cred.pid);
    return this.unitRead;
  }
  get stranger(): boolean {
    return !this.roles.admin && !this.roles.client;
  }
  send(msg: object | readonly object[], fds?: number[]): boolean {
    return this.conn.send(msg, fds);
  }
  close(reason: string): void {
    this.conn.close(reason);
  }
}

export interface ServerStats {
  /** Connections adopted. */
  accepted: number;
  /** Connections closed at accept: over a limit, or their credentials could not be read. */
  refused: number;
  /** Lines that became messages (valid or not as requests). */
  requests: number;
  /** Lines that could not be read as a message (invalid JSON or UTF-8, bad fds). */
  invalid: number;
  /** Requests answered with an error (invalid ones included). */
  errors: number;
  /** Requests refused with EPERM. */
  denied: number;
  /** Received fds that no request could take, closed at once. */
  stray_fds: number;
  /** Connections closed by the first-request timeout. */
  timed_out: number;
  /** Received sockets, refused and closed at once (also counted in stray_fds). */
  sockets_refused: number;
  /** Connections closed because their process had exited while the socket stayed open. */
  dead_peers: number;
}

/**
 * Who is told about each request and connection (metrics.ts counts them). A well-formed request
 * is `received`, and `refused` too when its answer is an error; `invalid`: not well-formed (`cmd`
 * is whatever the line said). `changed`: a connection opened, was refused or closed. Never throws.
 */
export interface RequestObserver {
  received(cmd: Command): void;
  refused(cmd: Command): void;
  invalid(cmd: unknown): void;
  changed(): void;
}

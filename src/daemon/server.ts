// The socket side of luod: accepts connections, authorizes each request from the peer's
// credentials (taken once, at accept: SO_PEERCRED + SO_PEERGROUPS), validates it (src/wire) and
// hands it to dispatch.ts, which serves it (broker, loader or restored-session registry).
// Bad input is answered with one error line; it never throws out of here and never disturbs others.
//
// Bounds (docs/daemon.md, "Who may do what" and docs/protocol.md, "Limits"):
// - at most maxConnections connections; uid 0 gets ROOT_RESERVE more, so luoctl still works
//   while clients (or a flood) fill the rest; beyond that a connection is closed at accept;
// - at most MAX_STRANGERS connections from peers that may send nothing at all (every request
//   would be EPERM): they cannot crowd out clients even when the socket mode lets them in;
// - a connection that has no request accepted within firstRequestTimeoutMs is closed (a stalled
//   or silent connection cannot hold a slot); once one request was accepted it may idle forever,
//   as a subscriber waiting for the next update does;
// - per connection, src/wire/connection.ts bounds the line, the fds and the unsent output.
import { acceptConnection, peerCredentials } from "../kernel/unix";
import { closeQuietly } from "../kernel/fd";
import { EventLoop, EPOLLIN } from "../kernel/epoll";
import { Connection } from "../wire/connection";
import { MAX_REPLY_BYTES } from "../wire/framing";
import { parseRequest, expectedFds } from "../wire/requests";
import { errorReply } from "../wire/replies";
import { ProtocolError, errorCodeOf, type ErrorCode } from "../wire/errors";
import type { Broker } from "./broker";
import type { KernelLoader } from "./loader";
import type { RestoredSessions } from "./restored";
import { groupsOfPeer, permits, rolesOf, unitOf, whyRefused, type AccessPolicy, type Roles } from "./access";
import { Dispatcher, type Requester } from "./dispatch";
import type { Logger } from "./log";
import { VERSION } from "../version";

/** Connections uid 0 may open beyond maxConnections (luoctl during a flood). */
export const ROOT_RESERVE = 8;
/** Connections kept at once from peers that have no role (every request is EPERM). */
export const MAX_STRANGERS = 16;
export const DEFAULT_FIRST_REQUEST_TIMEOUT_MS = 10_000;
/** After accept4 fails (EMFILE, ENFILE, ENOMEM), wait this long before trying again. */
const ACCEPT_BACKOFF_MS = 100;

export interface ServerOptions {
  listenFd: number;
  loop: EventLoop;
  broker: Broker;
  loader: KernelLoader;
  restored: RestoredSessions;
  access: AccessPolicy;
  log: Logger;
  maxConnections: number;
  /** Close a connection that has had no request accepted after this long; 0: never. Default 10 s. */
  firstRequestTimeoutMs?: number;
  /** Extra fields for STATUS (boot kind, device state…). */
  statusExtra: () => Record<string, unknown>;
}

class ClientPeer implements Requester {
  /** Set once a request passed validation and the permission check. */
  engaged = false;
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
}

export class Server {
  private readonly peers = new Set<ClientPeer>();
  private serial = 0;
  private strangers = 0;
  private closing = false;
  private acceptRetry: ReturnType<typeof setTimeout> | null = null;
  private lastAcceptWarning = 0;
  readonly stats: ServerStats = { accepted: 0, refused: 0, requests: 0, invalid: 0, errors: 0, denied: 0, stray_fds: 0, timed_out: 0 };
  /** Read when each connection is adopted: a config reload (SIGHUP) changes it for new ones. */
  private get firstRequestTimeoutMs(): number {
    return this.o.firstRequestTimeoutMs ?? DEFAULT_FIRST_REQUEST_TIMEOUT_MS;
  }
  private readonly dispatcher: Dispatcher;

  constructor(private readonly o: ServerOptions) {
    this.dispatcher = new Dispatcher({
      broker: o.broker, loader: o.loader, restored: o.restored, log: o.log, statusExtra: o.statusExtra,
      luodStatus: (admin) => ({ version: VERSION, pid: process.pid, connections: this.peers.size, ...(admin ? { stats: this.liveStats() } : {}) }),
    });
    o.loop.watch(o.listenFd, EPOLLIN, () => this.acceptAll());
  }

  get connections(): number {
    return this.peers.size;
  }

  close(): void {
    this.closing = true;
    if (this.acceptRetry) clearTimeout(this.acceptRetry);
    this.o.loop.unwatch(this.o.listenFd);
    for (const p of [...this.peers]) p.conn.close("luod is stopping");
  }

  private acceptAll(): void {
    for (;;) {
      let fd: number | null;
      try {
        fd = acceptConnection(this.o.listenFd);
      } catch (e) {
        // EMFILE and friends: the connection stays in the backlog, so re-arming now would wake us
        // at once, forever. Try again a little later; warn at most once a second.
        const now = Date.now();
        if (now - this.lastAcceptWarning >= 1000) {
          this.lastAcceptWarning = now;
          this.o.log.warning(`accept: ${(e as Error).message}; retrying in ${ACCEPT_BACKOFF_MS} ms`);
        }
        this.acceptRetry = setTimeout(() => {
          this.acceptRetry = null;
          if (!this.closing) this.rearmListener();
        }, ACCEPT_BACKOFF_MS);
        return;
      }
      if (fd === null) break;
      this.adopt(fd);
    }
    this.rearmListener();
  }

  private rearmListener(): void {
    try {
      this.o.loop.rearm(this.o.listenFd, EPOLLIN);
    } catch (e) {
      if (!this.closing) this.o.log.error(`cannot watch the listening socket: ${(e as Error).message}`);
    }
  }

  private adopt(fd: number): void {
    let cred: { pid: number; uid: number; gid: number };
    let roles: Roles;
    try {
      cred = peerCredentials(fd);
      roles = rolesOf(cred, cred.uid === 0 ? [] : groupsOfPeer(fd, cred), this.o.access); // root needs no groups
    } catch (e) {
      this.o.log.warning(`SO_PEERCRED: ${(e as Error).message}`);
      this.stats.refused++;
      closeQuietly(fd);
      return;
    }
    const stranger = !roles.admin && !roles.client;
    // a flood of connections must not exhaust luod's fds, nor lock root out
    const limit = this.o.maxConnections + (cred.uid === 0 ? ROOT_RESERVE : 0);
    if (this.peers.size >= limit || (stranger && this.strangers >= MAX_STRANGERS)) {
      this.stats.refused++;
      this.o.log.debug(`connection from pid ${cred.pid} (uid ${cred.uid}) refused: ${this.peers.size >= limit ? `${this.peers.size} connections open` : `${this.strangers} connections without any permission open`}`);
      closeQuietly(fd);
      return;
    }
    const peer = new ClientPeer(++this.serial, cred, roles);
    try {
      peer.conn = new Connection(fd, this.o.loop, {
        onMessage: (msg, fds) => this.onMessage(peer, msg, fds),
        onInvalid: (code, message, echo) => this.onInvalid(peer, code, message, echo),
        onClose: (reason) => this.onClose(peer, reason),
      }, { maxSendLineBytes: MAX_REPLY_BYTES, maxQueuedBytes: 2 * MAX_REPLY_BYTES, readPauseBytes: 256 * 1024 });
    } catch (e) {
      this.o.log.warning(`cannot watch connection from pid ${cred.pid}: ${(e as Error).message}`);
      this.stats.refused++;
      closeQuietly(fd);
      return;
    }
    this.stats.accepted++;
    this.peers.add(peer);
    if (peer.stranger) this.strangers++;
    if (this.firstRequestTimeoutMs > 0) {
      peer.timer = setTimeout(() => this.firstRequestTimedOut(peer), this.firstRequestTimeoutMs);
      peer.timer.unref?.();
    }
  }

  private firstRequestTimedOut(peer: ClientPeer): void {
    peer.timer = null;
    if (peer.engaged || !this.peers.has(peer)) return;
    this.stats.timed_out++;
    const why = `no request accepted within ${this.firstRequestTimeoutMs} ms`;
    peer.send(errorReply(null, "ETIMEDOUT", `${why}; closing the connection`));
    peer.conn.close(why);
  }

  private onClose(peer: ClientPeer, reason: string): void {
    if (!this.peers.delete(peer)) return;
    if (peer.timer) clearTimeout(peer.timer);
    if (peer.stranger) this.strangers--;
    this.stats.stray_fds += peer.conn.strayFds;
    this.o.log.debug(`connection ${peer.serial} (pid ${peer.cred.pid}) closed: ${reason}`);
    try {
      this.o.broker.peerClosed(peer);
    } catch (e) {
      this.o.log.error(`while handling the close of connection ${peer.serial}: ${(e as Error).message}`);
    }
  }

  private onInvalid(peer: ClientPeer, code: ErrorCode, message: string, echo: { cmd?: string; tag?: string | number }): void {
    this.stats.invalid++;
    this.stats.errors++;
    peer.send(errorReply(echo.cmd, code, message, echo.tag));
  }

  private onMessage(peer: ClientPeer, msg: Record<string, unknown>, fds: number[]): void {
    this.stats.requests++;
    const parsed = parseRequest(msg);
    if (!parsed.ok) {
      closeQuietly(fds.splice(0));
      this.stats.errors++;
      peer.send(errorReply(parsed.cmd, parsed.code, parsed.message, parsed.tag));
      return;
    }
    const req = parsed.request;
    const want = expectedFds(req);
    if (fds.length !== want) {
      closeQuietly(fds.splice(0));
      this.stats.errors++;
      peer.send(errorReply(req.cmd, "EBADMSG", `${req.cmd} carries ${want} fd(s), got ${fds.length}`, req.tag));
      return;
    }
    if (!permits(peer.roles, req.cmd)) {
      closeQuietly(fds.splice(0));
      this.stats.errors++;
      this.stats.denied++;
      peer.send(errorReply(req.cmd, "EPERM", whyRefused(peer.cred, req.cmd, this.o.access), req.tag));
      return;
    }
    if (!peer.engaged) {
      peer.engaged = true;
      if (peer.timer) clearTimeout(peer.timer);
      peer.timer = null;
    }
    try {
      this.dispatcher.dispatch(peer, req, fds);
    } catch (e) {
      this.stats.errors++;
      if (!(e instanceof ProtocolError)) this.o.log.error(`${req.cmd} from pid ${peer.cred.pid}: ${(e as Error).stack ?? e}`);
      peer.send(errorReply(req.cmd, errorCodeOf(e, "EIO"), (e as Error).message, req.tag));
    } finally {
      closeQuietly(fds.splice(0)); // received fds are ours; the kernel keeps its own references where it needs them
    }
  }

  /** The counters, with the stray fds of connections still open. */
  liveStats(): ServerStats {
    let strays = this.stats.stray_fds;
    for (const p of this.peers) strays += p.conn.strayFds;
    return { ...this.stats, stray_fds: strays };
  }
}

// The socket side of luod: accepts connections, authorizes each request from the peer's
// credentials (taken once, at accept: SO_PEERCRED + SO_PEERGROUPS), validates it (src/wire) and
// hands it to dispatch.ts, which serves it (broker, loader or restored-session registry).
// Bad input is answered with one error line; it never throws out of here and never disturbs others.
//
// Bounds (docs/daemon.md, "Who may do what" and docs/protocol.md, "Limits"):
// - at most maxConnections connections, at most maxConnectionsPerUid of them from one uid; past
//   either limit a peer with the admin role takes one of ADMIN_RESERVE more slots, where only
//   admin requests are served (a client request there is refused EBUSY and the connection
//   closed; it gets RESERVE_FIRST_REQUEST_TIMEOUT_MS to send one). With the reserve full, a new
//   admin connection displaces the oldest reserved one that has sent nothing and has nothing
//   waiting to be read (idle: luoctl writes its request right after connect), so luoctl gets
//   through whatever the clients, root or not, hold; anything else is closed at accept;
// - a peer whose process has exited (its pidfd, SO_PEERPIDFD) while its connection stays open is
//   checked at once (Connection.peerExited): one whose replies nobody reads is closed, one luod
//   still reads releases any socket in flight as it arrives; a socket handed on to another
//   process keeps the client; replies unread for STALLED_OUTPUT_MS close any connection
//   (docs/daemon.md, "Dead peers");
// - at most MAX_STRANGERS connections from peers that may send nothing at all (every request
//   would be EPERM): they cannot crowd out clients even when the socket mode lets them in;
// - a connection that has no request accepted within firstRequestTimeoutMs is closed (a stalled
//   or silent connection cannot hold a slot); once one request was accepted it may idle forever,
//   as a subscriber waiting for the next update does;
// - per connection, src/wire/connection.ts bounds the line, the fds and the unsent output.
import { acceptConnection, peerCredentials, peerPidfd, waitFd } from "../kernel/unix";
import { closeQuietly } from "../kernel/fd";
import { EventLoop, EPOLLIN } from "../kernel/epoll";
import { Connection } from "../wire/connection";
import { MAX_REPLY_BYTES } from "../wire/framing";
import { parseRequest, expectedFds } from "../wire/requests";
import { PROTOCOL_VERSION, errorReply } from "../wire/replies";
import { ProtocolError, errorCodeOf, type ErrorCode } from "../wire/errors";
import type { Broker } from "./broker";
import type { KernelLoader } from "./loader";
import type { RestoredSessions } from "./restored";
import { groupsOfPeer, permits, REQUIRED_ROLE, rolesOf, whyRefused, type AccessPolicy, type Roles } from "./access";
import { Dispatcher, type DispatcherOptions } from "./dispatch";
import { ADMIN_RESERVE, ClientPeer, MAX_STRANGERS, perUidDefault, RESERVE_FIRST_REQUEST_TIMEOUT_MS, STALLED_OUTPUT_MS, type RequestObserver, type ServerStats } from "./peers";
import type { Logger } from "./log";
import { audit } from "./audit";
import { VERSION } from "../version";

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
  /** Connections one uid may hold (outside the admin reserve); default perUidDefault(maxConnections). */
  maxConnectionsPerUid?: number | null;
  /** Close a connection that has had no request accepted after this long; 0: never. Default 10 s. */
  firstRequestTimeoutMs?: number;
  /** Extra fields for STATUS (boot kind, device state…). */
  statusExtra: () => Record<string, unknown>;
  /** CHECK's checks beyond the loader's (dispatch.ts). */
  preflight?: DispatcherOptions["preflight"];
  /** Told of every request and connection (the metrics, metrics.ts). */
  observer?: RequestObserver;
}

export class Server {
  private readonly peers = new Set<ClientPeer>();
  private serial = 0;
  private strangers = 0;
  private reservedCount = 0;
  private readonly perUid = new Map<number, number>();
  private closing = false;
  private acceptRetry: ReturnType<typeof setTimeout> | null = null;
  private lastAcceptWarning = 0;
  readonly stats: ServerStats = { accepted: 0, refused: 0, requests: 0, invalid: 0, errors: 0, denied: 0, stray_fds: 0, timed_out: 0, sockets_refused: 0, dead_peers: 0 };
  /** Read when each connection is adopted: a config reload (SIGHUP) changes it for new ones. */
  private get firstRequestTimeoutMs(): number {
    return this.o.firstRequestTimeoutMs ?? DEFAULT_FIRST_REQUEST_TIMEOUT_MS;
  }
  /** Read at each accept, like maxConnections: a reload changes both. */
  private get maxPerUid(): number {
    return this.o.maxConnectionsPerUid ?? perUidDefault(this.o.maxConnections);
  }
  private readonly dispatcher: Dispatcher;

  constructor(private readonly o: ServerOptions) {
    this.dispatcher = new Dispatcher({
      broker: o.broker, loader: o.loader, restored: o.restored, log: o.log, statusExtra: o.statusExtra, preflight: o.preflight,
      onRefused: (cmd) => o.observer?.refused(cmd),
      luodStatus: (admin) => ({ version: VERSION, protocol: PROTOCOL_VERSION, pid: process.pid, connections: this.peers.size, ...(admin ? { stats: this.liveStats() } : {}) }),
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
      this.o.observer?.changed();
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
    // a flood of connections must not exhaust luod's fds, nor lock other uids or the admin out
    const full = this.peers.size - this.reservedCount >= this.o.maxConnections;
    const uidFull = (this.perUid.get(cred.uid) ?? 0) >= this.maxPerUid;
    const reserve = (full || uidFull) && roles.admin && (this.reservedCount < ADMIN_RESERVE || this.displaceIdleReserved());
    if (((full || uidFull) && !reserve) || (stranger && this.strangers >= MAX_STRANGERS)) {
      this.stats.refused++;
      const why = full ? `${this.peers.size} connections open` : uidFull ? `uid ${cred.uid} has ${this.maxPerUid} connections open` : `${this.strangers} connections without any permission open`;
      this.o.log.debug(`connection from pid ${cred.pid} (uid ${cred.uid}) refused: ${why}`);
      closeQuietly(fd);
      return;
    }
    const peer = new ClientPeer(++this.serial, cred, roles);
    peer.reserved = reserve;
    try {
      peer.conn = new Connection(fd, this.o.loop, {
        onMessage: (msg, fds) => this.onMessage(peer, msg, fds),
        onInvalid: (code, message, echo) => this.onInvalid(peer, code, message, echo),
        onClose: (reason) => this.onClose(peer, reason),
      }, { maxSendLineBytes: MAX_REPLY_BYTES, maxQueuedBytes: 2 * MAX_REPLY_BYTES, readPauseBytes: 256 * 1024, refuseSockets: true, stalledOutputMs: STALLED_OUTPUT_MS });
    } catch (e) {
      this.o.log.warning(`cannot watch connection from pid ${cred.pid}: ${(e as Error).message}`);
      this.stats.refused++;
      closeQuietly(fd);
      return;
    }
    this.stats.accepted++;
    this.peers.add(peer);
    if (peer.stranger) this.strangers++;
    if (peer.reserved) this.reservedCount++;
    else this.perUid.set(cred.uid, (this.perUid.get(cred.uid) ?? 0) + 1);
    this.watchPeerProcess(peer, fd);
    const timeout = peer.reserved ? Math.min(this.firstRequestTimeoutMs || Infinity, RESERVE_FIRST_REQUEST_TIMEOUT_MS) : this.firstRequestTimeoutMs;
    if (timeout > 0) {
      peer.timer = setTimeout(() => this.firstRequestTimedOut(peer, timeout), timeout);
      peer.timer.unref?.();
    }
  }

  /**
   * Closes the oldest connection in the admin reserve that has had no request and has none
   * waiting (a connection that just wrote its request is readable: it stays). Returns whether one
   * was closed (its slot is free).
   */
  private displaceIdleReserved(): boolean {
    for (const p of this.peers) {
      if (!p.reserved || p.engaged) continue;
      let waiting = true;
      try {
        waiting = waitFd(p.conn.fd, "read", 0); // data, or a hang-up its close will follow
      } catch {}
      if (waiting) continue;
      p.send(errorReply(null, "EBUSY", "the slots kept for admin requests are full; this connection sent nothing and gives its slot to a newer one"));
      p.conn.close("displaced from the admin reserve by a newer connection (it had sent nothing)");
      return !this.peers.has(p);
    }
    return false;
  }

  /**
   * Watches the peer's process (a pidfd is readable once it has exited): if its connection is
   * still open then, Connection.peerExited closes it unless luod still reads it. Without a pidfd
   * (the peer already gone, or no pidfd support) EOF and the stalled-output limit remain.
   */
  private watchPeerProcess(peer: ClientPeer, fd: number): void {
    try {
      const pidfd = peerPidfd(fd, peer.cred.pid);
      if (pidfd === null) return;
      peer.pidfd = pidfd;
      this.o.loop.watch(pidfd, EPOLLIN, () => this.peerProcessExited(peer));
    } catch (e) {
      if (peer.pidfd >= 0) closeQuietly(peer.pidfd);
      peer.pidfd = -1;
      this.o.log.debug(`no pidfd for pid ${peer.cred.pid}: ${(e as Error).message}`);
    }
  }

  private peerProcessExited(peer: ClientPeer): void {
    this.releasePidfd(peer); // fires once: the process stays exited
    if (!this.peers.has(peer)) return;
    peer.conn.peerExited();
    if (peer.conn.closed) {
      this.stats.dead_peers++;
      this.o.log.info(`connection ${peer.serial}: pid ${peer.cred.pid} has exited and nothing else holds its socket; closed`);
    }
  }

  private releasePidfd(peer: ClientPeer): void {
    if (peer.pidfd < 0) return;
    try {
      this.o.loop.unwatch(peer.pidfd);
    } catch {
      // the loop is gone (luod stopping): closing the fd is all that is left
    }
    closeQuietly(peer.pidfd);
    peer.pidfd = -1;
  }

  private firstRequestTimedOut(peer: ClientPeer, timeoutMs: number): void {
    peer.timer = null;
    if (peer.engaged || !this.peers.has(peer)) return;
    this.stats.timed_out++;
    const why = `no request accepted within ${timeoutMs} ms`;
    peer.send(errorReply(null, "ETIMEDOUT", `${why}; closing the connection`));
    peer.conn.close(why);
  }

  private onClose(peer: ClientPeer, reason: string): void {
    if (!this.peers.delete(peer)) return;
    if (peer.timer) clearTimeout(peer.timer);
    if (peer.stranger) this.strangers--;
    if (peer.reserved) this.reservedCount--;
    else {
      const n = (this.perUid.get(peer.cred.uid) ?? 1) - 1;
      if (n > 0) this.perUid.set(peer.cred.uid, n);
      else this.perUid.delete(peer.cred.uid);
    }
    this.releasePidfd(peer);
    this.stats.stray_fds += peer.conn.strayFds;
    this.stats.sockets_refused += peer.conn.socketsRefused;
    this.o.log.debug(`connection ${peer.serial} (pid ${peer.cred.pid}) closed: ${reason}`);
    try {
      this.o.broker.peerClosed(peer);
    } catch (e) {
      this.o.log.error(`while handling the close of connection ${peer.serial}: ${(e as Error).message}`);
    }
    this.o.observer?.changed();
  }

  private onInvalid(peer: ClientPeer, code: ErrorCode, message: string, echo: { cmd?: string; tag?: string | number }): void {
    this.stats.invalid++;
    this.stats.errors++;
    this.o.observer?.invalid(echo.cmd);
    peer.send(errorReply(echo.cmd, code, message, echo.tag));
  }

  private onMessage(peer: ClientPeer, msg: Record<string, unknown>, fds: number[]): void {
    this.stats.requests++;
    const parsed = parseRequest(msg);
    if (!parsed.ok) {
      closeQuietly(fds.splice(0));
      this.o.observer?.invalid(parsed.cmd);
      this.refuse(peer, parsed.cmd, parsed.code, parsed.message, parsed.tag);
      return;
    }
    const req = parsed.request;
    const want = expectedFds(req);
    if (fds.length !== want) {
      closeQuietly(fds.splice(0));
      this.o.observer?.invalid(req.cmd);
      this.refuse(peer, req.cmd, "EBADMSG", `${req.cmd} carries ${want} fd(s), got ${fds.length}`, req.tag);
      return;
    }
    this.o.observer?.received(req.cmd);
    if (!permits(peer.roles, req.cmd)) {
      closeQuietly(fds.splice(0));
      this.stats.denied++;
      this.o.observer?.refused(req.cmd);
      this.refuse(peer, req.cmd, "EPERM", whyRefused(peer.cred, req.cmd, this.o.access), req.tag);
      return;
    }
    if (peer.reserved && REQUIRED_ROLE[req.cmd] === "client") {
      // the slot is the administrator's way in while the table is full: never a client's session
      closeQuietly(fds.splice(0));
      this.stats.errors++;
      this.o.observer?.refused(req.cmd);
      peer.send(errorReply(req.cmd, "EBUSY", "luod's connection table is full (or your uid's share of it); this connection took a slot kept for admin requests", req.tag));
      peer.conn.close(`${req.cmd} on a slot kept for admin requests`);
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
      this.o.observer?.refused(req.cmd);
      if (!(e instanceof ProtocolError)) this.o.log.error(`${req.cmd} from pid ${peer.cred.pid}: ${(e as Error).stack ?? e}`);
      peer.send(errorReply(req.cmd, errorCodeOf(e, "EIO"), (e as Error).message, req.tag));
    } finally {
      closeQuietly(fds.splice(0)); // received fds are ours; the kernel keeps its own references where it needs them
    }
  }

  /**
   * A request refused before dispatch (invalid, wrong fds, not permitted): the error reply, and an
   * audit record when it is an admin request that would change something (audit.ts).
   */
  private refuse(peer: ClientPeer, cmd: string | undefined, code: ErrorCode, message: string, tag: string | number | undefined): void {
    this.stats.errors++;
    if (cmd !== undefined) audit(this.o.log, cmd, peer, { ok: false, code, reason: message });
    peer.send(errorReply(cmd, code, message, tag));
  }

  /** The counters, with the stray fds of connections still open. */
  liveStats(): ServerStats {
    let strays = this.stats.stray_fds;
    let sockets = this.stats.sockets_refused;
    for (const p of this.peers) {
      strays += p.conn.strayFds;
      sockets += p.conn.socketsRefused;
    }
    return { ...this.stats, stray_fds: strays, sockets_refused: sockets };
  }
}

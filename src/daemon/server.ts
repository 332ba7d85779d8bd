// The socket side of luod: accepts connections, authorizes each request from SO_PEERCRED, validates
// it (src/wire) and hands it to the broker, the loader or the restored-session registry.
// Bad input is answered with one error line; it never throws out of here and never disturbs others.
import { acceptConnection, peerCredentials } from "../kernel/unix";
import { closeFd } from "../kernel/fd";
import { EventLoop, EPOLLIN } from "../kernel/epoll";
import { SysError } from "../kernel/libc";
import { Connection } from "../wire/connection";
import { parseRequest, expectedFds, okReply, errorReply, ADMIN_COMMANDS, type Request } from "../wire/messages";
import { ProtocolError, oneLine } from "../wire/errors";
import type { Broker, Peer } from "./broker";
import type { KernelLoader } from "./loader";
import type { RestoredSessions } from "./restored";
import { mayAct, unitOf, type AccessPolicy } from "./access";
import type { Logger } from "./log";
import { VERSION } from "../version";

export interface ServerOptions {
  listenFd: number;
  loop: EventLoop;
  broker: Broker;
  loader: KernelLoader;
  restored: RestoredSessions;
  access: AccessPolicy;
  log: Logger;
  maxConnections: number;
  /** Extra fields for STATUS (boot kind, device state…). */
  statusExtra: () => Record<string, unknown>;
}

class ClientPeer implements Peer {
  readonly unit: string | null;
  constructor(
    readonly serial: number,
    readonly cred: { pid: number; uid: number; gid: number },
    readonly conn: Connection,
  ) {
    this.unit = unitOf(cred.pid);
  }
  send(msg: object, fds?: number[]): boolean {
    return this.conn.send(msg, fds);
  }
}

export class Server {
  private readonly peers = new Set<ClientPeer>();
  private serial = 0;
  readonly stats = { accepted: 0, refused: 0, requests: 0, errors: 0 };

  constructor(private readonly o: ServerOptions) {
    o.loop.watch(o.listenFd, EPOLLIN, () => this.acceptAll());
  }

  get connections(): number {
    return this.peers.size;
  }

  close(): void {
    this.o.loop.unwatch(this.o.listenFd);
    for (const p of [...this.peers]) p.conn.close("luod is stopping");
  }

  private acceptAll(): void {
    for (;;) {
      let fd: number | null;
      try {
        fd = acceptConnection(this.o.listenFd);
      } catch (e) {
        this.o.log.warning(`accept: ${(e as Error).message}`);
        break;
      }
      if (fd === null) break;
      if (this.peers.size >= this.o.maxConnections) {
        // a flood of connections must not exhaust luod's fds: refuse beyond the limit
        this.stats.refused++;
        closeFd(fd);
        continue;
      }
      this.adopt(fd);
    }
    this.o.loop.rearm(this.o.listenFd, EPOLLIN);
  }

  private adopt(fd: number): void {
    let cred;
    try {
      cred = peerCredentials(fd);
    } catch (e) {
      this.o.log.warning(`SO_PEERCRED: ${(e as Error).message}`);
      closeFd(fd);
      return;
    }
    this.stats.accepted++;
    const serial = ++this.serial;
    let peer: ClientPeer;
    const conn = new Connection(fd, this.o.loop, {
      onMessage: (msg, fds) => this.onMessage(peer, msg, fds),
      onClose: (reason) => this.onClose(peer, reason),
    });
    peer = new ClientPeer(serial, cred, conn);
    this.peers.add(peer);
  }

  private onClose(peer: ClientPeer, reason: string): void {
    if (!this.peers.delete(peer)) return;
    this.o.log.debug(`connection ${peer.serial} (pid ${peer.cred.pid}) closed: ${reason}`);
    try {
      this.o.broker.peerClosed(peer);
    } catch (e) {
      this.o.log.error(`while handling the close of connection ${peer.serial}: ${(e as Error).message}`);
    }
  }

  private onMessage(peer: ClientPeer, msg: Record<string, unknown>, fds: number[]): void {
    this.stats.requests++;
    const parsed = parseRequest(msg);
    if (!parsed.ok) {
      closeAll(fds);
      this.stats.errors++;
      peer.send(errorReply(parsed.cmd, parsed.code, parsed.message, parsed.tag));
      return;
    }
    const req = parsed.request;
    const want = expectedFds(req);
    if (fds.length !== want) {
      closeAll(fds);
      this.stats.errors++;
      peer.send(errorReply(req.cmd, "EBADMSG", `${req.cmd} carries ${want} fd(s), got ${fds.length}`, req.tag));
      return;
    }
    const role = ADMIN_COMMANDS.has(req.cmd) ? "admin" : "client";
    if (!mayAct(role, peer.cred, this.o.access)) {
      closeAll(fds);
      this.stats.errors++;
      peer.send(errorReply(req.cmd, "EPERM", `uid ${peer.cred.uid} may not send ${req.cmd} (${role} request)`, req.tag));
      return;
    }
    try {
      this.dispatch(peer, req, fds);
    } catch (e) {
      this.stats.errors++;
      const code = e instanceof ProtocolError || e instanceof SysError ? e.code : "EIO";
      if (!(e instanceof ProtocolError)) this.o.log.error(`${req.cmd} from pid ${peer.cred.pid}: ${(e as Error).stack ?? e}`);
      peer.send(errorReply(req.cmd, code, oneLine((e as Error).message), req.tag));
    } finally {
      closeAll(fds); // received fds are ours; the kernel keeps its own references where it needs them
    }
  }

  private dispatch(peer: ClientPeer, req: Request, fds: number[]): void {
    const { broker, loader, restored } = this.o;
    const reply = (fields: Record<string, unknown> = {}) => peer.send(okReply(req.cmd, fields, req.tag));
    switch (req.cmd) {
      case "SUBSCRIBE":
        return void reply({ ...broker.subscribe(peer, req.id), restored: restored.has(req.id) });
      case "READY":
        return void reply(broker.ready(peer, req.id));
      case "FAIL":
        broker.fail(peer, req.reason);
        return void reply();
      case "UNSUBSCRIBE":
        broker.unsubscribe(peer);
        return void reply();
      case "CLAIM": {
        const { session, fd } = restored.claim(req.id, peer.cred);
        peer.send({ event: "CLAIMED", reply: "CLAIM", ok: true, id: req.id, session, fds: 1, ...(req.tag !== undefined ? { tag: req.tag } : {}) }, [fd]);
        return;
      }
      case "FINISHED":
        restored.finished(req.id, peer.cred);
        return void reply({ id: req.id });
      case "STATUS":
        return void reply(this.status());
      case "LIST":
        return void reply({ clients: broker.list() });
      case "LOAD": {
        if (broker.phase !== "idle") throw new ProtocolError("EBUSY", `an update is ${broker.phase}`);
        const k = loader.load({
          kernelFd: fds[0], initrdFd: req.initrd ? fds[1] : null,
          cmdline: req.cmdline, force: req.force ?? false, sha256: req.sha256 ?? null,
        });
        return void reply({
          kernel: { version: k.version, size: k.size, sha256: k.sha256 },
          initrd: k.initrdSize === null ? null : { size: k.initrdSize },
          cmdline: k.cmdline,
          warnings: k.warnings,
        });
      }
      case "UNLOAD":
        if (broker.phase !== "idle") throw new ProtocolError("EBUSY", `an update is ${broker.phase}`);
        loader.unload();
        return void reply();
      case "CHECK": {
        const c = loader.check();
        return void reply({ ...c, ready: c.ready && broker.phase === "idle", phase: broker.phase });
      }
      case "KEXEC": {
        const timeoutMs = req.timeout_ms ?? 30_000;
        broker.kexec(peer, { timeoutMs, dryRun: req.dry_run ?? false }).then(
          (o) => {
            if (o.ok) peer.send(okReply("KEXEC", { dry_run: o.dryRun, timings: o.timings }, req.tag));
            else peer.send({ ...errorReply("KEXEC", o.code, o.message, req.tag), timings: o.timings });
          },
          (e) => {
            const code = e instanceof ProtocolError || e instanceof SysError ? e.code : "EIO";
            peer.send(errorReply("KEXEC", code, oneLine((e as Error).message), req.tag));
          },
        );
        return;
      }
      case "ABORT":
        return void reply({ aborted: broker.abortByAdmin(req.reason) });
      case "DISCARD":
        restored.discard(req.id);
        return void reply({ id: req.id });
    }
  }

  private status(): Record<string, unknown> {
    const { broker, loader, restored } = this.o;
    const now = Date.now();
    const k = loader.loaded();
    return {
      luod: { version: VERSION, pid: process.pid, connections: this.peers.size },
      ...broker.summary(),
      kernel: k ? { loaded: true, version: k.version, sha256: k.sha256, cmdline: k.cmdline, loaded_at: k.loadedAt } : { loaded: false },
      restored: restored.list().map((s) => ({
        id: s.id, session: s.session, state: s.state, uid: s.uid, unit: s.unit,
        age_s: Math.round((now - Date.parse(s.restoredAt)) / 1000),
      })),
      previous_update: restored.previous,
      ...this.o.statusExtra(),
    };
  }
}

function closeAll(fds: number[]): void {
  for (const fd of fds.splice(0)) {
    try {
      closeFd(fd);
    } catch {
      // already closed: nothing to release
    }
  }
}

// What luod does for each request that passed validation and the permission check (server.ts
// sees to both): it calls the broker, the loader or the restored-session registry and sends the
// reply, built with src/wire's builders in the shapes src/wire/replies.ts declares. A refusal is
// thrown (ProtocolError, or a SysError from the kernel layer); server.ts turns it into the error
// reply, and closes the request's fds after dispatch() returns.
import { type Command, type Request } from "../wire/requests";
import {
  okReply, errorReply, type AbortReply, type CheckReply, type EvictReply, type ListReply, type LoadReply, type PrepareReply, type StatusReply,
  type SubscribeReply,
} from "../wire/replies";
import { claimedReply } from "../wire/events";
import { KEXEC_TIMEOUT_DEFAULT_MS } from "../wire/limits";
import { ProtocolError, errorCodeOf } from "../wire/errors";
import type { Broker, Peer } from "./broker";
import type { Check, CheckResult, KernelLoader } from "./loader";
import { runningAbiJson } from "./abi-gate";
import { previousUpdateJson, type RestoredSessions } from "./restored";
import { ownsRestored, type Roles } from "./access";
import type { Logger } from "./log";
import { AUDITED, audit, refusal, type AuditOutcome } from "./audit";
import { closeQuietly as closeFds } from "../kernel/fd";

/** A connection as dispatch() needs it: the broker's Peer, and the roles found at accept. */
export interface Requester extends Peer {
  readonly roles: Roles;
}

export interface DispatcherOptions {
  broker: Broker;
  loader: KernelLoader;
  restored: RestoredSessions;
  log: Logger;
  /** STATUS's `luod` object (version, pid, connections; the server's counters for admins). */
  luodStatus: (admin: boolean) => Record<string, unknown>;
  /** Extra fields for STATUS (boot kind, device state…). */
  statusExtra: () => Record<string, unknown>;
  /** CHECK's checks that need more than the loader: memory, KHO scratch, panic= (preflight.ts). */
  preflight?: (next: CheckResult["next"]) => Check[];
  /** A request answered with an error after dispatch() returned (LOAD, CHECK, KEXEC refused): the metrics count it. */
  onRefused?: (cmd: Command) => void;
}


export class Dispatcher {
  constructor(private readonly o: DispatcherOptions) {}

  /**
   * Serves `req` (`fds`: the ones it carried, closed by the caller afterwards). Throws a refusal.
   * A request that changes something leaves an audit record (audit.ts) with its outcome: here
   * when it is answered at once, when its answer is known for LOAD and KEXEC.
   */
  dispatch(peer: Requester, req: Request, fds: number[]): void {
    if (!AUDITED.has(req.cmd)) return void this.serve(peer, req, fds);
    let done: ReturnType<Dispatcher["serve"]>;
    try {
      done = this.serve(peer, req, fds);
    } catch (e) {
      this.audit(peer, req, refusal(e));
      throw e;
    }
    if (done !== "later") this.audit(peer, req, done ?? { ok: true });
  }

  private audit(peer: Requester, req: Request, outcome: AuditOutcome): void {
    audit(this.o.log, req.cmd, peer, outcome, req.cmd === "EVICT" || req.cmd === "DISCARD" ? req.id : undefined);
  }

  /** One request: "later" when its reply (and audit record) comes when something finishes. */
  private serve(peer: Requester, req: Request, fds: number[]): AuditOutcome | "later" | void {
    const { broker, loader, restored } = this.o;
    const reply = (fields: Record<string, unknown> = {}) => peer.send(okReply(req.cmd, fields, req.tag));
    switch (req.cmd) {
      case "SUBSCRIBE": {
        // a restored session waiting for its owner keeps its id: nobody else may take it meanwhile,
        // and another uid is told only that the id is taken, as for any held id (not whose it is)
        const waiting = restored.waiting(req.id);
        const reserved = waiting !== null && !ownsRestored(peer.cred, waiting);
        return void reply({ ...broker.subscribe(peer, req.id, { reserved }), restored: waiting !== null } satisfies SubscribeReply);
      }
      case "PREPARE": {
        const { id, session, fd } = broker.prepare(peer, req.id);
        peer.send(okReply(req.cmd, { id, session, fds: 1 } satisfies PrepareReply, req.tag), [fd]); // luod keeps its fd
        return;
      }
      case "READY":
        return void reply(broker.ready(peer, req.id));
      case "FAIL":
        broker.fail(peer, req.reason);
        return void reply();
      case "UNSUBSCRIBE":
        broker.unsubscribe(peer);
        return void reply();
      case "CLAIM": {
        const claimer = { uid: peer.cred.uid, pid: peer.cred.pid, get unit() { return peer.unit; } }; // read only if checked
        const { session, fd } = restored.claim(req.id, claimer);
        peer.send(claimedReply(req.id, session, req.tag), [fd]);
        return;
      }
      case "FINISHED":
        restored.finished(req.id, peer.cred);
        return void reply({ id: req.id });
      case "STATUS":
        return void reply(this.status(peer));
      case "LIST":
        return void reply({ clients: broker.list() } satisfies ListReply);
      case "LOAD": {
        if (broker.phase !== "idle") throw new ProtocolError("EBUSY", `an update is ${broker.phase}`);
        // A refusal (size, header) throws here and is answered in order. Otherwise the image is
        // hashed while luod serves others and the reply comes when that is done (like KEXEC's);
        // the request's fds are then taken from the caller, which would close them on return.
        const idle = () => {
          if (broker.phase !== "idle") throw new ProtocolError("EBUSY", `an update started while the image was read (${broker.phase})`);
        };
        const loading = loader.load({
          kernelFd: fds[0]!, initrdFd: req.initrd ? fds[1]! : null,
          cmdline: req.cmdline, force: req.force ?? false, sha256: req.sha256 ?? null,
        }, idle);
        const own = fds.splice(0);
        loading.then(
          (k) => {
            this.audit(peer, req, { ok: true, detail: `kernel ${k.version}` });
            reply({
              kernel: { version: k.version, size: k.size, sha256: k.sha256 },
              initrd: k.initrdSize === null ? null : { size: k.initrdSize },
              cmdline: k.cmdline,
              warnings: k.warnings,
            } satisfies LoadReply);
          },
          (e) => {
            if (!(e instanceof ProtocolError)) this.o.log.error(`LOAD from pid ${peer.cred.pid}: ${(e as Error).stack ?? e}`);
            this.o.onRefused?.("LOAD");
            this.audit(peer, req, refusal(e));
            peer.send(errorReply("LOAD", errorCodeOf(e, "EIO"), (e as Error).message, req.tag));
          },
        ).catch((e) => this.o.log.error(`replying to LOAD: ${(e as Error).message}`)).finally(() => closeFds(own));
        return "later";
      }
      case "UNLOAD":
        if (broker.phase !== "idle") throw new ProtocolError("EBUSY", `an update is ${broker.phase}`);
        loader.unload();
        reply();
        return { ok: true };
      case "CHECK": {
        const answer = (c: CheckResult) => {
          const checks = [...c.checks, ...(this.o.preflight?.(c.next) ?? []), broker.clientsCheck()];
          reply({
            ready: checks.every((x) => x.ok) && broker.phase === "idle", checks, phase: broker.phase,
            abi: { running: c.abi.running && runningAbiJson(c.abi.running), next: c.abi.next && { ...c.abi.next } },
          } satisfies CheckReply);
        };
        if (!req.kernel) return void answer(loader.check());
        // With an image the check hashes it and reads its ABI in a worker: like LOAD, the reply
        // comes when that is done, and the request's fds are taken from the caller.
        const checking = loader.checkImage({ kernelFd: fds[0]!, initrdFd: req.initrd ? fds[1]! : null, cmdline: req.cmdline ?? "" });
        const own = fds.splice(0);
        checking.then(answer, (e) => {
          if (!(e instanceof ProtocolError)) this.o.log.error(`CHECK from pid ${peer.cred.pid}: ${(e as Error).stack ?? e}`);
          this.o.onRefused?.("CHECK");
          peer.send(errorReply("CHECK", errorCodeOf(e, "EIO"), (e as Error).message, req.tag));
        }).catch((e) => this.o.log.error(`replying to CHECK: ${(e as Error).message}`)).finally(() => closeFds(own));
        return;
      }
      case "KEXEC": {
        const timeoutMs = req.timeout_ms ?? KEXEC_TIMEOUT_DEFAULT_MS;
        const dryRun = req.dry_run ?? false;
        // audited when the update starts: it may end in the jump, with nothing logged after that
        let started = false;
        const onStart = (attempt: number) => {
          started = true;
          this.audit(peer, req, { ok: true, detail: `update ${attempt} started${dryRun ? " (dry run)" : ""}`, update: attempt });
        };
        broker.kexec(peer, { timeoutMs, dryRun, force: req.force ?? false, onStart }).then(
          (o) => {
            if (o.ok) peer.send(okReply("KEXEC", { dry_run: o.dryRun, timings: o.timings }, req.tag));
            else peer.send({ ...errorReply("KEXEC", o.code, o.message, req.tag), timings: o.timings });
          },
          (e) => {
            this.o.onRefused?.("KEXEC");
            if (!started) this.audit(peer, req, refusal(e));
            peer.send(errorReply("KEXEC", errorCodeOf(e, "EIO"), (e as Error).message, req.tag));
          },
        ).catch((e) => this.o.log.error(`replying to KEXEC: ${(e as Error).message}`)); // never an unhandled rejection
        return "later";
      }
      case "ABORT": {
        const aborted = broker.abortByAdmin(req.reason);
        reply({ aborted } satisfies AbortReply);
        return { ok: true, detail: aborted ? "the update was aborted" : "no update was running" };
      }
      case "DISCARD":
        restored.discard(req.id);
        reply({ id: req.id });
        return { ok: true };
      case "EVICT": {
        const evicted = broker.evict(peer, req.id, { force: req.force, reason: req.reason });
        reply(evicted satisfies EvictReply);
        return { ok: true, update: evicted.aborted_update, detail: evicted.aborted_update !== null ? `update ${evicted.aborted_update} aborted` : undefined };
      }
    }
  }

  /**
   * Admins see everything; a client sees the same, but only its own uid's restored sessions and,
   * of a running update's clients, only its own uid's ids (the counts stay whole).
   */
  private status(peer: Requester): StatusReply {
    const { broker, loader, restored } = this.o;
    const now = Date.now();
    const k = loader.loaded();
    const running = loader.runningAbiKnown();
    const admin = peer.roles.admin;
    return {
      luod: this.o.luodStatus(admin),
      ...broker.summary(admin ? null : peer.cred.uid),
      kernel: k ? { loaded: true, version: k.version, sha256: k.sha256, cmdline: k.cmdline, loaded_at: k.loadedAt, abi: k.abi ? { ...k.abi } : null, reloadable: loader.verifiable } : { loaded: false },
      // known once a LOAD or CHECK asked for it (reading the running image can take a second)
      running_abi: running && runningAbiJson(running),
      restored: restored.list().filter((s) => admin || s.uid === peer.cred.uid).map((s) => ({
        id: s.id, session: s.session, state: s.state, uid: s.uid, unit: s.unit,
        age_s: Math.round((now - Date.parse(s.restoredAt)) / 1000),
      })),
      previous_update: previousUpdateJson(restored.previous),
      ...this.o.statusExtra(),
    };
  }
}

// A KernelPort backed by memfds, for tests and the host profile bench (bench/profile.ts), like
// src/client/fake-luod.ts is for client authors. luod and luoctl never import it. Sessions are
// real memfds (so fds can be sent, dup'ed and closed like real ones); the kernel's rules are
// modelled where the broker depends on them (names unique among outgoing sessions; incoming
// sessions retrievable once).
import type { JumpOutcome, KernelPort, RetrievedSession, TakenBlob } from "./kernel-port";
import { memfdCreate } from "../kernel/memfd";
import { closeFd, dupFd } from "../kernel/fd";
import { SysError, Errno } from "../kernel/libc";

export class FakeKernel implements KernelPort {
  device = true;
  loaded = false;
  outgoing = new Map<string, number>();
  /** Incoming sessions of a pretend previous kernel, by name. */
  incoming = new Map<string, { retrieved: boolean; blob?: Uint8Array }>();
  blobs = new Map<string, Uint8Array>();
  /** The errno the jump fails with; null: it "works" and returns "jumped" (a real one never returns). */
  rebootError: string | null = "EINVAL";
  reboots = 0;
  createError: string | null = null;
  finished: string[] = [];

  devicePresent() { return this.device; }
  createSessions(names: string[]) {
    if (this.createError) throw sysError(`CREATE_SESSION ${names[0]}`, this.createError);
    return names.map((n) => {
      if (this.outgoing.has(n)) throw sysError(`CREATE_SESSION ${n}`, "EEXIST");
      const fd = memfdCreate(`fake-session:${n}`);
      this.outgoing.set(n, fd);
      return fd;
    });
  }
  retrieveSession(name: string): RetrievedSession {
    const s = this.incoming.get(name);
    if (!s) return { kind: "absent" };
    if (s.retrieved) return { kind: "alreadyRetrieved" };
    s.retrieved = true;
    return { kind: "retrieved", fd: memfdCreate(`fake-incoming:${name}`) };
  }
  takeBlob(name: string): TakenBlob {
    const s = this.incoming.get(name);
    if (!s?.blob) return { kind: "absent" };
    this.incoming.delete(name);
    return { kind: "taken", data: s.blob };
  }
  preserveBlob(name: string, _token: bigint, data: Uint8Array) {
    const [fd] = this.createSessions([name]);
    this.blobs.set(name, data);
    return fd;
  }
  finishSession(_fd: number, name: string) { this.finished.push(name); }
  dup(fd: number) { return dupFd(fd); }
  close(fd: number) {
    for (const [n, f] of this.outgoing) if (f === fd) this.outgoing.delete(n);
    closeFd(fd);
  }
  kexecLoaded() { return this.loaded; }
  loadKernel() { this.loaded = true; }
  unloadKernel() { this.loaded = false; }
  release() { return "7.2.13-fake"; }
  syncsStarted = 0;
  startSync() {
    this.syncsStarted++;
    return null;
  }
  jump(): JumpOutcome {
    this.reboots++;
    if (this.rebootError === null) return "jumped";
    throw sysError("reboot(LINUX_REBOOT_CMD_KEXEC)", this.rebootError);
  }
}

function sysError(op: string, code: string): SysError {
  return new SysError(op, (Errno as Record<string, number>)[code] ?? Errno.EIO);
}

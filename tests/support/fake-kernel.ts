// A fake KernelPort for fast daemon tests on any host: sessions are real memfds (so fds can be
// sent, dup'ed and closed like real ones), the kernel's rules are modelled where the broker
// depends on them (names unique among outgoing sessions; incoming sessions retrievable once).
import type { KernelPort } from "../../src/daemon/kernel-port";
import { memfdCreate } from "../../src/kernel/memfd";
import { closeFd, dupFd } from "../../src/kernel/fd";
import { SysError, Errno } from "../../src/kernel/libc";

export class FakeKernel implements KernelPort {
  device = true;
  loaded = false;
  outgoing = new Map<string, number>();
  /** Incoming sessions of a pretend previous kernel, by name. */
  incoming = new Map<string, { retrieved: boolean; blob?: Uint8Array }>();
  blobs = new Map<string, Uint8Array>();
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
  retrieveSession(name: string) {
    const s = this.incoming.get(name);
    if (!s) throw sysError(`RETRIEVE_SESSION ${name}`, "ENOENT");
    if (s.retrieved) throw sysError(`RETRIEVE_SESSION ${name}`, "EINVAL");
    s.retrieved = true;
    return memfdCreate(`fake-incoming:${name}`);
  }
  takeBlob(name: string) {
    const s = this.incoming.get(name);
    if (!s?.blob) return null;
    this.incoming.delete(name);
    return s.blob;
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
  syncAndReboot(): never {
    this.reboots++;
    throw sysError("reboot(LINUX_REBOOT_CMD_KEXEC)", this.rebootError ?? "EINVAL");
  }
}

function sysError(op: string, code: string): SysError {
  return new SysError(op, (Errno as Record<string, number>)[code] ?? Errno.EIO);
}

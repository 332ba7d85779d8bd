// What the broker needs from the kernel, as one small interface. The real implementation calls
// src/kernel; unit tests plug in fake-kernel.ts (real memfds standing in for session fds), so the
// broker's logic is tested fast on any host and proven on the real kernel in the VM. The kernel's
// answers that luod acts on are typed outcomes; only real failures throw (a SysError).
import { closeFd, dupFd, readWhole, writeFull } from "../kernel/fd";
import { SysError, Errno } from "../kernel/libc";
import {
  withLiveupdateDevice, createSession, retrieveSession, preserveFd, retrieveFd, finishSession,
  LIVEUPDATE_DEVICE,
} from "../kernel/liveupdate";
import { memfdCreate, addSeals, F_SEAL_SEAL, F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_WRITE } from "../kernel/memfd";
import { kexecFileLoad, kexecFileUnload, kexecLoaded, syncFilesystems, rebootKexec, unameRelease } from "../kernel/kexec";
import { existsSync, readFileSync } from "node:fs";

/** Dirty page cache above which a real update starts a background sync (see startSync). */
export const BACKGROUND_SYNC_MIN_KIB = 64 * 1024;

/** Dirty + Writeback of /proc/meminfo, KiB: what sync(2) still has to write. */
export function dirtyKiB(meminfo: string): number {
  let kib = 0;
  for (const m of meminfo.matchAll(/^(?:Dirty|Writeback):\s+(\d+) kB$/gm)) kib += Number(m[1]);
  return kib;
}

/**
 * RETRIEVE_SESSION of an incoming session, by name. The kernel's two refusals that mean something
 * to luod are outcomes, not errors: "absent" (ENOENT: no such incoming session, or it was
 * finished) and "alreadyRetrieved" (EINVAL: retrieved in this boot and still open somewhere).
 */
export type RetrievedSession = { kind: "retrieved"; fd: number } | { kind: "absent" } | { kind: "alreadyRetrieved" };

/** A blob session read and finished ("taken"), or "absent": no such incoming session (a cold boot). */
export type TakenBlob = { kind: "taken"; data: Uint8Array } | { kind: "absent" };

/**
 * How jump() came back. A direct jump that works never returns: the machine is in the next
 * kernel; one that fails throws the SysError of reboot(2). So a return means either
 * "delegated to systemd" (systemd mode: `systemctl kexec` was accepted and systemd will stop
 * luod, src/daemon/systemd-handoff.ts) or "jumped", which only a fake kernel returns (tests).
 */
export type JumpOutcome = "jumped" | "delegated to systemd";

export interface KernelPort {
  /** Whether /dev/liveupdate exists (LUO compiled in and `liveupdate=on`). */
  devicePresent(): boolean;
  /** Creates outgoing sessions with one open of the device; all or nothing. */
  createSessions(names: string[]): number[];
  /** RETRIEVE_SESSION; any other failure (the device missing, say) throws a SysError. */
  retrieveSession(name: string): RetrievedSession;
  /** RETRIEVE_SESSION + RETRIEVE_FD + read + FINISH of a blob session; other failures throw a SysError. */
  takeBlob(sessionName: string, token: bigint): TakenBlob;
  /** CREATE_SESSION + a sealed memfd holding `data`, preserved under `token`; returns the session fd. */
  preserveBlob(sessionName: string, token: bigint, data: Uint8Array): number;
  finishSession(fd: number, name: string): void;
  dup(fd: number): number;
  close(fd: number): void;
  kexecLoaded(): boolean | null;
  loadKernel(kernelFd: number, initrdFd: number | null, cmdline: string): void;
  unloadKernel(): void;
  release(): string;
  /**
   * When much of the page cache is dirty, starts writing it back in the background (a `sync`
   * process), so that the sync(2) of jump() — during which every client is paused —
   * finds little left. Returns the dirty KiB it saw, or null if it started nothing.
   */
  startSync(): number | null;
  /** sync(2) then reboot(LINUX_REBOOT_CMD_KEXEC); see JumpOutcome for what a return means. */
  jump(): JumpOutcome;
}

export function realKernel(devicePath = LIVEUPDATE_DEVICE): KernelPort {
  const dev = { path: devicePath };
  return {
    devicePresent: () => existsSync(devicePath),
    createSessions(names) {
      return withLiveupdateDevice((devFd) => {
        const fds: number[] = [];
        try {
          for (const name of names) fds.push(createSession(devFd, name));
          return fds;
        } catch (e) {
          for (const fd of fds) closeFd(fd); // closing an outgoing session unpreserves it
          throw e;
        }
      }, dev);
    },
    retrieveSession: (name) => withLiveupdateDevice((devFd) => retrieveIncoming(devFd, name), dev),
    takeBlob(sessionName, token) {
      const r = withLiveupdateDevice((devFd) => retrieveIncoming(devFd, sessionName), dev);
      // absent: not a live-update boot; already retrieved (and open elsewhere) is an error here
      if (r.kind === "absent") return r;
      if (r.kind === "alreadyRetrieved") throw new SysError(`RETRIEVE_SESSION ${sessionName}`, Errno.EINVAL);
      const sessionFd = r.fd;
      try {
        const fd = retrieveFd(sessionFd, token, sessionName);
        try {
          return { kind: "taken", data: readWhole(fd) };
        } finally {
          closeFd(fd);
        }
      } finally {
        // FINISH releases the kernel's copy; closing would do it implicitly (docs/kernel.md#session-lifetimes)
        try { finishSession(sessionFd, sessionName); } finally { closeFd(sessionFd); }
      }
    },
    preserveBlob(sessionName, token, data) {
      const memfd = memfdCreate(sessionName);
      try {
        writeFull(memfd, data, 0);
        // seals are captured at PRESERVE time (docs/kernel.md#memfd-preservation), so seal first
        addSeals(memfd, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
        const [sessionFd] = this.createSessions([sessionName]);
        try {
          preserveFd(sessionFd, memfd, token, sessionName);
        } catch (e) {
          closeFd(sessionFd);
          throw e;
        }
        return sessionFd;
      } finally {
        closeFd(memfd); // LUO holds its own reference after PRESERVE (docs/kernel.md#memfd-preservation)
      }
    },
    finishSession: (fd, name) => finishSession(fd, name),
    dup: dupFd,
    close: closeFd,
    kexecLoaded: () => kexecLoaded(),
    loadKernel: (k, i, c) => kexecFileLoad(k, i, c),
    unloadKernel: () => kexecFileUnload(),
    release: () => unameRelease(),
    startSync() {
      let dirty: number;
      try {
        dirty = dirtyKiB(readFileSync("/proc/meminfo", "utf8"));
      } catch {
        return null;
      }
      // Starting a process costs luod ~17 ms the first time (Bun's spawn machinery), during the
      // barrier: worth it only when the final sync(2) would take longer than that.
      if (dirty < BACKGROUND_SYNC_MIN_KIB) return null;
      try {
        Bun.spawn(["sync"], { stdin: "ignore", stdout: "ignore", stderr: "ignore" }).unref();
        return dirty;
      } catch {
        return null; // no sync(1) on this host: the sync(2) before the jump does all of it
      }
    },
    jump() {
      syncFilesystems();
      return rebootKexec();
    },
  };
}

/**
 * RETRIEVE_SESSION with its refusals as outcomes. Only the ioctl runs in here (the device is
 * opened by the caller), so an ENOENT of a missing device is never taken for "absent".
 */
function retrieveIncoming(devFd: number, name: string): RetrievedSession {
  try {
    return { kind: "retrieved", fd: retrieveSession(devFd, name) };
  } catch (e) {
    if (e instanceof SysError && e.errno === Errno.ENOENT) return { kind: "absent" };
    if (e instanceof SysError && e.errno === Errno.EINVAL) return { kind: "alreadyRetrieved" };
    throw e;
  }
}

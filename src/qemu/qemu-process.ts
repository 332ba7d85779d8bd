// Finding out what a QEMU binary offers, and running one with the guest's memfds inherited.
import { existsSync, readFileSync, readlinkSync, realpathSync, statSync } from "node:fs";
import { constants } from "node:os";
import { isAbsolute, join } from "node:path";
import { closeFd, dupFd } from "../client/memfd";
import { escapeControl } from "../wire/escape";
import type { BinaryIdentity, ExeIdentity } from "./record";
import { MIN_QEMU, parseMachineHelp, parseQemuVersion, RAM_FD, STATE_FD, versionAtLeast } from "./vm-config";

/** Which QEMU runs (or ran) the guest, as the start record names it. */
export interface QemuInfo {
  /** Absolute path of the binary. */
  path: string;
  version: string;
  /** The file that said `version` (absent: not known, so QEMU is probed again after the boot). */
  binary?: BinaryIdentity;
  /** The file the QEMU that saved the guest ran: `path` itself, or what a wrapper script there runs. */
  exe?: ExeIdentity;
}

export interface QemuProbe extends QemuInfo {
  /** Machine type → the versioned type it stands for. */
  machines: Map<string, string>;
}

const { signals } = constants;

/** `qemu-system-x86_64` looked up in PATH the way a shell does; an absolute or relative path as is. */
export function findQemu(name: string, pathEnv = process.env.PATH ?? "/usr/bin:/bin"): string | null {
  if (name.includes("/")) return existsSync(name) ? (isAbsolute(name) ? name : join(process.cwd(), name)) : null;
  return Bun.which(name, { PATH: pathEnv });
}

/** The line luo-qemu refuses a QEMU it cannot find with. */
export const noQemuLine = (name: string) => `no QEMU binary ${name} (give one with --qemu PATH)`;

/** stat(2) of the file at `path` (symlinks followed), or null when it cannot be read. */
export function binaryIdentity(path: string): BinaryIdentity | null {
  try {
    const st = statSync(path, { bigint: true });
    return { ino: String(st.ino), size: String(st.size), mtime_ns: String(st.mtimeNs), ctime_ns: String(st.ctimeNs) };
  } catch {
    return null;
  }
}

/**
 * The file process `pid` runs, by the path /proc/PID/exe names (stat'ed by that path, the way
 * whyProbeAgain will look at it after the boot); null when it is deleted or cannot be read.
 */
export function runningExe(pid: number): ExeIdentity | null {
  let path: string;
  try {
    path = readlinkSync(`/proc/${pid}/exe`);
  } catch {
    return null;
  }
  // replaced since it started: not the file there now (docs/kernel.md, "The running binary and the OOM score of helpers")
  if (path.endsWith(" (deleted)") || !isAbsolute(path)) return null;
  const id = binaryIdentity(path);
  return id ? { path, ...id } : null;
}

/**
 * What a start record may say of the QEMU that saved the guest: its identities when the process
 * runs the file at `path` itself (symlinks resolved), nothing when `path` is a wrapper script
 * (Debian's kvm, or one that does not exec: /proc/PID/exe is then the shell). Behind a wrapper,
 * which QEMU the next boot runs is only known by running it, so it is probed again.
 */
export function recordableIdentity(path: string, binary: BinaryIdentity | undefined, exe: ExeIdentity | null): { binary?: BinaryIdentity; exe?: ExeIdentity } {
  if (!binary || !exe) return {};
  let real: string;
  try {
    real = realpathSync(path);
  } catch {
    return {};
  }
  return exe.path === real ? { binary, exe } : {};
}

/**
 * Why the QEMU at `path` (whose file is `now`) must be probed again rather than taken for the
 * one that saved the guest (`saved`, from the start record), or null when it is that very QEMU:
 * `path` is the same file (inode, size and times: an upgrade replaces or rewrites a file, and
 * moves them) and so is the file QEMU ran, which differs from `path` when a wrapper script is
 * there (Debian's kvm): an upgraded QEMU behind an unchanged wrapper is probed. `statOf` reads
 * that file's identity now.
 */
export function whyProbeAgain(saved: QemuInfo, path: string, now: BinaryIdentity | null,
  statOf: (path: string) => BinaryIdentity | null = binaryIdentity): string | null {
  if (!saved.binary || !saved.exe) return "the start record does not identify the QEMU binary that saved the guest";
  if (saved.path !== path) return `the guest was saved by ${escapeControl(saved.path)}, this luo-qemu runs ${escapeControl(path)}`;
  if (!now) return `cannot stat ${escapeControl(path)}`;
  if (!sameBinary(saved.binary, now)) return `${escapeControl(path)} changed since the save (another inode, size or time)`;
  const exeNow = saved.exe.path === path ? now : statOf(saved.exe.path);
  if (!exeNow || !sameBinary(saved.exe, exeNow))
    return `${escapeControl(saved.exe.path)}, which QEMU ran, changed since the save (or is gone)`;
  return null;
}

export const sameBinary = (a: BinaryIdentity, b: BinaryIdentity): boolean =>
  a.ino === b.ino && a.size === b.size && a.mtime_ns === b.mtime_ns && a.ctime_ns === b.ctime_ns;

/**
 * Runs `qemu -version` and `qemu -machine help` (at once: each is a QEMU start) of the binary at
 * `path` (findQemu's). Throws one line when the binary is unusable or older than MIN_QEMU. The
 * file is stat'ed first: if it is replaced during the probe, the identity kept is the old file's,
 * and the next boot probes again rather than trust a version the new file never said.
 */
export async function probeQemu(path: string): Promise<QemuProbe> {
  const binary = binaryIdentity(path);
  const run = async (args: string[]) => {
    const p = Bun.spawn([path, ...args], { stdin: "ignore", stdout: "pipe", stderr: "pipe", timeout: 20_000 });
    const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    if (code !== 0) throw new Error(`${path} ${args.join(" ")} failed: ${err.trim().split("\n")[0] || `exit ${code}`}`);
    return out;
  };
  const [versionText, machineHelp] = await Promise.all([run(["-version"]), run(["-machine", "help"])]);
  const version = parseQemuVersion(versionText);
  if (!version) throw new Error(`${path} -version does not say which QEMU it is`);
  if (!versionAtLeast(version, MIN_QEMU)) throw new Error(`QEMU ${version} is too old: luo-qemu needs ${MIN_QEMU.join(".")} or newer`);
  return { path, version, ...(binary ? { binary } : {}), machines: parseMachineHelp(machineHelp) };
}

/** Whether this kernel offers seccomp filters (QEMU's -sandbox needs them). */
export function kernelHasSeccomp(): boolean {
  try {
    return /^Seccomp:\s*\d/m.test(readFileSync("/proc/self/status", "utf8"));
  } catch {
    return false;
  }
}

export interface RunningQemu {
  pid: number;
  /** Resolves when QEMU exits: its exit code, or 128 + the signal that killed it. */
  exited: Promise<number>;
  hasExited(): boolean;
  kill(signal?: NodeJS.Signals): void;
}

/** Starts QEMU with the RAM memfd on fd 3 (and a device state on fd 4); stdio is luo-qemu's own. */
export function spawnQemu(argv: readonly string[], ramFd: number, stateFd?: number): RunningQemu {
  // An fd already at 3 or 4 would be dup2'ed onto itself (keeping O_CLOEXEC) or overwritten
  // before it is placed: hand QEMU dups above them instead.
  const dups: number[] = [];
  const placeable = (fd: number): number => {
    if (fd > STATE_FD) return fd;
    const low: number[] = [];
    let d = dupFd(fd);
    while (d <= STATE_FD) low.push(d), (d = dupFd(fd)); // dupFd takes the lowest free fd from 3
    for (const l of low) closeFd(l);
    dups.push(d);
    return d;
  };
  const fds: (number | "inherit")[] = ["inherit", "inherit", "inherit"];
  fds[RAM_FD] = placeable(ramFd);
  if (stateFd !== undefined) fds[STATE_FD] = placeable(stateFd);
  let proc: ReturnType<typeof Bun.spawn>;
  try {
    proc = Bun.spawn({ cmd: [...argv], stdio: fds as never });
  } finally {
    for (const fd of dups) closeFd(fd);
  }
  let done = false;
  const exited = proc.exited.then((code) => {
    done = true;
    return proc.signalCode ? 128 + (signals[proc.signalCode as keyof typeof signals] ?? 0) : code;
  });
  return {
    pid: proc.pid,
    exited,
    hasExited: () => done,
    kill: (signal = "SIGTERM") => {
      if (!done) proc.kill(signal);
    },
  };
}

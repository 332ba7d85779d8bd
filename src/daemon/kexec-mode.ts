// Which way luod jumps (`luod --kexec-mode=direct|systemd|auto`), chosen once at start from what
// luod may assume about its service manager (docs/systemd.md):
//  * direct:  luod calls sync() + reboot(LINUX_REBOOT_CMD_KEXEC) itself while it holds every
//             session fd. For hosts without systemd ≥ 261. On a systemd host that skips the orderly
//             shutdown and systemd's own LUO step (docs/systemd.md#what-this-means-for-luod).
//  * systemd: every client session goes into luod's own fd store (FDSTORE=1) as soon as its client
//             is READY, the manifest session "luod" at the commit; then luod runs `systemctl kexec`.
//             systemd stops the units in order, keeps the fds through systemd-shutdown (the unit has
//             FileDescriptorStorePreserve=yes), the kernel carries the sessions, and after the boot
//             PID 1 retrieves them and hands them to luod in $LISTEN_FDS/$LISTEN_FDNAMES
//             (systemd-handoff.ts).
//  * auto:    systemd when started by systemd ≥ 261 with an fd store that survives a kexec
//             ($NOTIFY_SOCKET, $FDSTORE > 0, FileDescriptorStorePreserve=yes|on-success), else direct.
import { readFileSync } from "node:fs";
import { unitFromCgroup } from "./access";
import type { SystemdOps } from "./service-manager";

export const KEXEC_MODES = ["auto", "direct", "systemd"] as const;
export type KexecMode = (typeof KEXEC_MODES)[number];
/** The first systemd whose PID 1 carries fd stores across a kexec through LUO (docs/systemd.md#systemd-versions). */
export const MIN_SYSTEMD_VERSION = 261;

// ---- what luod may assume about its service manager --------------------------------------------

export interface Environment {
  /** $NOTIFY_SOCKET is set: started by a service manager that listens to sd_notify. */
  notifySocket: boolean;
  /** $FDSTORE: FileDescriptorStoreMax= of our unit (systemd ≥ 254 sets it); 0 when unset. */
  fdStoreMax: number;
  /** The manager's version (262 for "262.1-1"), null when unknown. */
  version: number | null;
  /** Our unit, from /proc/self/cgroup. */
  unit: string | null;
  /** FileDescriptorStorePreserve= of our unit ("yes", "on-success", "restart", "no"), null when unknown. */
  preserve: string | null;
}

/** Why systemd mode cannot be used here; empty when it can. */
export function systemdModeProblems(env: Environment): string[] {
  const p: string[] = [];
  if (!env.notifySocket) p.push("not started by systemd ($NOTIFY_SOCKET is unset)");
  if (env.fdStoreMax <= 0) p.push("no fd store ($FDSTORE is unset: FileDescriptorStoreMax= must be > 0)");
  if (env.notifySocket && env.fdStoreMax > 0) {
    if (env.version === null) p.push("the systemd version is unknown");
    else if (env.version < MIN_SYSTEMD_VERSION)
      p.push(`systemd ${env.version} does not carry fd stores across a kexec (needs ${MIN_SYSTEMD_VERSION} or later)`);
    if (env.preserve !== "yes" && env.preserve !== "on-success")
      p.push(`FileDescriptorStorePreserve=${env.preserve ?? "unknown"} (must be yes or on-success for the store to cross a kexec)`);
  }
  return p;
}

/** Picks the mode; throws when `systemd` is asked for but cannot work. */
export function resolveKexecMode(requested: KexecMode, env: Environment): { mode: "direct" | "systemd"; why: string } {
  if (requested === "direct") return { mode: "direct", why: "--kexec-mode=direct" };
  const problems = systemdModeProblems(env);
  if (requested === "systemd") {
    if (problems.length) throw new Error(`--kexec-mode=systemd: ${problems.join("; ")}`);
    return { mode: "systemd", why: "--kexec-mode=systemd" };
  }
  if (problems.length) return { mode: "direct", why: problems.join("; ") };
  return { mode: "systemd", why: `systemd ${env.version}, fd store of ${env.fdStoreMax}, FileDescriptorStorePreserve=${env.preserve}` };
}

/** What luod knows about its manager, asking systemctl only when it could matter. */
export function probeEnvironment(ops: Pick<SystemdOps, "run" | "env">): Environment {
  const notifySocket = !!ops.env.NOTIFY_SOCKET;
  const fdStoreMax = /^\d+$/.test(ops.env.FDSTORE ?? "") ? Number(ops.env.FDSTORE) : 0;
  let unit: string | null = null;
  try {
    unit = unitFromCgroup(readFileSync("/proc/self/cgroup", "utf8"));
  } catch {
    /* no cgroup v2 */
  }
  let version: number | null = null;
  let preserve: string | null = null;
  if (notifySocket && fdStoreMax > 0) {
    version = parseSystemdVersion(ops.run(["systemctl", "show", "--property=Version", "--value"], 10_000).stdout);
    if (version === null) version = parseSystemdVersion(ops.run(["systemctl", "--version"], 10_000).stdout);
    if (unit) {
      const p = ops.run(["systemctl", "show", "--property=FileDescriptorStorePreserve", "--value", unit], 10_000);
      preserve = p.code === 0 && p.stdout.trim() ? p.stdout.trim() : null;
    }
  }
  return { notifySocket, fdStoreMax, version, unit, preserve };
}

/** 262 from "262.1-1", "systemd 262 (262.1-1)", "v262-rc1"; null otherwise. */
export function parseSystemdVersion(s: string): number | null {
  const m = /^(?:systemd\s+)?v?(\d{2,4})(?![\d])/.exec(s.trim());
  return m ? Number(m[1]) : null;
}

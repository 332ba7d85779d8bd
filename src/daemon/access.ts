// Who may do what, from SO_PEERCRED. Admin requests: uid 0 or a member of the admin group.
// Client requests: uid 0 or a member of the client group (or anyone who could open the socket when
// no client group is configured: the socket file's owner and mode then decide).
// SO_PEERCRED carries only the primary gid, so supplementary groups come from /proc/PID/status.
import { readFileSync } from "node:fs";

export interface Credentials {
  pid: number;
  uid: number;
  gid: number;
}

export interface AccessPolicy {
  adminGid: number | null;
  clientGid: number | null;
}

export type Role = "admin" | "client";

export function groupsOf(cred: Credentials): number[] {
  try {
    const status = readFileSync(`/proc/${cred.pid}/status`, "utf8");
    const line = status.split("\n").find((l) => l.startsWith("Groups:"));
    const extra = line ? line.slice(7).trim().split(/\s+/).filter(Boolean).map(Number) : [];
    return [cred.gid, ...extra];
  } catch {
    return [cred.gid];
  }
}

export function mayAct(role: Role, cred: Credentials, policy: AccessPolicy, groups: () => number[] = () => groupsOf(cred)): boolean {
  if (cred.uid === 0) return true;
  const gid = role === "admin" ? policy.adminGid : policy.clientGid;
  if (gid === null) return role === "client";
  return groups().includes(gid);
}

/** The systemd unit of a process, from its cgroup path (null outside systemd). */
export function unitOf(pid: number): string | null {
  try {
    const cgroup = readFileSync(`/proc/${pid}/cgroup`, "utf8");
    const path = cgroup.split("\n").find((l) => l.startsWith("0::"))?.slice(3) ?? "";
    const unit = path.split("/").reverse().find((p) => /\.(service|scope)$/.test(p));
    return unit ?? null;
  } catch {
    return null;
  }
}

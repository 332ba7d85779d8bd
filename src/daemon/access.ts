// Who may do what (docs/daemon.md, "Who may do what"). Decided once per connection, at accept,
// from SO_PEERCRED (uid, primary gid) and SO_PEERGROUPS (supplementary groups), both as of the
// peer's connect(): nothing is looked up later by pid, which could have been reused.
//
//   role    granted to                                   requests
//   admin   uid 0, members of the admin group            LIST LOAD UNLOAD CHECK KEXEC ABORT DISCARD EVICT
//   client  uid 0, members of the client group           SUBSCRIBE PREPARE READY FAIL UNSUBSCRIBE CLAIM FINISHED
//   either                                               STATUS (a client sees only its own restored sessions)
//
// With no group configured for a role, only uid 0 has it. A peer with no role at all (a
// "stranger") is answered EPERM for every request; the server caps how many of them it keeps.
import { readFileSync } from "node:fs";
import { peerGroups } from "../kernel/unix";
import type { Command } from "../wire/messages";

export interface Credentials {
  pid: number;
  uid: number;
  gid: number;
}

export interface AccessPolicy {
  /** Members may send admin requests (besides uid 0). null: only uid 0. */
  adminGid: number | null;
  /** Members may send client requests (besides uid 0). null: only uid 0. */
  clientGid: number | null;
}

export type Role = "admin" | "client";

export interface Roles {
  admin: boolean;
  client: boolean;
}

/** Which role each request needs; STATUS is read-only and open to both. */
export const REQUIRED_ROLE: Readonly<Record<Command, Role | "any">> = {
  SUBSCRIBE: "client",
  PREPARE: "client",
  READY: "client",
  FAIL: "client",
  UNSUBSCRIBE: "client",
  CLAIM: "client",
  FINISHED: "client",
  STATUS: "any",
  LIST: "admin",
  LOAD: "admin",
  UNLOAD: "admin",
  CHECK: "admin",
  KEXEC: "admin",
  ABORT: "admin",
  DISCARD: "admin",
  EVICT: "admin",
};

/** The roles of a peer: uid 0 has both; otherwise membership (primary or supplementary gid). */
export function rolesOf(cred: Credentials, groups: readonly number[], policy: AccessPolicy): Roles {
  if (cred.uid === 0) return { admin: true, client: true };
  const member = (gid: number | null) => gid !== null && (cred.gid === gid || groups.includes(gid));
  return { admin: member(policy.adminGid), client: member(policy.clientGid) };
}

export function permits(roles: Roles, cmd: Command): boolean {
  const need = REQUIRED_ROLE[cmd];
  return need === "any" ? roles.admin || roles.client : roles[need];
}

/** One line for an EPERM reply: what the request needs, in terms of this policy. */
export function whyRefused(cred: Credentials, cmd: Command, policy: AccessPolicy): string {
  const need = REQUIRED_ROLE[cmd];
  const gids = need === "admin" ? [policy.adminGid] : need === "client" ? [policy.clientGid] : [policy.adminGid, policy.clientGid];
  const groups = [...new Set(gids.filter((g): g is number => g !== null))];
  const who = groups.length ? `uid 0 and members of group ${groups.join(" or ")}` : "uid 0";
  const kind = need === "any" ? `${cmd} is` : `${need} requests are`;
  return `uid ${cred.uid} may not send ${cmd}: ${kind} for ${who} only`;
}

/**
 * The peer's supplementary groups: SO_PEERGROUPS, or /proc/PID/status on a kernel without it
 * (before 4.13; racy with pid reuse, hence only the fallback).
 */
export function groupsOfPeer(fd: number, cred: Credentials): number[] {
  try {
    return peerGroups(fd);
  } catch {
    return groupsFromProc(cred.pid);
  }
}

export function groupsFromProc(pid: number): number[] {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const line = status.split("\n").find((l) => l.startsWith("Groups:"));
    return line ? line.slice(7).trim().split(/\s+/).filter(Boolean).map(Number) : [];
  } catch {
    return [];
  }
}

/**
 * A restored session (or a subscription to its id) belongs to the uid that subscribed before the
 * jump: another non-root uid may neither claim it nor subscribe under its id while it waits.
 * (The unit check of CLAIM is in restored.ts; units come from unitOf below.)
 */
export function ownsRestored(cred: Credentials, owner: { uid: number }): boolean {
  return cred.uid === 0 || cred.uid === owner.uid;
}

/**
 * The systemd service of a process, from its cgroup path (null outside a service). Only
 * `.service` units count: their names are stable across boots, so CLAIM after the jump can be
 * compared with SUBSCRIBE before it. Scopes (session-3.scope, run-u7.scope) are transient, named
 * anew on every boot and login, and would make a correct claimer look foreign.
 */
export function unitOf(pid: number): string | null {
  try {
    return unitFromCgroup(readFileSync(`/proc/${pid}/cgroup`, "utf8"));
  } catch {
    return null;
  }
}

/** The innermost `.service` of a cgroup v2 path in /proc/PID/cgroup's "0::" line. */
export function unitFromCgroup(cgroup: string): string | null {
  const path = cgroup.split("\n").find((l) => l.startsWith("0::"))?.slice(3) ?? "";
  return path.split("/").reverse().find((p) => p.endsWith(".service")) ?? null;
}

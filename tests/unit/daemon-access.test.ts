// Who may do what: roles from credentials and groups, the request table, units from cgroups.
import { describe, expect, test } from "bun:test";
import { permits, rolesOf, whyRefused, unitFromCgroup, ownsRestored, groupsOfPeer, REQUIRED_ROLE } from "../../src/daemon/access";
import { COMMANDS } from "../../src/wire/messages";
import { socketPair } from "../../src/kernel/unix";
import { closeFd } from "../../src/kernel/fd";

const policy = { adminGid: 10, clientGid: 20 };
const user = (uid: number, gid = uid) => ({ pid: 1, uid, gid });

describe("roles", () => {
  test("uid 0 has both roles, whatever the policy", () => {
    expect(rolesOf(user(0), [], { adminGid: null, clientGid: null })).toEqual({ admin: true, client: true });
  });

  test("membership counts through the primary gid or a supplementary group", () => {
    expect(rolesOf(user(1000, 10), [], policy)).toEqual({ admin: true, client: false });
    expect(rolesOf(user(1000), [20], policy)).toEqual({ admin: false, client: true });
    expect(rolesOf(user(1000), [10, 20], policy)).toEqual({ admin: true, client: true });
  });

  test("without a configured group, no non-root uid has that role", () => {
    expect(rolesOf(user(1000), [10, 20], { adminGid: null, clientGid: null })).toEqual({ admin: false, client: false });
  });
});

describe("the request table", () => {
  test("names every command of the protocol", () => {
    expect(Object.keys(REQUIRED_ROLE).sort()).toEqual([...COMMANDS].sort());
  });

  test("client commands need the client role; admin commands the admin role, except STATUS (either)", () => {
    const needing = (roles: string[]) => COMMANDS.filter((cmd) => roles.includes(REQUIRED_ROLE[cmd])).sort();
    expect(needing(["client"])).toEqual(["CLAIM", "FAIL", "FINISHED", "PREPARE", "READY", "SUBSCRIBE", "UNSUBSCRIBE"]);
    expect(needing(["admin", "any"])).toEqual(["ABORT", "CHECK", "DISCARD", "EVICT", "KEXEC", "LIST", "LOAD", "STATUS", "UNLOAD"]);
    expect(needing(["any"])).toEqual(["STATUS"]);
  });

  test("a peer with no role may send nothing; a client may send STATUS but not LIST", () => {
    const none = { admin: false, client: false };
    for (const cmd of COMMANDS) expect(permits(none, cmd)).toBe(false);
    const client = { admin: false, client: true };
    expect(permits(client, "STATUS")).toBe(true);
    expect(permits(client, "SUBSCRIBE")).toBe(true);
    expect(permits(client, "LIST")).toBe(false);
    expect(permits(client, "KEXEC")).toBe(false);
    const admin = { admin: true, client: false };
    expect(permits(admin, "KEXEC")).toBe(true);
    expect(permits(admin, "SUBSCRIBE")).toBe(false);
  });

  test("the EPERM message says who may send the request", () => {
    expect(whyRefused(user(1000), "KEXEC", policy)).toBe("uid 1000 may not send KEXEC: admin requests are for uid 0 and members of group 10 only");
    expect(whyRefused(user(1000), "CLAIM", { adminGid: null, clientGid: null })).toBe("uid 1000 may not send CLAIM: client requests are for uid 0 only");
    expect(whyRefused(user(1000), "STATUS", policy)).toContain("group 10 or 20");
  });
});

describe("ownership of restored ids", () => {
  test("only the recorded uid, or root", () => {
    expect(ownsRestored(user(1000), { uid: 1000 })).toBe(true);
    expect(ownsRestored(user(0), { uid: 1000 })).toBe(true);
    expect(ownsRestored(user(1001), { uid: 1000 })).toBe(false);
  });
});

describe("units", () => {
  test("the innermost .service of the cgroup path", () => {
    expect(unitFromCgroup("0::/system.slice/qemu-vm42.service\n")).toBe("qemu-vm42.service");
    expect(unitFromCgroup("0::/system.slice/qemu.service/vm-42\n")).toBe("qemu.service");
    expect(unitFromCgroup("0::/user.slice/user-1000.slice/user@1000.service/app.slice/kv.service\n")).toBe("kv.service");
  });

  test("scopes are transient (new names every boot and login) and give null", () => {
    expect(unitFromCgroup("0::/user.slice/user-1000.slice/session-3.scope\n")).toBeNull();
    expect(unitFromCgroup("0::/system.slice/run-u7.scope\n")).toBeNull();
    expect(unitFromCgroup("0::/\n")).toBeNull();
    expect(unitFromCgroup("")).toBeNull();
  });
});

describe("the peer's groups", () => {
  test("come from SO_PEERGROUPS as of connect: a socketpair shows this process's groups", () => {
    const [a, b] = socketPair();
    try {
      const mine = new Set(process.getgroups?.() ?? []);
      mine.delete(process.getgid?.() ?? -1);
      const got = new Set(groupsOfPeer(a, { pid: process.pid, uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 }));
      got.delete(process.getgid?.() ?? -1);
      expect(got).toEqual(mine);
    } finally {
      closeFd(a);
      closeFd(b);
    }
  });
});

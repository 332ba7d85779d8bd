// The config reload of SIGHUP (src/daemon/reload.ts): what it applies, what needs a restart, a
// bad file keeps the old settings, and during an update the reload waits until the update ends.
import { describe, expect, test } from "bun:test";
import { configChanges, Reloader, type ReloadableSettings } from "../../src/daemon/reload";
import { createLogger } from "../../src/daemon/log";
import type { DaemonConfig } from "../../src/daemon/main";
import type { DaemonConfig as ReloadedConfig } from "../../src/daemon/config";

// main.ts's config is what a reload compares
const same: ReloadedConfig = {} as DaemonConfig;
void same;

const base: DaemonConfig = {
  socket: "/run/luod/liveupdate.sock", stateDir: "/run/luod", device: "/dev/liveupdate",
  adminGid: null, clientGid: null, socketGid: null, socketMode: 0o600, maxConnections: 256,
  firstRequestTimeoutMs: 10_000, commitDelayMs: 0, kexecMode: "auto", verbose: false,
};

function setup(read: () => DaemonConfig, busy: () => boolean) {
  const lines: string[] = [];
  const applied: ReloadableSettings[] = [];
  const notified: string[] = [];
  const reloader = new Reloader({
    current: { ...base }, read, busy, pollMs: 5,
    log: createLogger({ prefix: false, write: (l) => lines.push(l) }),
    apply: (s) => applied.push(s),
    notify: (s) => notified.push(s),
  });
  return { reloader, lines, applied, notified };
}

describe("configChanges", () => {
  test("names each changed setting by its config key, old → new; the socket, state dir and device need a restart", () => {
    const next = { ...base, clientGid: 36, maxConnections: 64, firstRequestTimeoutMs: 2000, socket: "/run/x.sock", socketMode: 0o660 };
    expect(configChanges(base, next)).toEqual({
      applied: ["client-group none (root only) → 36", "max-connections 256 → 64", "first-request-timeout 10000 ms → 2000 ms"],
      needRestart: ["socket /run/luod/liveupdate.sock → /run/x.sock", "socket-mode 0600 → 0660"],
    });
    expect(configChanges(base, { ...base })).toEqual({ applied: [], needRestart: [] });
  });
});

describe("Reloader", () => {
  test("applies the reloadable settings, logs what changed, and tells systemd RELOADING=1 then READY=1", () => {
    const { reloader, lines, applied, notified } = setup(() => ({ ...base, adminGid: 10, verbose: true }), () => false);
    reloader.request();
    expect(applied).toEqual([expect.objectContaining({ adminGid: 10, verbose: true, maxConnections: 256 })]);
    expect(lines).toEqual(["notice: SIGHUP: config reloaded; changed: admin-group none (root only) → 10, verbose false → true"]);
    expect(notified[0]).toMatch(/^RELOADING=1\nMONOTONIC_USEC=\d+$/);
    expect(notified[1]).toBe("READY=1");
    // a second reload of the same file changes nothing
    reloader.request();
    expect(lines[1]).toBe("notice: SIGHUP: config reloaded; nothing to change");
  });

  test("a config that cannot be read keeps the old settings: one error line, nothing applied", () => {
    const { reloader, lines, applied, notified } = setup(() => { throw new Error("/etc/luod.conf:1: unknown key \"client-grop\""); }, () => false);
    reloader.request();
    expect(applied).toEqual([]);
    expect(lines).toEqual(['error: SIGHUP: the config is not reloaded, luod keeps its settings: /etc/luod.conf:1: unknown key "client-grop"']);
    expect(notified).toHaveLength(2);
  });

  test("during an update the reload waits until the update has ended, once for any number of SIGHUPs", async () => {
    let updating = true;
    let reads = 0;
    const { reloader, lines, applied } = setup(() => (reads++, { ...base, maxConnections: 9 }), () => updating);
    reloader.request();
    reloader.request();
    await Bun.sleep(30);
    expect(reads).toBe(0);
    expect(applied).toEqual([]);
    expect(lines).toEqual(["notice: SIGHUP during an update: the config file is reloaded once the update has ended"]);
    updating = false;
    for (let i = 0; i < 200 && applied.length === 0; i++) await Bun.sleep(5);
    expect(reads).toBe(1);
    expect(applied).toEqual([expect.objectContaining({ maxConnections: 9 })]);
    reloader.cancel();
  });
});

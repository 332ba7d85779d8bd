// The compiled binary on this host, which has no LUO kernel: luod must start, serve clients and
// admins, refuse a live update with one clear line, and keep running.
import { describe, expect, test, beforeAll, afterAll } from "bun:test";
import { readFileSync } from "node:fs";
import { startDaemon, run, requireBinary, LUO, type Daemon } from "../support/binary";
import { LuoClient } from "../../src/client";
import { RawPeer } from "./raw-peer";

let luod: Daemon;
beforeAll(async () => {
  requireBinary();
  luod = await startDaemon(["--device", "/nonexistent/liveupdate"]);
});
afterAll(async () => {
  await luod?.stop();
});

describe("the binary", () => {
  test("dist/luo is one ELF executable", () => {
    const head = readFileSync(LUO).subarray(0, 4);
    expect([...head]).toEqual([0x7f, 0x45, 0x4c, 0x46]);
  });

  test("luoctl --help and luod --help exit 0 and describe their commands", async () => {
    const ctl = await run("luoctl", ["--help"]);
    expect(ctl.code).toBe(0);
    for (const cmd of ["load", "unload", "status", "list", "check", "kexec", "abort", "discard"]) expect(ctl.stdout).toContain(cmd);
    const d = await run("luod", ["--help"]);
    expect(d.code).toBe(0);
    expect(d.stdout).toContain("--socket");
  });

  test("the symlink name picks the personality; `luo luoctl` works too", async () => {
    expect((await run("luoctl", ["--version"])).stdout).toContain("luoctl");
    expect((await run("luod", ["--version"])).stdout).toContain("luod");
    expect((await run("luo", ["luoctl", "--version"])).stdout).toContain("luoctl");
    expect((await run("luo", ["bogus"])).code).toBe(2);
  });
});

describe("luod without a LUO kernel", () => {
  test("serves SUBSCRIBE, LIST and STATUS", async () => {
    const client = await LuoClient.connect(luod.socket);
    try {
      await client.subscribe("vm-42");
      const list = await client.list();
      expect((list.clients as { id: string }[]).map((c) => c.id)).toContain("vm-42");
      const status = await client.status();
      expect(status.phase).toBe("idle");
      expect(status.device).toBe("absent");
      // a subscription outlives its connection (issue 14, hole 14): leave nothing expected behind
      await client.unsubscribe();
    } finally {
      client.close();
    }
  });

  test("luoctl kexec fails with one clear line and a non-zero exit; luod keeps running", async () => {
    const r = await run("luoctl", ["--socket", luod.socket, "kexec", "--timeout", "2s"]);
    expect(r.code).toBe(1);
    const lines = r.stderr.trim().split("\n");
    expect(lines.at(-1)).toMatch(/liveupdate/i);
    expect(luod.proc.exitCode).toBeNull();
    const status = await run("luoctl", ["--socket", luod.socket, "status", "--json"]);
    expect(status.code).toBe(0);
    expect(JSON.parse(status.stdout).phase).toBe("idle");
  });

  test("luoctl status and check say how the jump would go (kexec mode) and why", async () => {
    const status = await run("luoctl", ["--socket", luod.socket, "status", "--json"]);
    expect(JSON.parse(status.stdout).kexec_mode).toEqual({ mode: "direct", why: expect.stringContaining("not started by systemd") });
    const human = await run("luoctl", ["--socket", luod.socket, "status"]);
    expect(human.stdout).toMatch(/kexec mode: +direct \(not started by systemd/);
    const check = await run("luoctl", ["--socket", luod.socket, "check", "--json"]);
    const line = (JSON.parse(check.stdout).checks as { name: string; ok: boolean; detail: string }[]).find((c) => c.name === "kexec-mode");
    expect(line).toEqual({ name: "kexec-mode", ok: true, detail: expect.stringMatching(/^direct: not started by systemd/) });
  });

  test("luoctl against a missing socket exits 3 with one line", async () => {
    const r = await run("luoctl", ["--socket", `${luod.dir}/nope.sock`, "status"]);
    expect(r.code).toBe(3);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
  });

  test("a second luod on the same socket refuses to start", async () => {
    const r = await run("luod", ["--socket", luod.socket, "--state-dir", luod.stateDir]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("already listening");
  });
});

describe("many clients", () => {
  test("LIST of 500 subscribers with 48-byte ids is one reply larger than a request line may be", async () => {
    const many = await startDaemon(["--device", "/nonexistent/liveupdate", "--max-connections", "600"]);
    const peers: RawPeer[] = [];
    try {
      for (let i = 0; i < 500; i++) {
        const p = RawPeer.connect(many.socket);
        peers.push(p);
        const reply = await p.request({ cmd: "SUBSCRIBE", id: `vm-${String(i).padStart(45, "0")}` });
        expect(reply?.ok).toBe(true);
      }
      const admin = await LuoClient.connect(many.socket);
      try {
        const list = await admin.list();
        expect(list.clients).toHaveLength(500);
        expect(JSON.stringify(list).length).toBeGreaterThan(65536);
      } finally {
        admin.close();
      }
    } finally {
      for (const p of peers) p.close();
      await many.stop();
    }
  }, 30_000);
});

// The compiled luod with --metrics-file (docs/daemon.md, "Metrics"): the file follows what luod
// does (a subscription, a refused PREPARE, an invalid line, an update that aborts, the stop) and
// Prometheus's promtool accepts it; promtool also checks the example alert rules and runs their
// unit tests. promtool comes from scripts/tools/promtool.sh (Debian's prometheus package,
// downloaded, not installed): if it cannot be had, these tests fail with its line.
// This host has no LUO: the "device" is a plain file, so luod starts, and every LUO ioctl on it
// fails (ENOTTY), which is how the update below aborts. A whole update on the real kernel:
// tests/vm/.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO, run, startDaemon, type Daemon } from "../support/binary";
import { RawPeer } from "./raw-peer";
import { samples } from "../support/metrics-text";

const dir = mkdtempSync(join(tmpdir(), "luod-metrics-it-"));
let promtool: { path: string | null; problem: string };

beforeAll(async () => {
  const p = Bun.spawn(["bash", join(REPO, "scripts/tools/promtool.sh")], { stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  promtool = code === 0 && out.trim() ? { path: out.trim(), problem: "" } : { path: null, problem: err.trim().split("\n").at(-1) || `promtool.sh exited with ${code}` };
}, 300_000); // the first run downloads Debian's prometheus package (about 20 MB)
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs promtool; fails the test with promtool.sh's own line when there is none. */
async function runPromtool(args: string[], stdin?: string): Promise<{ code: number; output: string }> {
  if (!promtool.path) throw new Error(`promtool is not available: ${promtool.problem}`);
  const p = Bun.spawn([promtool.path, ...args], { stdin: stdin === undefined ? "ignore" : new Blob([stdin]), stdout: "pipe", stderr: "pipe", cwd: join(REPO, "deploy/prometheus") });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, output: out + err };
}

function bootId(): string {
  return readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
}

/** Waits until the file's samples satisfy `want` (luod writes within a few hundred ms). */
async function fileWhere(path: string, want: (s: Map<string, number>) => boolean, timeoutMs = 5000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let text = "";
  for (;;) {
    try {
      text = readFileSync(path, "utf8");
    } catch {
      text = "";
    }
    if (text && want(samples(text))) return text;
    if (Date.now() > deadline) throw new Error(`the metrics file never got there; it says:\n${text}`);
    await Bun.sleep(20);
  }
}

test("luod refuses a --metrics-file whose directory does not exist: one line, exit 2", async () => {
  const r = await run("luod", ["--socket", join(dir, "never.sock"), "--state-dir", join(dir, "never"), "--device", "/nonexistent", "--metrics-file", "/nonexistent-luod/luod.prom"]);
  expect(r.code).toBe(2);
  expect(r.stderr.trim().split("\n")).toEqual(["luod: --metrics-file /nonexistent-luod/luod.prom: the directory /nonexistent-luod does not exist (node_exporter's textfile directory, e.g. /var/lib/prometheus/node-exporter)"]);
});

describe("luod's metrics file through a subscription, a refused PREPARE, an invalid line, an aborted update and the stop", () => {
  let luod: Daemon;
  let path: string;
  const unclaimedSince = new Date(Date.now() - 20 * 60_000);
  beforeAll(async () => {
    const d = mkdtempSync(join(dir, "run-"));
    mkdirSync(join(d, "textfile"));
    path = join(d, "textfile", "luod.prom");
    writeFileSync(join(d, "device"), ""); // exists, so luod tries LUO; its ioctls fail
    // restarted after a live-update boot: one session still unclaimed, one finished
    mkdirSync(join(d, "state"), { mode: 0o700 });
    const at = unclaimedSince.toISOString();
    const session = (id: string, state: string) => ({ id, session: `luod:${id}/1`, uid: 0, gid: 0, unit: null, state, restoredAt: at, changedAt: at, claimedByPid: null });
    writeFileSync(join(d, "state", "restored.json"), JSON.stringify({
      bootId: bootId(), data: { previous: { attempt: 1, createdAt: at, from: "7.2.13", timings: { all_ready_ms: 1250 } }, sessions: [session("vm-away", "unclaimed"), session("vm-done", "finished")] },
    }));
    luod = await startDaemon(["--device", join(d, "device"), "--config", "/dev/null", "--metrics-file", path], { dir: d });
  });
  afterAll(async () => {
    if (luod?.proc.exitCode === null) await luod.stop();
  });

  test("at start: idle, the restored sessions, the oldest unclaimed one's time, the previous update's barrier; promtool accepts it", async () => {
    const text = await fileWhere(path, (s) => s.get('luod_phase{phase="idle"}') === 1);
    const s = samples(text);
    expect(s.get('luod_restored_sessions{state="unclaimed"}')).toBe(1);
    expect(s.get('luod_restored_sessions{state="finished"}')).toBe(1);
    expect(s.get("luod_restored_oldest_unclaimed_timestamp_seconds")).toBe(unclaimedSince.getTime() / 1000);
    expect(s.get("luod_last_barrier_duration_seconds")).toBe(1.25);
    expect(statSync(path).mode & 0o777).toBe(0o644);
    expect(await runPromtool(["check", "metrics"], text)).toEqual({ code: 0, output: "" });
  });

  test("it follows the requests and the update, counted by outcome, and promtool still accepts it", async () => {
    const peer = RawPeer.connect(luod.socket);
    try {
      expect((await peer.request({ cmd: "SUBSCRIBE", id: "vm-1" }))?.ok).toBe(true);
      expect((await peer.request({ cmd: "PREPARE" }))?.ok).toBe(false); // ENOTTY: no LUO behind the "device"
      expect((await peer.request('{"cmd":"REBOOT"}'))?.ok).toBe(false);
      const kexec = await run("luoctl", ["--socket", luod.socket, "kexec", "--dry-run", "--json"]);
      expect(kexec.code).toBe(1);
      const text = await fileWhere(path, (s) => s.get("luod_updates_started_total") === 1 && s.get('luod_phase{phase="idle"}') === 1);
      const s = samples(text);
      expect(s.get('luod_updates_aborted_total{reason="sessions_failed"}')).toBe(1);
      expect(s.get("luod_updates_completed_total")).toBe(0);
      expect(s.get("luod_clients_subscribed")).toBe(1);
      expect(s.get('luod_requests_total{request="SUBSCRIBE"}')).toBe(1);
      expect(s.get('luod_requests_refused_total{request="PREPARE"}')).toBe(1);
      expect(s.get('luod_requests_invalid_total{request="unknown"}')).toBe(1);
      expect(s.get("luod_connections_accepted_total")).toBeGreaterThanOrEqual(2);
      expect(text).not.toContain("REBOOT");
      expect(await runPromtool(["check", "metrics"], text)).toEqual({ code: 0, output: "" });
    } finally {
      peer.close();
    }
  });

  test("the stop's last write says \"stopped\"", async () => {
    expect(await luod.stop()).toBe(0);
    const text = readFileSync(path, "utf8");
    expect(samples(text).get('luod_phase{phase="stopped"}')).toBe(1);
    expect(samples(text).get('luod_phase{phase="idle"}')).toBe(0);
    expect(await runPromtool(["check", "metrics"], text)).toEqual({ code: 0, output: "" });
  });
});

test("a metrics file luod cannot write is one warning, and luod serves on (metrics-file from the config file)", async () => {
  const d = mkdtempSync(join(dir, "fail-"));
  mkdirSync(join(d, "textfile"));
  const path = join(d, "textfile", "luod.prom");
  writeFileSync(join(d, "luod.conf"), `metrics-file = ${path}\n`);
  const luod = await startDaemon(["--device", "/nonexistent/liveupdate", "--config", join(d, "luod.conf")], { dir: d });
  try {
    await fileWhere(path, (s) => s.get('luod_phase{phase="idle"}') === 1);
    rmSync(join(d, "textfile"), { recursive: true });
    const warned = () => luod.logs().includes("cannot write the metrics file");
    for (let i = 0; i < 250 && !warned(); i++) {
      const status = await run("luoctl", ["--socket", luod.socket, "status", "--json"]); // a change: luod tries to write it
      expect(JSON.parse(status.stdout).ok).toBe(true);
      await Bun.sleep(20);
    }
    for (let i = 0; i < 3; i++) {
      expect((await run("luoctl", ["--socket", luod.socket, "status"])).code).toBe(0);
      await Bun.sleep(250); // more failed writes, the same error
    }
    const warnings = luod.logs().split("\n").filter((l) => l.includes("cannot write the metrics file"));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toStartWith("<4>");
    expect(warnings[0]).toContain("ENOENT");
  } finally {
    expect(await luod.stop()).toBe(0);
  }
});

describe("the example alert rules (deploy/prometheus/luod-alerts.yml)", () => {
  test("promtool check rules accepts them", async () => {
    const r = await runPromtool(["check", "rules", "luod-alerts.yml"]);
    expect(r.output).toContain("SUCCESS: 3 rules found");
    expect(r.code).toBe(0);
  });

  test("they fire when they should and not before (promtool test rules luod-alerts.test.yml)", async () => {
    const r = await runPromtool(["test", "rules", "luod-alerts.test.yml"]);
    expect(r.output).toContain("SUCCESS");
    expect(r.code).toBe(0);
  });
});

// SIGHUP reloads luod's config file (issue 14, hole 12): luod keeps running, takes over what can
// change while it runs (here: a new client group, for new connections), names in its log what
// changed and what needs a restart, and keeps its settings when the new file is bad.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { startDaemon, REPO, type Daemon } from "../support/binary";

const BUN = process.execPath;
const PEER = join(import.meta.dir, "peer-client.ts");
const enabled = process.getuid?.() === 0 && spawnSync("setpriv", ["--version"]).status === 0;
const CLIENT_GID = 64122;
const CLIENT = { uid: 64121, groups: [CLIENT_GID] };

/** peer-client.ts as CLIENT: one result line per request. */
function asClient(socket: string, requests: object[]): { cmd: string; ok: boolean; code?: string }[] {
  const r = spawnSync("setpriv", [`--reuid=${CLIENT.uid}`, `--regid=${CLIENT.uid}`, `--groups=${CLIENT.groups.join(",")}`, BUN, PEER, socket, JSON.stringify(requests)], {
    encoding: "utf8", timeout: 30_000, cwd: REPO,
  });
  if (r.status !== 0) throw new Error(`peer-client exited ${r.status}: ${r.stderr}`);
  return r.stdout.trim().split("\n").map((l) => JSON.parse(l));
}

async function waitForLog(luod: Daemon, text: string, from: number): Promise<string> {
  for (let i = 0; i < 500; i++) {
    const line = luod.logs().slice(from).split("\n").find((l) => l.includes(text));
    if (line) return line;
    await Bun.sleep(10);
  }
  throw new Error(`luod did not log "${text}" within 5 s: ${luod.logs().slice(from)}`);
}

describe.skipIf(!enabled)("SIGHUP", () => {
  let dir: string;
  let conf: string;
  let luod: Daemon;
  const writeConf = (text: string) => {
    writeFileSync(conf, text);
    chmodSync(conf, 0o644);
  };
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "luod-reload-"));
    chmodSync(dir, 0o755);
    conf = join(dir, "luod.conf");
    writeConf("device = /nonexistent/liveupdate\n");
    luod = await startDaemon(["--config", conf, "--socket-mode", "0666"], { dir });
  });
  afterAll(async () => {
    await luod?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("reloads the config file: luod keeps running, a new client group counts for new connections, the log says what changed", async () => {
    expect(asClient(luod.socket, [{ cmd: "SUBSCRIBE", id: "vm-r" }])[0]!.code).toBe("EPERM");
    writeConf(`device = /nonexistent/other\nclient-group = ${CLIENT_GID}\nmax-connections = 77\nverbose = true\n`);
    const from = luod.logs().length;
    luod.proc.kill("SIGHUP");
    const line = await waitForLog(luod, "SIGHUP: config reloaded", from);
    expect(line).toContain(`client-group none (root only) → ${CLIENT_GID}`);
    expect(line).toContain("max-connections 256 → 77");
    expect(line).toContain("verbose false → true");
    expect(line).toContain("needs a restart to change (kept as they are): device /nonexistent/liveupdate → /nonexistent/other");
    expect(luod.proc.exitCode).toBeNull();
    expect(asClient(luod.socket, [{ cmd: "SUBSCRIBE", id: "vm-r" }])[0]).toMatchObject({ ok: true });
  });

  test("a bad config file on SIGHUP is logged and the old settings stay; luod never exits", async () => {
    writeConf("client-grop = typo\n");
    const from = luod.logs().length;
    luod.proc.kill("SIGHUP");
    const line = await waitForLog(luod, "SIGHUP: the config is not reloaded", from);
    expect(line).toContain("unknown key");
    expect(luod.proc.exitCode).toBeNull();
    expect(asClient(luod.socket, [{ cmd: "SUBSCRIBE", id: "vm-r2" }])[0]).toMatchObject({ ok: true });
    // a config file others may write is refused the same way
    writeConf(`client-group = ${CLIENT_GID}\n`);
    chmodSync(conf, 0o666);
    const from2 = luod.logs().length;
    luod.proc.kill("SIGHUP");
    expect(await waitForLog(luod, "SIGHUP: the config is not reloaded", from2)).toContain("not be writable by group or others");
    expect(luod.proc.exitCode).toBeNull();
  });
});

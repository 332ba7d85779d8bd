// The administrator always gets through, and one uid cannot take the whole connection table
// (issue 14, hole 8). Root clients flood the table, subscribing or idle: `luoctl status` still works. A per-uid cap
// refuses one uid's connection N+1 while another uid still connects (setpriv, as in
// luod-access.test.ts; that part is skipped unless this runs as root with setpriv).
import { describe, expect, test, afterEach } from "bun:test";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { startDaemon, run, REPO, type Daemon } from "../support/binary";
import { RawPeer } from "./raw-peer";

const BUN = process.execPath;
const PEER = join(import.meta.dir, "peer-client.ts");
const isRoot = process.getuid?.() === 0;
const hasSetpriv = spawnSync("setpriv", ["--version"]).status === 0;
const CLIENT_GID = 64122;
const CLIENT_A = 64123;
const CLIENT_B = 64124;

let luod: Daemon | null = null;
const peers: RawPeer[] = [];
afterEach(async () => {
  for (const p of peers.splice(0)) p.close();
  await luod?.stop();
  if (luod) rmSync(luod.dir, { recursive: true, force: true });
  luod = null;
});

const code = (r: Record<string, unknown> | null) => (r?.error as { code?: string } | undefined)?.code;

describe.skipIf(!isRoot)("root clients flood the connection table", () => {
  test("every connection root clients can get SUBSCRIBEs; luoctl status still succeeds", async () => {
    luod = await startDaemon(["--device", "/nonexistent/liveupdate", "--config", "/dev/null", "--max-connections", "8", "--max-connections-per-uid", "8"]);
    let subscribed = 0;
    let busy = 0;
    let refused = 0;
    // well past max-connections and the admin reserve together
    for (let i = 0; i < 24; i++) {
      const p = RawPeer.connect(luod.socket);
      peers.push(p);
      const r = await p.request({ cmd: "SUBSCRIBE", id: `vm-flood-${i}` }, [], 3000);
      if (r?.ok === true) subscribed++;
      else if (code(r) === "EBUSY") busy++;
      else refused++;
    }
    expect(subscribed).toBe(8);
    expect(busy + refused).toBe(16);
    const st = await run("luoctl", ["--socket", luod.socket, "status"]);
    expect(st.stderr).toBe("");
    expect(st.code).toBe(0);
    // and an admin request that holds its connection works too
    const list = await run("luoctl", ["--socket", luod.socket, "list"]);
    expect(list.code).toBe(0);
    expect(list.stdout).toContain("vm-flood-7");
  }, 60_000);

  test("root clients also park idle connections in every reserved slot: luoctl still gets through", async () => {
    luod = await startDaemon(["--device", "/nonexistent/liveupdate", "--config", "/dev/null", "--max-connections", "8", "--max-connections-per-uid", "8"]);
    for (let i = 0; i < 8; i++) {
      const p = RawPeer.connect(luod.socket);
      peers.push(p);
      expect(await p.request({ cmd: "SUBSCRIBE", id: `vm-flood-${i}` })).toMatchObject({ ok: true });
    }
    // the whole reserve and more, sending nothing
    const idle = Array.from({ length: 12 }, () => RawPeer.connect(luod!.socket));
    peers.push(...idle);
    await Bun.sleep(200);
    for (let round = 0; round < 3; round++) {
      const st = await run("luoctl", ["--socket", luod.socket, "status"]);
      expect(st.stderr).toBe("");
      expect(st.code).toBe(0);
    }
  }, 60_000);
});

describe.skipIf(!(isRoot && hasSetpriv))("max-connections-per-uid", () => {
  test("one uid's connection N+1 is refused at accept while another uid still connects", async () => {
    const dir = mkdtempSync(join(tmpdir(), "luod-limits-"));
    chmodSync(dir, 0o755);
    luod = await startDaemon(
      ["--device", "/nonexistent/liveupdate", "--config", "/dev/null", "--client-group", String(CLIENT_GID),
        "--socket-mode", "0666", "--max-connections", "16", "--max-connections-per-uid", "3"],
      { dir },
    );
    const asUid = (uid: number, args: string[]) =>
      Bun.spawn(["setpriv", `--reuid=${uid}`, `--regid=${uid}`, `--groups=${CLIENT_GID}`, BUN, PEER, luod!.socket, ...args], { cwd: REPO, stdout: "pipe", stderr: "pipe" });
    // uid A opens 4 connections and holds them for 3 s
    const holder = asUid(CLIENT_A, ["--hold", "4", "3000"]);
    await Bun.sleep(1000);
    // meanwhile uid B is served
    const other = asUid(CLIENT_B, [JSON.stringify([{ cmd: "STATUS" }])]);
    expect(await other.exited).toBe(0);
    expect(JSON.parse(await new Response(other.stdout).text())).toMatchObject({ cmd: "STATUS", ok: true });
    expect(await holder.exited).toBe(0);
    expect(JSON.parse(await new Response(holder.stdout).text())).toEqual({ opened: 4, closed: 1 });
  }, 60_000);
});

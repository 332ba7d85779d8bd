// Fuzz of who may do what and how many, against the compiled luod run as root with an admin group,
// a client group, a per-uid cap and a short first-request timeout (1 s), with peers running as
// other uids (setpriv, as in tests/integration/luod-access.test.ts):
//   - strangers (no group), client-group members and admins send random lines (tests/fuzz/role-peer.ts),
//     with fds of every kind on some; the role rules hold on every valid request;
//   - one uid opens more connections than its cap: exactly the excess is closed at accept, while
//     another uid still connects;
//   - slowloris: peers that dribble a request byte by byte (some with fds behind the unfinished
//     line) or say nothing are closed with ETIMEDOUT after the real first-request timeout and
//     counted (stats.timed_out), while a prompt peer is served.
// After each part luod holds no connection but the probe, no subscriber, exactly its baseline fds,
// and its log lines have one <N> and no control character. Skipped unless root with setpriv.
//
//   LUO_FUZZ_SEED=N   replay (the seed is printed)
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { REPO, startDaemon, type Daemon } from "../support/binary";
import { RawPeer } from "../integration/raw-peer";
import { closeFd } from "../../src/kernel/fd";
import { Rng, FD_KINDS } from "./generate";
import { badLogLines, evictAll, fdPlace, fuzzSeed, makeFd, type FdPlace } from "./support";
import { probeFds as probeFdsOf } from "./support";

const SEED = fuzzSeed();
const BUN = process.execPath;
const ROLE_PEER = join(import.meta.dir, "role-peer.ts");
const HOLD_PEER = join(REPO, "tests/integration/peer-client.ts");
const enabled = process.getuid?.() === 0 && spawnSync("setpriv", ["--version"]).status === 0;
const ADMIN_GID = 64201;
const CLIENT_GID = 64202;
const PER_UID = 4;
const LINES = Number(process.env.LUO_FUZZ_ROLE_LINES ?? 150);

type Role = "stranger" | "client" | "admin";
const groupsOf = (role: Role) => (role === "stranger" ? ["--clear-groups"] : [`--groups=${role === "admin" ? `${ADMIN_GID},${CLIENT_GID}` : CLIENT_GID}`]);
const asUid = (uid: number, role: Role, args: string[]) =>
  Bun.spawn(["setpriv", `--reuid=${uid}`, `--regid=${uid}`, ...groupsOf(role), BUN, ...args], { cwd: REPO, stdout: "pipe", stderr: "pipe" });

let luod: Daemon;
let dir: string;
let place: FdPlace;
let baselineFds: number;

const probe = () => probeFdsOf(luod);

/** luod is back at its baseline: one connection (the probe), nobody subscribed, the same fds, a clean log. */
async function checkQuiet(ctx: string): Promise<Record<string, unknown>> {
  expect(luod.proc.exitCode, `luod exited ${ctx}: ${luod.logs().slice(-2000)}`).toBeNull();
  const until = Date.now() + 8000;
  let p = await probe();
  const quiet = (s: Record<string, unknown> | null) => {
    const q = s as { phase?: string; luod?: { connections?: number }; clients?: { subscribed?: number } } | null;
    return q?.phase === "idle" && q.luod?.connections === 1 && q.clients?.subscribed === 0;
  };
  while (!(quiet(p.status) && p.fds === baselineFds) && Date.now() < until) {
    await evictAll(luod.socket); // a subscription may outlive its connection
    await Bun.sleep(50);
    p = await probe();
  }
  expect(p.status, `STATUS ${ctx} (seed ${SEED})`).toMatchObject({ phase: "idle", luod: { connections: 1 }, clients: { subscribed: 0 } });
  expect(p.fds, `luod's fds ${ctx} (seed ${SEED}; baseline ${baselineFds})`).toBe(baselineFds);
  expect(badLogLines(luod.logs()), `luod's log ${ctx}`).toEqual([]);
  return p.status!;
}

describe.skipIf(!enabled)("roles, per-uid caps and slowloris", () => {
  beforeAll(async () => {
    console.log(`roles fuzz: seed ${SEED} (replay: LUO_FUZZ_SEED=${SEED} bun test tests/fuzz/roles-fuzz.test.ts)`);
    dir = mkdtempSync(join(tmpdir(), "luo-roles-fuzz-"));
    chmodSync(dir, 0o755);
    luod = await startDaemon(
      ["--device", "/nonexistent/luo-fuzz/liveupdate", "--config", "/dev/null", "--admin-group", String(ADMIN_GID), "--client-group", String(CLIENT_GID),
        "--socket-mode", "0666", "--max-connections", "32", "--max-connections-per-uid", String(PER_UID), "--first-request-timeout", "1s"],
      { dir },
    );
    place = fdPlace(luod.socket);
    const p = await probe();
    baselineFds = p.fds;
  });
  afterAll(async () => {
    await luod?.stop();
    rmSync(dir, { recursive: true, force: true });
    if (place) rmSync(place.dir, { recursive: true, force: true });
  });

  test("strangers, client-group members and admins fuzzing at once: each gets exactly its role's rights, nothing is kept", async () => {
    const rng = new Rng(SEED);
    const roles: Role[] = ["stranger", "stranger", "client", "client", "client", "admin"];
    const peers = roles.map((role, i) => {
      const uid = 64210 + i;
      return { role, uid, proc: asUid(uid, role, [ROLE_PEER, luod.socket, String(rng.u32()), role, String(LINES)]) };
    });
    const results = await Promise.all(
      peers.map(async (p) => {
        const [out, err, code] = await Promise.all([new Response(p.proc.stdout).text(), new Response(p.proc.stderr).text(), p.proc.exited]);
        expect(code, `${p.role} uid ${p.uid}: ${err}`).toBe(0);
        return { ...p, r: JSON.parse(out.trim().split("\n").pop()!) as { lines: number; replies: number; problems: string[]; codes: Record<string, number> } };
      }),
    );
    for (const { role, uid, r } of results) {
      expect(r.problems, `${role} uid ${uid} (seed ${SEED})`).toEqual([]);
      expect(r.replies, `${role} uid ${uid} got replies`).toBeGreaterThan(0);
    }
    expect(results.filter((x) => x.role === "stranger").every((x) => (x.r.codes.EPERM ?? 0) > 0)).toBe(true);
    expect(results.filter((x) => x.role === "client").some((x) => (x.r.codes.ok ?? 0) > 0)).toBe(true);
    console.log(`roles fuzz: ${results.map((x) => `${x.role} ${x.r.lines} lines (${Object.entries(x.r.codes).map(([c, n]) => `${c} ${n}`).join(" ")})`).join("; ")}`);
    await checkQuiet("after the role fuzz");
  }, 60_000);

  test("per-uid cap: one uid's connections past its cap are closed at accept, another uid's are not, an admin's go into the reserve", async () => {
    const rng = new Rng(SEED ^ 0x5bd1e995);
    for (let round = 0; round < 3; round++) {
      const over = PER_UID + rng.int(1, 6);
      const under = rng.int(1, PER_UID);
      const role = rng.pick<Role>(["stranger", "client"]);
      const a = asUid(64230, role, [HOLD_PEER, luod.socket, "--hold", String(over), "600"]);
      const b = asUid(64231, "client", [HOLD_PEER, luod.socket, "--hold", String(under), "600"]);
      // an admin over its cap goes into the admin reserve (8 slots): it always gets through
      const adminOver = PER_UID + rng.int(1, 8);
      const c = asUid(64232, "admin", [HOLD_PEER, luod.socket, "--hold", String(adminOver), "600"]);
      const [ra, rb, rc] = await Promise.all([a, b, c].map(async (p) => JSON.parse((await new Response(p.stdout).text()).trim()) as { opened: number; closed: number }));
      expect(ra, `${role} uid 64230 with ${over} connections, cap ${PER_UID} (seed ${SEED})`).toEqual({ opened: over, closed: over - PER_UID });
      expect(rb, `client uid 64231 with ${under} connections (seed ${SEED})`).toEqual({ opened: under, closed: 0 });
      expect(rc, `admin uid 64232 with ${adminOver} connections (seed ${SEED})`).toEqual({ opened: adminOver, closed: 0 });
      await checkQuiet(`after per-uid cap round ${round}`);
    }
  }, 60_000);

  test("slowloris: peers that dribble or say nothing are closed with ETIMEDOUT after the real first-request timeout and counted", async () => {
    const rng = new Rng(SEED ^ 0x27d4eb2f);
    const before = (await checkQuiet("before slowloris")) as { luod: { stats: { timed_out: number } } };
    const n = rng.int(3, 8);
    const slow = Array.from({ length: n }, () => ({ peer: RawPeer.connect(luod.socket), text: `{"cmd":"STATUS","tag":"${"x".repeat(rng.int(10, 60))}"}`, at: 0, fds: rng.chance(0.4), silent: rng.chance(0.3) }));
    const prompt = RawPeer.connect(luod.socket);
    const t0 = Date.now();
    let served = false;
    // dribble one byte every 100–300 ms, never reaching the newline within the timeout
    while (slow.some((s) => !s.peer.eof) && Date.now() - t0 < 10_000) {
      for (const s of slow) {
        if (s.silent || s.peer.eof || s.at >= s.text.length) continue;
        if (rng.chance(0.3)) {
          const fds = s.fds && s.at === 0 ? [makeFd(rng.pick(FD_KINDS), place)] : [];
          s.peer.sendOnce(s.text[s.at]!, fds);
          for (const fd of fds) closeFd(fd);
          s.at++;
        }
      }
      for (const s of slow) s.peer.pump();
      if (!served && Date.now() - t0 > 300) {
        served = (await prompt.request({ cmd: "STATUS" }, [], 5000))?.ok === true;
        expect(served, "a prompt peer is served while the slow ones wait").toBe(true);
      }
      await Bun.sleep(100);
    }
    const took = Date.now() - t0;
    for (const s of slow) {
      expect(s.peer.eof, `slow peer closed (seed ${SEED})`).toBe(true);
      const last = s.peer.lines.map((l) => JSON.parse(l) as { error?: { code?: string } }).pop();
      expect(last?.error?.code, `slow peer told why (seed ${SEED})`).toBe("ETIMEDOUT");
      s.peer.close();
    }
    prompt.close();
    expect(took, "closed after the 1 s timeout, with a generous bound").toBeLessThan(10_000);
    const after = (await checkQuiet("after slowloris")) as { luod: { stats: { timed_out: number } } };
    expect(after.luod.stats.timed_out - before.luod.stats.timed_out, `timed_out counted (seed ${SEED})`).toBe(n);
  }, 60_000);
});


// Update fuzzer: whole updates through the fake kernel (src/daemon/fake-kernel.ts), luod running in
// this process as tests/unit/daemon-server-in-process.test.ts runs it. Each round, drawn from the
// seed: 1–4 clients SUBSCRIBE (some PREPARE ahead), an admin sends KEXEC (a dry run, or a real one
// whose fake jump fails or returns "jumped"), and meanwhile clients answer READY, late READY, FAIL
// with control characters in the reason, disconnect, stall (stop reading while flooding requests)
// or UNSUBSCRIBE, and another admin may ABORT, EVICT (ids and reasons with control characters) or
// ask STATUS/LIST. Then:
//   - a round that jumped: luod stops as after a real jump, and this process's fds are back to what
//     they were before that luod started (session memfds, sockets, epoll: all closed);
//   - any other round: every client that is still there UNSUBSCRIBEs and leaves, the admin EVICTs
//     (force) every id LIST still shows (so the check does not depend on whether a subscription
//     outlives its connection), and luod must be idle with one connection (the admin's) and no
//     subscriber, and this process's fds back to the round's baseline.
// At the end the heap after a full GC is within HEAP_GROWTH_LIMIT of its baseline, and every line
// luod logged has one <N> and no control character.
//
//   LUO_FUZZ_SEED=N          replay (the seed is printed)
//   LUO_FUZZ_UPDATE_ROUNDS=N rounds (default 40)
import { afterAll, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { heapStats } from "bun:jsc";
import { FakeKernel } from "../../src/daemon/fake-kernel";
import type { LoadedKernel } from "../../src/daemon/loader";
import { startInProcessLuod, type InProcessLuod } from "../support/in-process-luod";
import { createLogger } from "../../src/daemon/log";
import { fdsOpenedSince, openFds } from "../support/open-fds";
import { RawPeer } from "../integration/raw-peer";
import { Rng } from "./generate";
import { badLogLines, evilText, fuzzSeed } from "./support";

const SEED = fuzzSeed();
const ROUNDS = Number(process.env.LUO_FUZZ_UPDATE_ROUNDS ?? 40);
/**
 * The heap after Bun.gc(true) at the end may exceed the one after the warm-up rounds by this much.
 * Measured growth over the remaining 32 rounds is a few hundred KiB (JIT code and caches); a leak
 * per round of what a round creates (an update record with its clients and their 64 KiB line
 * buffers, a session's bookkeeping: at least 64 KiB) adds 2 MiB or more over those rounds, so
 * the bound catches a leak per update or per connection without failing on noise.
 */
const HEAP_GROWTH_LIMIT = 2 * 1024 * 1024;
/** The process's RSS after the same GC: looser (allocator pages are not given back at once). */
const RSS_GROWTH_LIMIT = 64 * 1024 * 1024;
/** Rounds before the memory baseline is taken (JIT and caches warm up first). */
const WARMUP = 8;

let logText = "";
const log = createLogger({ prefix: true, verbose: true, write: (line) => (logText += line + "\n") });

interface Luod extends InProcessLuod {
  kernel: FakeKernel;
  /** This process's fds before this luod started. */
  fdsBefore: Map<number, string>;
}

const NEXT: LoadedKernel = {
  version: "7.2.14", sha256: "ab".repeat(32), cmdline: "console=ttyS0 liveupdate=on",
  size: 1 << 20, initrdSize: null, loadedAt: new Date().toISOString(),
};

/** luod's parts wired as runDaemon wires them (direct kexec mode), with a kernel loaded. */
function startLuod(): Luod {
  const fdsBefore = openFds();
  const kernel = new FakeKernel();
  kernel.loaded = true;
  const luod = startInProcessLuod({ kernel, log, seed: (files) => files.write("loaded", NEXT), maxConnections: 32, name: "luod-update-fuzz" });
  return { ...luod, kernel, fdsBefore };
}

/** Waits until `fds` shows nothing opened since `before` (closes are asynchronous); returns what is left. */
async function settleFds(before: Map<number, string>, ms = 3000): Promise<string[]> {
  const until = Date.now() + ms;
  let left = fdsOpenedSince(before);
  while (left.length > 0 && Date.now() < until) {
    await Bun.sleep(10);
    left = fdsOpenedSince(before);
  }
  return left;
}

/** Waits until this process's fd table has not changed for 100 ms. */
async function settledFds(): Promise<void> {
  let last = [...openFds()].join();
  for (let same = 0, i = 0; same < 5 && i < 200; i++) {
    await Bun.sleep(20);
    const now = [...openFds()].join();
    same = now === last ? same + 1 : 0;
    last = now;
  }
}

type Behaviour = "ready" | "late" | "fail" | "disconnect" | "stall" | "unsubscribe" | "ignore";
const BEHAVIOURS: Behaviour[] = ["ready", "ready", "ready", "late", "fail", "disconnect", "stall", "unsubscribe", "ignore"];

interface Client {
  id: string;
  peer: RawPeer;
  behaviour: Behaviour;
  acted: boolean;
  gone: boolean;
}

const msgs = (p: RawPeer) => p.lines.splice(0).map((l) => JSON.parse(l) as Record<string, unknown>);

async function expectReply(p: RawPeer, cmd: string, ms = 3000): Promise<Record<string, unknown>> {
  const until = Date.now() + ms;
  for (;;) {
    p.pump();
    while (p.lines.length) {
      const m = JSON.parse(p.lines.shift()!) as Record<string, unknown>;
      if (m.reply === cmd) return m;
    }
    if (p.eof || Date.now() > until) throw new Error(`no ${cmd} reply (eof ${p.eof}); seed ${SEED}`);
    await Bun.sleep(1);
  }
}

const totals = { rounds: 0, jumped: 0, dryRuns: 0, kexecOk: 0, kexecFailed: new Map<string, number>(), evicts: 0, aborts: 0 };

let luod: Luod | null = null;
afterAll(async () => {
  if (luod) {
    luod.stop();
    await luod.closed;
    rmSync(luod.dir, { recursive: true, force: true });
  }
});

async function round(rng: Rng, r: number): Promise<void> {
  const ctx = `round ${r} (seed ${SEED})`;
  if (!luod) {
    luod = startLuod();
    // its event loop's Worker opens its own fds a moment later: let it, then take the baseline
    const probe = RawPeer.connect(luod.socket);
    expect(await probe.request({ cmd: "STATUS" }), ctx).toMatchObject({ ok: true });
    probe.close();
    await settledFds();
  }
  const l = luod;
  const roundFds = openFds();
  l.kernel.rebootError = rng.chance(0.4) ? null : rng.pick(["EINVAL", "EPERM", "ENOEXEC"]);
  const dryRun = rng.chance(0.35);
  const admin = RawPeer.connect(l.socket);
  const admin2 = RawPeer.connect(l.socket);
  // clients subscribe; some prepare ahead
  // a third of the rounds go well (every client READY, nobody meddles): the update must succeed
  const happy = rng.chance(0.33);
  const clients: Client[] = [];
  for (let i = rng.int(1, 4); i > 0; i--) {
    const peer = RawPeer.connect(l.socket);
    const id = `vm-${r}-${i}`;
    const sub = await peer.request({ cmd: "SUBSCRIBE", id });
    expect(sub, ctx).toMatchObject({ reply: "SUBSCRIBE", ok: true });
    if (rng.chance(0.3)) expect(await peer.request({ cmd: "PREPARE" }), ctx).toMatchObject({ reply: "PREPARE" });
    clients.push({ id, peer, behaviour: happy ? "ready" : rng.pick(BEHAVIOURS), acted: false, gone: false });
  }
  // a subscription with an id no luod accepts, its reason logged or refused
  if (rng.chance(0.2)) await admin2.request({ cmd: "SUBSCRIBE", id: `vm-${evilText((n) => rng.int(0, n - 1))}` });
  // the update
  const timeout = rng.int(200, 700);
  await admin.sendAll(JSON.stringify({ cmd: "KEXEC", timeout_ms: timeout, dry_run: dryRun, tag: r }) + "\n");
  const meddle = !happy && rng.chance(0.6) ? rng.int(0, timeout / 2) : -1;
  const t0 = Date.now();
  /** Late READYs: cancelled before the round's peers close (a closed peer's fd number is reused). */
  const timers: ReturnType<typeof setTimeout>[] = [];
  let meddled = false;
  let result: Record<string, unknown> | null = null;
  let rebooting = false;
  while (!result && !rebooting && Date.now() - t0 < timeout + 4000) {
    for (const c of clients) {
      if (c.gone) continue;
      if (c.behaviour === "stall") {
        if (!c.acted) {
          // stop reading and keep writing: luod must stop reading this one without growing
          c.acted = true;
          for (let k = 0; k < 400; k++) if (c.peer.sendOnce('{"cmd":"STATUS"}\n') < 0) break;
        }
        continue;
      }
      c.peer.pump();
      if (c.peer.eof) {
        c.gone = true;
        continue;
      }
      const started = msgs(c.peer).some((m) => m.event === "START_PRESERVATION");
      if (started && !c.acted) {
        c.acted = true;
        const later = c.behaviour === "late" ? rng.int(0, timeout + 200) : 0;
        const act = () => {
          if (c.gone) return;
          switch (c.behaviour) {
            case "ready":
            case "late":
              c.peer.sendOnce('{"cmd":"READY"}\n');
              break;
            case "fail":
              c.peer.sendOnce(JSON.stringify({ cmd: "FAIL", reason: evilText((n) => rng.int(0, n - 1)) }) + "\n");
              break;
            case "disconnect":
              c.peer.close();
              c.gone = true;
              break;
            case "unsubscribe":
              c.peer.sendOnce('{"cmd":"UNSUBSCRIBE"}\n');
              break;
          }
        };
        if (later) timers.push(setTimeout(act, later));
        else act();
      }
    }
    if (!meddled && meddle >= 0 && Date.now() - t0 >= meddle) {
      meddled = true;
      const what = rng.int(0, 2);
      const reason = evilText((n) => rng.int(0, n - 1));
      if (what === 0) {
        totals.aborts++;
        admin2.sendOnce(JSON.stringify({ cmd: "ABORT", reason }) + "\n");
      } else if (what === 1) {
        totals.evicts++;
        const id = rng.chance(0.8) ? rng.pick(clients).id : `vm-${reason}`;
        admin2.sendOnce(JSON.stringify({ cmd: "EVICT", id, force: rng.chance(0.5), reason }) + "\n");
      } else admin2.sendOnce(JSON.stringify({ cmd: rng.pick(["STATUS", "LIST", "CHECK"]) }) + "\n");
    }
    admin.pump();
    for (const m of msgs(admin)) {
      if (m.event === "REBOOTING") rebooting = true;
      if (m.reply === "KEXEC") result = m;
    }
    admin2.pump();
    admin2.lines.splice(0);
    await Bun.sleep(1);
  }
  for (const t of timers) clearTimeout(t);
  expect(result !== null || rebooting, `KEXEC got neither a reply nor REBOOTING within its deadline + 4 s, ${ctx}`).toBe(true);
  totals.rounds++;
  if (dryRun) totals.dryRuns++;
  if (happy) expect(result?.ok === true || rebooting || (result?.error as { code?: string } | undefined)?.code === l.kernel.rebootError, `a round where all went well: ${JSON.stringify(result)}, ${ctx}`).toBe(true);
  if (result?.ok) totals.kexecOk++;
  else if (result) {
    const code = (result.error as { code: string }).code;
    totals.kexecFailed.set(code, (totals.kexecFailed.get(code) ?? 0) + 1);
  }
  if (rebooting) {
    // a real jump never comes back: luod stops, and everything it opened is closed
    totals.jumped++;
    expect(dryRun, ctx).toBe(false);
    expect(l.kernel.reboots, ctx).toBe(1);
    for (const c of clients) c.peer.close();
    admin.close();
    admin2.close();
    l.stop();
    await l.closed;
    rmSync(l.dir, { recursive: true, force: true });
    luod = null;
    expect(await settleFds(l.fdsBefore), `fds left after a jump, ${ctx}`).toEqual([]);
    return;
  }
  // the update is over (its KEXEC answered): clean up, then luod must be back where it was
  await Bun.sleep(0);
  for (const c of clients) {
    if (!c.gone && c.behaviour !== "stall") {
      c.peer.pump();
      if (!c.peer.eof) c.peer.sendOnce('{"cmd":"UNSUBSCRIBE"}\n');
    }
  }
  for (const c of clients) c.peer.close();
  admin2.close();
  const list = await admin.request({ cmd: "LIST" });
  for (const c of (list?.clients ?? []) as { id: string }[]) {
    admin.sendOnce(JSON.stringify({ cmd: "EVICT", id: c.id, force: true, reason: "fuzz cleanup" }) + "\n");
    await expectReply(admin, "EVICT");
  }
  let status: Record<string, unknown> | null = null;
  const until = Date.now() + 3000;
  for (;;) {
    admin.pump();
    admin.lines.splice(0);
    status = await admin.request({ cmd: "STATUS" });
    const s = status as { phase?: string; luod?: { connections?: number }; clients?: { subscribed?: number } } | null;
    if ((s?.phase === "idle" && s.luod?.connections === 1 && s.clients?.subscribed === 0) || Date.now() > until) break;
    if (s?.clients?.subscribed) {
      for (const c of ((await admin.request({ cmd: "LIST" }))?.clients ?? []) as { id: string }[]) admin.sendOnce(JSON.stringify({ cmd: "EVICT", id: c.id, force: true }) + "\n");
    }
    await Bun.sleep(20);
  }
  expect(status, `STATUS after the cleanup, ${ctx}`).toMatchObject({ reply: "STATUS", ok: true, phase: "idle", luod: { connections: 1 }, clients: { subscribed: 0 } });
  expect(l.broker.phase, ctx).toBe("idle");
  admin.close();
  expect(await settleFds(roundFds), `fds left after the round, ${ctx}`).toEqual([]);
}

test("whole updates through the fake kernel, in random order, leave luod idle with its fds and memory back to baseline", async () => {
  console.log(`update fuzz: seed ${SEED}, ${ROUNDS} rounds (replay: LUO_FUZZ_SEED=${SEED} bun test tests/fuzz/update-fuzz.test.ts)`);
  const rng = new Rng(SEED);
  const t0 = performance.now();
  let heapBase = 0;
  let rssBase = 0;
  for (let r = 1; r <= ROUNDS; r++) {
    await round(rng.fork(), r);
    if (r === WARMUP) {
      Bun.gc(true);
      heapBase = heapStats().heapSize;
      rssBase = process.memoryUsage().rss;
    }
  }
  Bun.gc(true);
  const heap = heapStats().heapSize;
  const rss = process.memoryUsage().rss;
  const failed = [...totals.kexecFailed].map(([c, n]) => `${c} ${n}`).join(", ");
  console.log(
    `update fuzz: ${totals.rounds} updates in ${((performance.now() - t0) / 1000).toFixed(1)} s: ${totals.jumped} jumped, ` +
      `${totals.kexecOk} ok (${totals.dryRuns} dry runs), failed: ${failed}; ${totals.aborts} ABORTs, ${totals.evicts} EVICTs mid-update; ` +
      `heap after GC ${(heapBase / 1048576).toFixed(1)} → ${(heap / 1048576).toFixed(1)} MiB, RSS ${(rssBase / 1048576).toFixed(0)} → ${(rss / 1048576).toFixed(0)} MiB`,
  );
  expect(heap - heapBase, `heap growth after GC over ${ROUNDS - WARMUP} rounds (seed ${SEED})`).toBeLessThan(HEAP_GROWTH_LIMIT);
  expect(rss - rssBase, `RSS growth after GC over ${ROUNDS - WARMUP} rounds (seed ${SEED})`).toBeLessThan(RSS_GROWTH_LIMIT);
  expect(badLogLines(logText)).toEqual([]);
  // the fuzz reached the outcomes it claims to cover
  if (ROUNDS >= 40) {
    expect(totals.jumped).toBeGreaterThan(0);
    expect(totals.kexecOk).toBeGreaterThan(0);
    expect(totals.kexecFailed.size).toBeGreaterThan(1);
  }
}, 120_000);

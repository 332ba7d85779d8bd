// The in-VM half of the benchmark, run once per boot by bench/vm-job.sh (compiled by bench/run.ts
// into one binary with the epoll worker, so that it starts fast and is a snapshot of src/).
//
//   luo-bench boot --bin DIST --out DIR --boot K --stage 1|2 --counts 1,10,100,1000 --reps R
//                  --chain 1,10,100,1000p --bytes B --kernel K --initrd I
//
// Boot 1 (cold): luod from the warm binary; for every count: a swarm of N clients, R+1 dry runs
//   (`luoctl kexec --dry-run --json`, the first one reported apart as cold), then R+1 floor
//   barriers in the same boot; then the same clients PREPARE (each preserves its memfd into its
//   session ahead of the update) and R+1 more dry runs measure the barrier of prepared clients.
//   Then the chain starts.
// Chain: boot k subscribes chain[k-1] clients (a "p" suffix: they PREPARE and preserve ahead, as in
//   the sweep), preserves as many floor sessions held by this process, loads the same kernel and
//   runs a real `luoctl kexec --json`. Boot k+1 measures the
//   restore: luod spawn → every client holds its memfd, then the floor restore of the held sessions
//   (`luo-bench floor-restore`: a process of its own, timed from its spawn as well).
// Each boot writes DIR/boot-K.json; DIR/state.json carries the chain position across kexecs.
import { readFileSync, writeFileSync, mkdirSync, openSync, fsyncSync, closeSync, existsSync } from "node:fs";
import { EventLoop } from "../../src/kernel/epoll";
import { Swarm } from "./swarm";
import { floorBarrier, floorMemfds, floorRestore, type FloorRestore } from "./floor";
import { closeFd } from "../../src/kernel/fd";
import { startLuod, request, rssOf, run, lastJsonLine, machine, round, threadCpu, cpuDelta, selfCpuMs, stats, type LuodProcess } from "./common";

const SOCK = "/run/luod/liveupdate.sock";
const STATE_DIR = "/run/luod";

const args = process.argv.slice(2);
if (args[0] === "floor-restore") {
  // the restore floor as a process of its own (spawned by restorePhase): what luod's total is
  // compared with, since luod's total includes starting a Bun process too
  console.log(JSON.stringify(floorRestore()));
  process.exit(0);
}
const opt = (name: string, fallback?: string): string => {
  const i = args.indexOf(`--${name}`);
  if (i >= 0 && args[i + 1] !== undefined) return args[i + 1]!;
  if (fallback === undefined) throw new Error(`missing --${name}`);
  return fallback;
};
const list = (s: string) => s.split(",").filter(Boolean).map(Number);

const bin = opt("bin");
const outDir = opt("out");
const boot = Number(opt("boot"));
const stage = Number(opt("stage"));
const counts = list(opt("counts", "1,10,100,1000"));
const reps = Number(opt("reps", "5"));
const chain = opt("chain", "1,10,100,1000").split(",").filter(Boolean).map((x) => ({ n: parseInt(x, 10), prepared: x.endsWith("p") }));
const bytes = Number(opt("bytes", "4096"));
const kernel = opt("kernel", "");
const initrd = opt("initrd", "");
const luoctl = `${bin}/luoctl`;
const probe = opt("probe", `${bin}/luo-probe`);

mkdirSync(outDir, { recursive: true });
const say = (s: string) => console.log(`BENCH[boot ${boot}] ${s}`);

interface State {
  next: number;
  pending: { n: number; boot: number; prepared?: boolean } | null;
}

function writeDurable(path: string, data: unknown): void {
  writeFileSync(path, JSON.stringify(data, null, 1));
  const fd = openSync(path, "r");
  fsyncSync(fd);
  closeSync(fd);
}

function readState(): State {
  try {
    return JSON.parse(readFileSync(`${outDir}/state.json`, "utf8"));
  } catch {
    return { next: 0, pending: null };
  }
}

/** Reads a file once (page cache): after a kexec the cache is empty and 9p is slow. */
function warm(path: string): number {
  const t0 = performance.now();
  readFileSync(path);
  return performance.now() - t0;
}

const ids = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}-${i}`);

const result: Record<string, unknown> = { boot, stage, date: new Date().toISOString(), guest: machine(), memfd_bytes: bytes };
const save = () => writeDurable(`${outDir}/boot-${boot}.json`, result);
const loop = new EventLoop();

async function startupAndIdle(): Promise<LuodProcess> {
  const luod = await startLuod({ bin, socket: SOCK, stateDir: STATE_DIR, log: `/tmp/luod-boot${boot}.log` });
  const st = await request(loop, SOCK, { cmd: "STATUS" });
  const firstReply = performance.now();
  result.luod_start = {
    listening_ms: round(luod.listeningAt - luod.spawnedAt),
    first_reply_ms: round(firstReply - luod.spawnedAt),
    boot_kind: (st.boot as { kind?: string } | undefined)?.kind ?? null,
  };
  await Bun.sleep(1000);
  result.luod_idle = rssOf(luod.pid);
  return luod;
}

/** floorRestore() in a fresh process of this binary; adds process_ms: spawn → its result. */
function spawnFloorRestore(): (FloorRestore & { process_ms: number }) | null {
  const t0 = performance.now();
  const child = Bun.spawnSync([process.execPath, "floor-restore"], { stdout: "pipe", stderr: "inherit" });
  const ms = performance.now() - t0;
  const out = child.stdout.toString().trim();
  if (child.exitCode !== 0 || out === "null" || out === "") return null;
  return { ...(JSON.parse(out) as FloorRestore), process_ms: round(ms) };
}

async function restorePhase(n: number): Promise<LuodProcess> {
  const swarm = new Swarm(SOCK, bytes, loop);
  const luod = await startLuod({ bin, socket: SOCK, stateDir: STATE_DIR, log: `/tmp/luod-boot${boot}.log`, pollMs: 1 });
  const listening = luod.listeningAt;
  const cpuListening = threadCpu(luod.pid);
  const self0 = selfCpuMs();
  await swarm.claim(ids("c", n));
  const allHeld = performance.now();
  const cpuHeld = threadCpu(luod.pid);
  const selfCpu = selfCpuMs() - self0;
  const good = await swarm.finishAll();
  const finished = performance.now();
  const errors = swarm.errors.slice(0, 5);
  await swarm.closeAll();
  let st: Record<string, unknown> = {};
  try {
    st = await request(loop, SOCK, { cmd: "STATUS" });
  } catch (e) {
    st = { status_error: (e as Error).message };
  }
  const floor = spawnFloorRestore();
  result.restore = {
    n,
    luod: {
      listening_ms: round(listening - luod.spawnedAt),
      all_held_ms: round(allHeld - luod.spawnedAt),
      claims_ms: round(allHeld - listening),
      finish_ms: round(finished - allHeld),
      first_claimed_ms: round(swarm.firstRestoredAt - luod.spawnedAt),
      all_connected_ms: round(swarm.allConnectedAt - luod.spawnedAt),
      cpu_ms: {
        luod_start: cpuDelta({}, cpuListening),
        luod_claims: cpuDelta(cpuListening, cpuHeld),
        clients: round(selfCpu),
      },
      verified: good,
      errors,
    },
    floor,
    previous_update: st.previous_update ?? null,
    status_error: st.status_error ?? (st.ok === false ? st.error : null),
    luod_rss: rssOf(luod.pid),
  };
  result.luod_start = { listening_ms: round(listening - luod.spawnedAt), boot_kind: (st.boot as { kind?: string } | undefined)?.kind ?? null };
  say(`restore n=${n}: luod ${round(allHeld - luod.spawnedAt)} ms (listening ${round(listening - luod.spawnedAt)} ms), floor ${floor ? round(floor.fds_retrieved_ms) : "none"} ms, verified ${good}/${n}`);
  return luod;
}

async function barrierSweep(luod: LuodProcess): Promise<void> {
  const sweeps: unknown[] = [];
  for (const n of counts) {
    const swarm = new Swarm(SOCK, bytes, loop);
    const subscribeMs = await swarm.subscribe(ids(`s${n}`, n));
    const rssSubscribed = rssOf(luod.pid);
    const runs: unknown[] = [];
    let prepareMs: number | null = null;
    // reps+1 runs with the lean admin (bench/probe.ts), then one with luoctl (end to end), then
    // reps+1 with every client prepared (probe)
    for (let r = 0; r <= 2 * reps + 2; r++) {
      const viaLuoctl = r === reps + 1;
      const prepared = r > reps + 1;
      if (r === reps + 2) {
        prepareMs = round(await swarm.prepare());
        say(`n=${n}: every client PREPAREd and preserved in ${prepareMs} ms`);
      }
      swarm.resetRound();
      const cpu0 = threadCpu(luod.pid);
      const self0 = selfCpuMs();
      const t0 = performance.now();
      const res = viaLuoctl
        ? await run([luoctl, "kexec", "--dry-run", "--json", "--timeout", "300s", "--socket", SOCK])
        : await run([probe, SOCK, "--kexec-dry-run", "300000"]);
      const parsed = lastJsonLine(res.stdout);
      const reply = (viaLuoctl ? parsed : parsed?.reply) as Record<string, unknown> | null;
      await swarm.allAborted();
      const luodCpu = cpuDelta(cpu0, threadCpu(luod.pid));
      const selfCpu = selfCpuMs() - self0;
      const rr = swarm.round;
      runs.push({
        admin: viaLuoctl ? "luoctl" : "probe",
        prepared,
        cold: r === 0 || r === reps + 2,
        ok: res.code === 0 && reply?.ok === true,
        admin_wall_ms: round(res.ms),
        timings: reply?.timings ?? null,
        error: res.code === 0 ? null : (reply?.error ?? parsed?.error ?? res.stderr.trim().slice(0, 300)),
        clients: {
          first_start_ms: round(rr.firstStart - t0),
          last_ready_sent_ms: round(rr.lastReadySent - t0),
          last_ready_reply_ms: round(rr.lastReadyReply - t0),
          last_aborted_ms: round(rr.lastAborted - t0),
          preserve_ms_total: round(rr.preserveMs),
        },
        cpu_ms: { luod: luodCpu, clients: round(selfCpu), admin: round(res.cpuMs) },
        progress_events: viaLuoctl ? res.stdout.split("\n").filter((l) => l.includes('"PROGRESS"')).length : parsed?.progress_events,
        progress_bytes: viaLuoctl ? res.stdout.length : parsed?.progress_bytes,
      });
      const last = runs[runs.length - 1] as { timings: unknown; admin_wall_ms: number; error: unknown };
      say(`dry run n=${n} rep ${r} (${viaLuoctl ? "luoctl" : prepared ? "probe, prepared" : "probe"}): ${JSON.stringify(last.timings)} admin ${last.admin_wall_ms} ms${last.error ? ` ERROR ${JSON.stringify(last.error)}` : ""}`);
    }
    const rssAfter = rssOf(luod.pid);
    const errors = swarm.errors.slice(0, 5);
    const recreated = swarm.recreatedMemfds;
    await swarm.closeAll();
    // let luod see the disconnects before the floor runs
    for (let i = 0; i < 200; i++) {
      const st = await request(loop, SOCK, { cmd: "STATUS" });
      if ((st.clients as { subscribed: number }).subscribed === 0) break;
      await Bun.sleep(20);
    }
    const floors: unknown[] = [];
    const memfds = floorMemfds(n, bytes);
    for (let r = 0; r <= reps; r++) {
      const f = floorBarrier(memfds, `${n}-${r}`).result;
      floors.push({ cold: r === 0, ...f });
    }
    for (const fd of memfds) closeFd(fd);
    say(`floor n=${n}: ${JSON.stringify(floors[floors.length - 1])}`);
    sweeps.push({ n, subscribe_ms: round(subscribeMs), prepare_ms: prepareMs, luod_rss_subscribed: rssSubscribed, luod_rss_after: rssAfter, runs, floor: floors, errors, recreated_memfds: recreated });
    result.barrier = sweeps;
    save();
  }
}

async function realKexec({ n, prepared }: { n: number; prepared: boolean }, state: State): Promise<never> {
  const swarm = new Swarm(SOCK, bytes, loop);
  await swarm.subscribe(ids("c", n));
  const prepareMs = prepared ? round(await swarm.prepare()) : null;
  const memfds = floorMemfds(n, bytes);
  const { result: floor } = floorBarrier(memfds, "hold", true);
  for (const fd of memfds) closeFd(fd); // LUO holds its own reference (docs/kernel.md#memfd-preservation)
  result.kexec_prepare = { n, prepared, prepare_ms: prepareMs, floor_barrier: floor };
  const load = await run([luoctl, "load", kernel, "--initrd", initrd, "--reuse-cmdline", "--socket", SOCK]);
  if (load.code !== 0) throw new Error(`luoctl load: ${load.stderr}`);
  result.kexec_prepare = { n, prepared, prepare_ms: prepareMs, floor_barrier: floor, load_ms: round(load.ms) };
  writeDurable(`${outDir}/state.json`, { next: state.next + 1, pending: { n, boot, prepared } } satisfies State);
  save();
  say(`real kexec with ${n} ${prepared ? "prepared " : ""}client(s)`);
  // stdout is the serial console: the REBOOTING line (luod's timings up to reboot()) may reach the
  // host's serial.log before the jump; a file on the 9p share does not (luod syncs and reboots
  // at once). bench/run.ts looks for it there.
  const res = await run([luoctl, "kexec", "--json", "--timeout", "300s", "--socket", SOCK], { stdout: "inherit" });
  throw new Error(`luoctl kexec returned ${res.code}: ${res.stderr.trim()}`);
}

async function main(): Promise<number> {
  const state = readState();
  result.warm_binary_ms = round(warm(`${bin}/luo`));
  const versions: number[] = [];
  for (let i = 0; i < 4; i++) versions.push((await run([luoctl, "--version"])).ms);
  result.luoctl_version_ms = stats(versions.slice(1).map((x) => round(x)));
  let luod: LuodProcess;
  if (stage === 2 && state.pending) {
    luod = await restorePhase(state.pending.n);
    await Bun.sleep(500);
    result.luod_idle = rssOf(luod.pid);
  } else {
    luod = await startupAndIdle();
  }
  save();
  if (boot === 1 && counts.length) await barrierSweep(luod);
  if (state.next < chain.length && kernel && existsSync(kernel)) await realKexec(chain[state.next]!, state);
  say("done");
  save();
  return 0;
}

try {
  process.exit(await main());
} catch (e) {
  result.error = (e as Error).stack ?? String(e);
  save();
  say(`ERROR ${(e as Error).message}`);
  process.exit(1);
}

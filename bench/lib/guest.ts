// The in-VM half of the benchmark, run once per boot by bench/vm-job.sh (compiled by bench/run.ts
// into one binary with the epoll worker, so that it starts fast and is a snapshot of src/).
//
//   luo-bench boot --bin DIST --out DIR --boot K --stage 1|2 --counts 1,10,100,1000 --reps R
//                  --chain 1,10,100,1000p --bytes B --kernel K --initrd I
//
// The clients and the floor are C programs (bench/c: luo-swarm, luo-floor, compiled by
// bench/run.ts next to this binary), so that the load generator's CPU stays a small fraction of
// luod's; each reports its own CPU beside its result.
//
// Boot 1 (cold): luod from the warm binary; for every count: a swarm of N clients, R+1 dry runs
//   (`luoctl kexec --dry-run --json`, the first one reported apart as cold), then R+1 floor
//   barriers in the same boot; then the same clients PREPARE (each preserves its memfd into its
//   session ahead of the update) and R+1 more dry runs measure the barrier of prepared clients.
//   Then the chain starts.
// Chain: boot k subscribes chain[k-1] clients (a "p" suffix: they PREPARE and preserve ahead, as in
//   the sweep), preserves as many floor sessions held by this process, loads the same kernel and
//   runs a real `luoctl kexec --json`. Boot k+1 measures the
//   restore: luod spawn → every client holds its memfd (luo-swarm spawns luod and connects as soon
//   as its socket accepts), then the floor restore of the held sessions (`luo-floor restore`: a
//   process of its own, timed from its spawn as well).
// Each boot writes DIR/boot-K.json; DIR/state.json carries the chain position across kexecs.
import { readFileSync, writeFileSync, mkdirSync, openSync, fsyncSync, closeSync, existsSync, rmSync } from "node:fs";
import { EventLoop } from "../../src/kernel/epoll";
import { SwarmProcess } from "./swarm";
import { floorBarriers, floorHold, floorRestore } from "./floor";
import { startLuod, request, rssOf, run, lastJsonLine, machine, round, threadCpu, cpuDelta, stats } from "./common";

const SOCK = "/run/luod/liveupdate.sock";
const STATE_DIR = "/run/luod";

const args = process.argv.slice(2);
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
const swarmBin = `${bin}/luo-swarm`;
const floorBin = `${bin}/luo-floor`;

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

/** luod as this driver knows it: luo-swarm spawns it for a restore. */
interface Luod {
  pid: number;
}

/** A generator's answer, or an error naming the command and the first errors it saw. */
function expectOk(what: string, reply: Record<string, any>): Record<string, any> { // eslint-disable-line @typescript-eslint/no-explicit-any
  if (reply.ok !== true) throw new Error(`luo-swarm ${what}: ${JSON.stringify(reply)}`);
  return reply;
}

const result: Record<string, unknown> = { boot, stage, date: new Date().toISOString(), guest: machine(), memfd_bytes: bytes };
const save = () => writeDurable(`${outDir}/boot-${boot}.json`, result);
const loop = new EventLoop();

async function startupAndIdle(): Promise<Luod> {
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

async function restorePhase(n: number): Promise<Luod> {
  const swarm = SwarmProcess.start(swarmBin, SOCK, bytes);
  rmSync(SOCK, { force: true });
  const argv = [`${bin}/luod`, "--socket", SOCK, "--state-dir", STATE_DIR, "--max-connections", "8192"];
  // times in ms since luo-swarm spawned luod
  const r = await swarm.command(`restore c ${n} /tmp/luod-boot${boot}.log ${argv.join(" ")}`);
  const luod: Luod = { pid: r.luod_pid };
  const byThread = threadCpu(luod.pid); // spawn → all held (and the moment it took to get here)
  const fin = await swarm.command("finish");
  await swarm.close();
  let st: Record<string, unknown> = {};
  try {
    st = await request(loop, SOCK, { cmd: "STATUS" });
  } catch (e) {
    st = { status_error: (e as Error).message };
  }
  const floor = floorRestore(floorBin);
  result.restore = {
    n,
    luod: {
      listening_ms: round(r.listening_ms),
      all_held_ms: round(r.all_held_ms),
      claims_ms: round(r.claims_ms),
      finish_ms: round(fin.ms),
      first_claimed_ms: round(r.first_claimed_ms),
      all_connected_ms: round(r.all_connected_ms),
      cpu_ms: {
        luod_start: { total: r.luod_cpu_start_ms },
        luod_claims: { total: r.luod_cpu_claims_ms },
        clients: round(r.cpu_claims_ms),
        clients_polling: round(r.cpu_ms - r.cpu_claims_ms),
        luod_to_held_by_thread: byThread,
      },
      verified: fin.verified,
      errors: [...r.errors, ...fin.errors].slice(0, 5),
    },
    floor,
    previous_update: st.previous_update ?? null,
    status_error: st.status_error ?? (st.ok === false ? st.error : null),
    luod_rss: rssOf(luod.pid),
  };
  result.luod_start = { listening_ms: round(r.listening_ms), boot_kind: (st.boot as { kind?: string } | undefined)?.kind ?? null };
  say(`restore n=${n}: luod ${round(r.all_held_ms)} ms (listening ${round(r.listening_ms)} ms), floor ${floor ? round(floor.fds_retrieved_ms) : "none"} ms (process ${floor?.process_ms ?? "none"}), verified ${fin.verified}/${n}, generator CPU ${round(r.cpu_claims_ms)} ms (+ ${round(r.cpu_ms - r.cpu_claims_ms)} polling)`);
  return luod;
}

async function barrierSweep(luod: Luod): Promise<void> {
  const sweeps: unknown[] = [];
  for (const n of counts) {
    const swarm = SwarmProcess.start(swarmBin, SOCK, bytes);
    const subscribeMs = expectOk("subscribe", await swarm.command(`subscribe s${n} ${n}`)).ms;
    const rssSubscribed = rssOf(luod.pid);
    const runs: unknown[] = [];
    const errors: string[] = [];
    let recreated = 0;
    let prepareMs: number | null = null;
    // reps+1 runs with the lean admin (bench/probe.ts), then one with luoctl (end to end), then
    // reps+1 with every client prepared (probe)
    for (let r = 0; r <= 2 * reps + 2; r++) {
      const viaLuoctl = r === reps + 1;
      const prepared = r > reps + 1;
      if (r === reps + 2) {
        prepareMs = round(expectOk("prepare", await swarm.command("prepare")).ms);
        say(`n=${n}: every client PREPAREd and preserved in ${prepareMs} ms`);
      }
      await swarm.command("round"); // the clients' times below run from here, just before the admin's spawn
      const cpu0 = threadCpu(luod.pid);
      const res = viaLuoctl
        ? await run([luoctl, "kexec", "--dry-run", "--json", "--timeout", "300s", "--socket", SOCK])
        : await run([probe, SOCK, "--kexec-dry-run", "300000"]);
      const parsed = lastJsonLine(res.stdout);
      const reply = (viaLuoctl ? parsed : parsed?.reply) as Record<string, unknown> | null;
      const rr = await swarm.command("aborted");
      recreated += rr.recreated_memfds;
      const luodCpu = cpuDelta(cpu0, threadCpu(luod.pid));
      if (rr.error_count) errors.push(...rr.errors);
      runs.push({
        admin: viaLuoctl ? "luoctl" : "probe",
        prepared,
        cold: r === 0 || r === reps + 2,
        ok: res.code === 0 && reply?.ok === true,
        admin_wall_ms: round(res.ms),
        timings: reply?.timings ?? null,
        error: res.code === 0 ? null : (reply?.error ?? parsed?.error ?? res.stderr.trim().slice(0, 300)),
        clients: {
          first_start_ms: round(rr.first_start_ms),
          last_ready_sent_ms: round(rr.last_ready_sent_ms),
          last_ready_reply_ms: round(rr.last_ready_reply_ms),
          last_aborted_ms: round(rr.last_aborted_ms),
          preserve_ms_total: round(rr.preserve_ms_total),
        },
        cpu_ms: { luod: luodCpu, clients: round(rr.cpu_ms), admin: round(res.cpuMs) },
        progress_events: viaLuoctl ? res.stdout.split("\n").filter((l) => l.includes('"PROGRESS"')).length : parsed?.progress_events,
        progress_bytes: viaLuoctl ? res.stdout.length : parsed?.progress_bytes,
      });
      const last = runs[runs.length - 1] as { timings: unknown; admin_wall_ms: number; error: unknown };
      say(`dry run n=${n} rep ${r} (${viaLuoctl ? "luoctl" : prepared ? "probe, prepared" : "probe"}): ${JSON.stringify(last.timings)} admin ${last.admin_wall_ms} ms${last.error ? ` ERROR ${JSON.stringify(last.error)}` : ""}`);
    }
    const rssAfter = rssOf(luod.pid);
    await swarm.close();
    // let luod see the disconnects before the floor runs
    for (let i = 0; i < 200; i++) {
      const st = await request(loop, SOCK, { cmd: "STATUS" });
      if ((st.clients as { subscribed: number }).subscribed === 0) break;
      await Bun.sleep(20);
    }
    const floors = floorBarriers(floorBin, n, bytes, reps);
    say(`floor n=${n}: ${JSON.stringify(floors[floors.length - 1])}`);
    sweeps.push({ n, subscribe_ms: round(subscribeMs), prepare_ms: prepareMs, luod_rss_subscribed: rssSubscribed, luod_rss_after: rssAfter, runs, floor: floors, errors: errors.slice(0, 5), recreated_memfds: recreated });
    result.barrier = sweeps;
    save();
  }
}

async function realKexec({ n, prepared }: { n: number; prepared: boolean }, state: State): Promise<never> {
  // both processes live on (holding their sessions) until the jump
  const swarm = SwarmProcess.start(swarmBin, SOCK, bytes);
  expectOk("subscribe", await swarm.command(`subscribe c ${n}`));
  const prepareMs = prepared ? round(expectOk("prepare", await swarm.command("prepare")).ms) : null;
  const { result: floor } = await floorHold(floorBin, n, bytes);
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
  // the generator and the floor: into the page cache, and run once (the usage line) so that the
  // host's libc they load over 9p is warm too
  for (const b of [swarmBin, floorBin]) {
    warm(b);
    Bun.spawnSync([b], { stderr: "ignore" });
  }
  const versions: number[] = [];
  for (let i = 0; i < 4; i++) versions.push((await run([luoctl, "--version"])).ms);
  result.luoctl_version_ms = stats(versions.slice(1).map((x) => round(x)));
  let luod: Luod;
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

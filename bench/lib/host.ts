// The host half of the benchmark (no LUO here: what does not need the kernel): the control path
// (luoctl status round trip, a persistent client's request rate) and luod's footprint.
import { existsSync, statSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir, loadavg } from "node:os";
import { join } from "node:path";
import { EventLoop } from "../../src/kernel/epoll";
import { LuoClient } from "../../src/client";
import { SwarmProcess } from "./swarm";
import { startLuod, stopLuod, request, rssOf, run, stats, percentile, round, threadCpu, cpuDelta, type LuodProcess } from "./common";

export interface HostOptions {
  bin: string;
  clients: number;
  reps: number;
  log: (s: string) => void;
}

interface Hyperfine {
  tool: "hyperfine" | "loop";
  runs: number;
  mean_ms: number;
  stddev_ms: number;
  median_ms: number;
  min_ms: number;
  max_ms: number;
  /** user + system CPU time, mean (hyperfine only): steadier than wall time on a busy machine. */
  cpu_ms?: number;
}

/** Whole-process wall time of a command: hyperfine when installed, else our own loop. */
async function timeCommand(cmd: string[], runs: number, warmup = 5): Promise<Hyperfine> {
  if (Bun.which("hyperfine")) {
    const dir = mkdtempSync(join(tmpdir(), "luo-bench-hf-"));
    const out = join(dir, "hf.json");
    const r = await run(["hyperfine", "-N", "--warmup", String(warmup), "--runs", String(runs), "--export-json", out, cmd.join(" ")]);
    if (r.code === 0) {
      const j = (await Bun.file(out).json()).results[0];
      rmSync(dir, { recursive: true, force: true });
      const ms = (s: number) => round(s * 1000, 2);
      return { tool: "hyperfine", runs: j.times.length, mean_ms: ms(j.mean), stddev_ms: ms(j.stddev), median_ms: ms(j.median), min_ms: ms(j.min), max_ms: ms(j.max), cpu_ms: ms(j.user + j.system) };
    }
    rmSync(dir, { recursive: true, force: true });
  }
  const once = async () => {
    const r = await run(cmd);
    if (r.code !== 0) throw new Error(`${cmd.join(" ")}: exit ${r.code}: ${r.stderr.trim().slice(0, 200)}`);
    return r.ms;
  };
  for (let i = 0; i < warmup; i++) await once();
  const xs: number[] = [];
  for (let i = 0; i < runs; i++) xs.push(await once());
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const sd = Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / xs.length);
  const s = stats(xs)!;
  return { tool: "loop", runs, mean_ms: round(mean), stddev_ms: round(sd), median_ms: round(s.median), min_ms: round(s.min), max_ms: round(s.max) };
}

/** Sequential request/reply on one persistent connection, then a pipelined window. */
async function persistentClient(socket: string, luod: LuodProcess, seconds = 3) {
  const c = await LuoClient.connect(socket);
  try {
    for (let i = 0; i < 200; i++) await c.request({ cmd: "STATUS" }); // warm-up (JIT on both sides)
    const rtt: number[] = [];
    let cpu0 = threadCpu(luod.pid);
    const t0 = performance.now();
    while (performance.now() - t0 < seconds * 1000) {
      const t = performance.now();
      await c.request({ cmd: "STATUS" });
      rtt.push(performance.now() - t);
    }
    const seqMs = performance.now() - t0;
    const seqCpu = cpuDelta(cpu0, threadCpu(luod.pid)).total!;
    // pipelined: keep `window` requests in flight
    const window = 32;
    let done = 0;
    cpu0 = threadCpu(luod.pid);
    const t1 = performance.now();
    const end = t1 + seconds * 1000;
    await Promise.all(Array.from({ length: window }, async () => {
      while (performance.now() < end) {
        await c.request({ cmd: "STATUS" });
        done++;
      }
    }));
    const pipeMs = performance.now() - t1;
    const pipeCpu = cpuDelta(cpu0, threadCpu(luod.pid)).total!;
    return {
      request: "STATUS",
      sequential: {
        requests: rtt.length,
        per_s: Math.round((rtt.length / seqMs) * 1000),
        rtt_p50_us: Math.round(percentile(rtt, 50) * 1000),
        rtt_p99_us: Math.round(percentile(rtt, 99) * 1000),
        luod_cpu_us_per_request: Math.round((seqCpu * 1000) / rtt.length),
      },
      pipelined: {
        window,
        requests: done,
        per_s: Math.round((done / pipeMs) * 1000),
        luod_cpu_us_per_request: Math.round((pipeCpu * 1000) / done),
      },
    };
  } finally {
    c.close();
  }
}

export async function hostBench(o: HostOptions) {
  const dir = mkdtempSync(join(tmpdir(), "luo-bench-"));
  const socket = join(dir, "luod.sock");
  const stateDir = join(dir, "state");
  const luoctl = `${o.bin}/luoctl`;
  const load0 = loadavg();
  const loop = new EventLoop();
  try {
    // startup to listening / to the first reply, fresh process each time
    const listening: number[] = [];
    const firstReply: number[] = [];
    for (let i = 0; i <= o.reps; i++) {
      const l = await startLuod({ bin: o.bin, socket, stateDir, log: join(dir, `luod-${i}.log`), pollMs: 0.5 });
      await request(loop, socket, { cmd: "STATUS" });
      if (i > 0) {
        listening.push(l.listeningAt - l.spawnedAt);
        firstReply.push(performance.now() - l.spawnedAt);
      }
      await stopLuod(l);
    }
    o.log(`host: luod startup to listening ${round(stats(listening)!.median)} ms`);

    const luod = await startLuod({ bin: o.bin, socket, stateDir, log: join(dir, "luod.log") });
    await request(loop, socket, { cmd: "STATUS" });
    await Bun.sleep(2000);
    const idle = rssOf(luod.pid);
    const idleCpu0 = threadCpu(luod.pid);
    await Bun.sleep(5000);
    const idleCpu = cpuDelta(idleCpu0, threadCpu(luod.pid)).total!;
    o.log(`host: luod idle RSS ${idle.rss_kib} KiB`);

    const statusCmd = [luoctl, "status", "--socket", socket];
    const status = await timeCommand(statusCmd, 50);
    const statusJson = await timeCommand([...statusCmd, "--json"], 30);
    const version = await timeCommand([luoctl, "--version"], 30);
    const probeBin = `${o.bin}/luo-probe`;
    const probe = existsSync(probeBin) ? await timeCommand([probeBin, socket], 50) : null;
    const probeClient = existsSync(probeBin) ? await timeCommand([probeBin, socket, "--client"], 50) : null;
    const probeInprocess = existsSync(probeBin) ? JSON.parse((await run([probeBin, socket, "--time", "500"])).stdout) : null;
    o.log(`host: luoctl status ${status.mean_ms} ± ${status.stddev_ms} ms (${status.tool})`);
    const persistent = await persistentClient(socket, luod);
    o.log(`host: persistent client ${persistent.sequential.per_s} req/s sequential, ${persistent.pipelined.per_s} req/s pipelined`);
    const afterLoad = rssOf(luod.pid);

    // with many clients
    const swarm = SwarmProcess.start(`${o.bin}/luo-swarm`, socket, 4096);
    const subscribed = await swarm.command(`subscribe h ${o.clients}`);
    const subscribeMs = subscribed.ms as number;
    await Bun.sleep(1000);
    const withClients = rssOf(luod.pid);
    const statusWithClients = await timeCommand(statusCmd, 20, 3);
    o.log(`host: ${o.clients} clients subscribed in ${round(subscribeMs)} ms; luod RSS ${withClients.rss_kib} KiB`);
    await swarm.close();
    await stopLuod(luod);

    return {
      loadavg_before: load0.map((x) => round(x)),
      loadavg_after: loadavg().map((x) => round(x)),
      binary_bytes: statSync(`${o.bin}/luo`).size,
      startup: {
        listening_ms: stats(listening.map((x) => round(x))),
        first_reply_ms: stats(firstReply.map((x) => round(x))),
      },
      idle: { ...idle, cpu_ms_per_5s: round(idleCpu) },
      after_request_load: afterLoad,
      luoctl_status: status,
      luoctl_status_json: statusJson,
      luoctl_version: version,
      probe,
      probe_client: probeClient,
      probe_inprocess: probeInprocess,
      persistent,
      with_clients: { n: o.clients, subscribe_ms: round(subscribeMs), subscribe_cpu_ms: subscribed.cpu_ms, rss: withClients, luoctl_status: statusWithClients, errors: subscribed.errors },
    };
  } finally {
    loop.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

// luod's own cost per client on this host, without LUO: luod runs from source with the test
// suite's fake kernel (sessions are plain memfds; src/daemon/fake-kernel.ts), so what is left
// is luod's userspace work — the part a fix in src/ can change. Optionally under Bun's CPU
// profiler. Fast (seconds), so a change to src/daemon or src/wire can be checked before the VM.
//
//   node_modules/.bin/bun bench/profile.ts [--clients 1000] [--reps 3] [--prepared] [--prof DIR] [--syscalls DIR] [--json]
//
// Barrier: N swarm clients answer READY at once (no ioctl), a lean admin runs KEXEC dry runs.
// Restore: luod restarted with a fake previous kernel holding N sessions and a manifest; N
// clients CLAIM. Prints luod's timings and its CPU per client; --prof writes a .cpuprofile and a
// markdown profile of luod (both phases) to DIR.
import { mkdtempSync, rmSync, mkdirSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { EventLoop } from "../src/kernel/epoll";
import { Connection } from "../src/wire/connection";
import { unixConnect } from "../src/kernel/unix";
import { SwarmProcess } from "./lib/swarm";
import { buildGenerators, rssOf, stats, round, threadCpu, cpuDelta } from "./lib/common";

const args = process.argv.slice(2);
const opt = (name: string, fallback: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : fallback;
};

// ---- the daemon half (a child process) ------------------------------------------------------

async function daemon(socket: string, stateDir: string, restoreN: number): Promise<never> {
  const { runDaemon, toConfig } = await import("../src/daemon/main");
  const { DEFAULTS } = await import("../src/daemon/config");
  const { createLogger } = await import("../src/daemon/log");
  const { FakeKernel } = await import("../src/daemon/fake-kernel");
  const { encodeManifest, MANIFEST_FORMAT, MANIFEST_VERSION } = await import("../src/daemon/manifest");
  if (process.env.BENCH_PATCH_SAVE === "1") {
    // What-if (bench only, src/ untouched): coalesce state-file writes, at most one per name per
    // 50 ms, the last content wins. Shows the gain of batching RestoredSessions.save().
    const { StateFiles } = await import("../src/daemon/state-files");
    const write = StateFiles.prototype.write;
    const pending = new Map<string, { self: unknown; data: unknown }>();
    StateFiles.prototype.write = function (this: InstanceType<typeof StateFiles>, name: Parameters<typeof write>[0], data: unknown) {
      const first = !pending.has(name);
      pending.set(name, { self: this, data });
      if (first) setTimeout(() => {
        const p = pending.get(name)!;
        pending.delete(name);
        write.call(p.self as InstanceType<typeof StateFiles>, name, p.data);
      }, 50);
    } as typeof write;
  }
  const kernel = new FakeKernel();
  if (restoreN > 0) {
    const at = new Date().toISOString();
    const entries = Array.from({ length: restoreN }, (_, i) => ({
      id: `c-${i}`, session: `luod:c-${i}/1`, uid: 0, gid: 0, pid: 1000 + i, unit: null, subscribedAt: at, readyAt: at,
    }));
    for (const e of entries) kernel.incoming.set(e.session, { retrieved: false });
    kernel.incoming.set("luod", {
      retrieved: false,
      blob: encodeManifest({
        format: MANIFEST_FORMAT, version: MANIFEST_VERSION, luod: "bench", attempt: 1, createdAt: at,
        kernel: { from: "7.2.13", next: null }, timings: {}, entries,
      }),
    });
  }
  const code = await runDaemon(
    toConfig({ ...DEFAULTS, socket, stateDir, device: "/dev/null", maxConnections: 100_000, verbose: false }),
    createLogger({ verbose: false }),
    kernel,
  );
  process.exit(code);
}

// ---- the driver -----------------------------------------------------------------------------

interface Luod {
  proc: ReturnType<typeof Bun.spawn>;
  spawnedAt: number;
  listeningAt: number;
}

async function spawnDaemon(socket: string, stateDir: string, restoreN: number, prof: string | null, tag: string): Promise<Luod> {
  rmSync(socket, { force: true });
  const profArgs = prof ? ["--cpu-prof", "--cpu-prof-md", `--cpu-prof-dir=${prof}`, `--cpu-prof-name=luod-${tag}.cpuprofile`] : [];
  const spawnedAt = performance.now();
  // --syscalls DIR: count luod's syscalls per thread (perf trace -s; slows luod down, so ignore
  // the times then)
  const traceDir = args.includes("--syscalls") ? resolve(opt("syscalls", ".")) : null;
  const straceArgs = traceDir ? ["perf", "trace", "-s", "-o", join(traceDir, `luod-${tag}.syscalls`), "--"] : [];
  const proc = Bun.spawn([...straceArgs, process.execPath, ...profArgs, import.meta.path, "--daemon", socket, stateDir, String(restoreN)], {
    stdin: "ignore", stdout: "ignore", stderr: Bun.file(join(stateDir, `..`, `luod-${tag}.log`)),
  });
  for (;;) {
    try {
      unixConnect(socket);
      return { proc, spawnedAt, listeningAt: performance.now() };
    } catch {
      if (proc.exitCode !== null) throw new Error(`luod exited with ${proc.exitCode}`);
      await Bun.sleep(1);
    }
  }
}

/** KEXEC dry run on a connection of our own; PROGRESS events only counted. */
function dryRun(loop: EventLoop, socket: string): Promise<{ reply: Record<string, unknown>; events: number; ms: number }> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    let events = 0;
    const conn = new Connection(unixConnect(socket), loop, {
      onMessage: (msg) => {
        if (msg.reply === "KEXEC") {
          conn.close("done");
          resolve({ reply: msg, events, ms: performance.now() - t0 });
        } else events++;
      },
      onClose: (reason) => reason === "done" || reject(new Error(`admin connection closed: ${reason}`)),
    });
    conn.send({ cmd: "KEXEC", dry_run: true, timeout_ms: 300_000 });
  });
}

async function main(): Promise<void> {
  const n = Number(opt("clients", "1000"));
  const reps = Number(opt("reps", "3"));
  const prof = args.includes("--prof") ? resolve(opt("prof", "")) : null;
  if (prof) mkdirSync(prof, { recursive: true });
  const dir = mkdtempSync(join(tmpdir(), "luo-profile-"));
  const socket = join(dir, "luod.sock");
  const loop = new EventLoop();
  const out: Record<string, unknown> = { n, reps };
  await buildGenerators(dir);
  try {
    // barrier
    mkdirSync(join(dir, "state1"));
    let luod = await spawnDaemon(socket, join(dir, "state1"), 0, prof, "barrier");
    out.startup_ms = round(luod.listeningAt - luod.spawnedAt);
    const swarm = SwarmProcess.start(join(dir, "luo-swarm"), socket, 4096, false);
    const subscribed = await swarm.command(`subscribe c ${n}`);
    out.subscribe_ms = round(subscribed.ms);
    out.subscribed = subscribed.clients;
    if (args.includes("--prepared")) {
      const prepared = await swarm.command("prepare"); // the barrier of prepared clients
      out.prepare_ms = round(prepared.ms);
      out.prepared = prepared.clients;
    }
    const runs: Record<string, unknown>[] = [];
    for (let r = 0; r <= reps; r++) {
      await swarm.command("round");
      const cpu0 = threadCpu(luod.proc.pid);
      const d = await dryRun(loop, socket);
      const round_ = await swarm.command("aborted");
      const cpu = cpuDelta(cpu0, threadCpu(luod.proc.pid));
      runs.push({
        cold: r === 0, ok: d.reply.ok, wall_ms: round(d.ms), timings: d.reply.timings, progress_events: d.events, luod_cpu_ms: cpu.total, luod_cpu_by_thread: cpu,
        clients: { ready_replies: round_.ready_replies, ok: round_.ok, generator_cpu_ms: round(round_.cpu_ms), errors: round_.errors },
      });
    }
    const warm = runs.filter((x) => !x.cold);
    out.barrier = {
      runs,
      manifest_preserved_ms: stats(warm.map((x) => (x.timings as Record<string, number>).manifest_preserved_ms!)),
      luod_cpu_ms: stats(warm.map((x) => x.luod_cpu_ms as number)),
      luod_cpu_us_per_client: stats(warm.map((x) => ((x.luod_cpu_ms as number) * 1000) / n)),
    };
    out.rss_with_clients = rssOf(luod.proc.pid);
    await swarm.close();
    luod.proc.kill(args.includes("--syscalls") ? "SIGINT" : "SIGTERM"); // perf trace prints on SIGINT
    await luod.proc.exited;

    // restore
    mkdirSync(join(dir, "state2"));
    luod = await spawnDaemon(socket, join(dir, "state2"), n, prof, "restore");
    const listening = luod.listeningAt;
    const cpu0 = threadCpu(luod.proc.pid);
    const claimers = SwarmProcess.start(join(dir, "luo-swarm"), socket, 4096, false);
    const claimed = await claimers.command(`claim c ${n}`);
    const held = performance.now();
    const cpu = cpuDelta(cpu0, threadCpu(luod.proc.pid));
    const fin = await claimers.command("finish");
    const finished = performance.now();
    out.restore = {
      start_to_listening_ms: round(listening - luod.spawnedAt),
      listening_to_all_claimed_ms: round(held - listening),
      finished_ms: round(finished - held),
      luod_cpu_ms_claims: cpu.total,
      luod_cpu_ms_claims_by_thread: cpu,
      luod_cpu_us_per_claim: round((cpu.total! * 1000) / n, 0),
      held: claimed.held,
      finished: fin.verified,
      generator_cpu_ms_claims: round(claimed.cpu_claims_ms),
      errors: [...claimed.errors, ...fin.errors].slice(0, 3),
    };
    await claimers.close();
    luod.proc.kill(args.includes("--syscalls") ? "SIGINT" : "SIGTERM"); // perf trace prints on SIGINT
    await luod.proc.exited;
    if (prof) out.profiles = readdirSync(prof).map((f) => join(prof, f));
  } finally {
    loop.close();
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(JSON.stringify(out, null, args.includes("--json") ? 1 : 1));
  process.exit(0);
}

if (args[0] === "--daemon") await daemon(args[1]!, args[2]!, Number(args[3] ?? 0));
else await main();

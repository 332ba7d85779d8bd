// luo-agent benchmarks: luod's barrier and restore on the real LUO kernel (in the QEMU VM) next to
// a no-broker floor, the control path and the footprint (on this host). See docs/performance.md.
//
//   node_modules/.bin/bun bench/run.ts [--json] [--clients 1,10,100,1000] [--reps 5]
//        [--skip-vm] [--skip-host] [--bytes 4096] [--mem 3G] [--vm-timeout 3000]
//        [--out FILE] [--from FILE] [--vm-dir DIR] [--luo FILE] [--sweep LIST] [--chain LIST]
//
//   --clients   client counts; the VM part does a dry-run sweep and a chain of real kexecs over them
//   --reps      repetitions per data point (plus one cold run, reported apart)
//   --out       where to save the raw results (default .vm/bench-results/<time>.json)
//   --from      print the tables of a saved result instead of measuring
//   --vm-dir    take the VM part from a finished run's work dir instead of booting one
//   --luo       the binary to measure (default dist/luo), e.g. an A/B build of a proposed fix
//   --sweep, --chain   override --clients for the dry-run sweep / the chain of real kexecs
//               ("" skips it), e.g. --sweep "" --chain 100,1000 measures restores only;
//               in --chain, "1000p" means 1000 clients that PREPARE before the update
//
// It uses dist/luo as built (`node_modules/.bin/bun scripts/build-binary.ts`), copied to a private
// directory first so that a rebuild during the run cannot change the binary under it. The guest
// driver (bench/lib/guest.ts), the status probe (bench/probe.ts) and the C load generator and
// floor (bench/c) are compiled there too.
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { loadavg } from "node:os";
import { hostBench } from "./lib/host";
import { benchArgs, buildGenerators, copyBinary, machine, run, stats, round, type Stats } from "./lib/common";

const root = resolve(import.meta.dir, "..");
const { args, flag, opt } = benchArgs(import.meta.path, [3, 15]);
const json = flag("json");
const clients = opt("clients", "1,10,100,1000").split(",").filter(Boolean).map(Number);
const sweep = opt("sweep", clients.join(","));
const chain = opt("chain", clients.join(","));
const reps = Number(opt("reps", "5"));
const bytes = Number(opt("bytes", "4096"));
const log = (s: string) => console.error(s);

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

// ---- build ---------------------------------------------------------------------------------

const COMPILE = ["build", "--compile", "--minify", "--bytecode", "--format=esm", "--no-compile-autoload-dotenv", "--no-compile-autoload-bunfig"];

async function prepare(dir: string): Promise<void> {
  copyBinary(resolve(opt("luo", join(root, "dist", "luo"))), dir, ["luod", "luoctl"]);
  for (const [out, entries] of [["luo-bench", ["bench/lib/guest.ts", "src/kernel/epoll-worker.ts"]], ["luo-probe", ["bench/probe.ts", "src/kernel/epoll-worker.ts"]]] as const) {
    const r = await run([process.execPath, ...COMPILE, ...entries, "--outfile", join(dir, out)].map(String));
    if (r.code !== 0) throw new Error(`compiling ${out}: ${r.stderr}`);
  }
  await buildGenerators(dir);
}

// ---- VM ------------------------------------------------------------------------------------

async function vmBench(bin: string, workdir: string): Promise<Json> {
  const t0 = performance.now();
  const load0 = loadavg();
  const env = {
    BENCH_BIN: join(bin, "luo-bench"), LUO_DIST: bin, BENCH_COUNTS: sweep, BENCH_REPS: String(reps),
    BENCH_CHAIN: chain, BENCH_BYTES: String(bytes),
  };
  const cmd = [join(root, "scripts/vm/run-job.sh"), join(root, "bench/vm-job.sh"), "-m", opt("mem", "3G"), "-t", opt("vm-timeout", "3000"),
    ...Object.entries(env).flatMap(([k, v]) => ["-e", `${k}=${v}`])];
  log(`vm: ${cmd.join(" ")}`);
  const proc = Bun.spawn(cmd, { env: { ...process.env, LUO_VM_WORKDIR: workdir }, stdout: "inherit", stderr: "inherit" });
  const code = await proc.exited;
  log(`vm: exit ${code} after ${round((performance.now() - t0) / 1000, 1)} s`);
  const res = readVm(workdir);
  res.exit_code = code;
  res.loadavg_before = load0.map((x) => round(x));
  res.loadavg_after = loadavg().map((x) => round(x));
  return res;
}

/** Collects boot-N.json and the REBOOTING lines luoctl printed on the serial console. */
function readVm(workdir: string): Json {
  const dir = join(workdir, "share", "bench");
  const boots: Json[] = readdirSync(dir)
    .filter((f) => /^boot-\d+\.json$/.test(f))
    .map((f) => JSON.parse(readFileSync(join(dir, f), "utf8")))
    .sort((a, b) => a.boot - b.boot);
  const serial = existsSync(join(workdir, "serial.log")) ? readFileSync(join(workdir, "serial.log"), "utf8") : "";
  // luoctl's REBOOTING line (luod's timings up to reboot()) lands in the console of the boot that
  // jumped, when the serial port got it out before the jump: keyed by that boot's number
  const rebooting: Record<number, Json> = {};
  let boot = 0;
  for (const line of serial.split("\n")) {
    const b = /BENCH: boot (\d+) stage/.exec(line);
    if (b) boot = Number(b[1]);
    const m = /\{"ok":true,"event":"REBOOTING".*\}/.exec(line);
    if (m) {
      try {
        rebooting[boot] = JSON.parse(m[0]);
      } catch {
        // cut short by the jump
      }
    }
  }
  // relative to the repository: saved results must not name this machine's paths
  return { workdir: relative(resolve(import.meta.dir, ".."), workdir), boots, rebooting };
}

// ---- report --------------------------------------------------------------------------------

const fmt = (x: number | null | undefined, d = 1) => (x === null || x === undefined || !Number.isFinite(x) ? "–" : x >= 100 ? String(Math.round(x)) : x.toFixed(d));
const fmtS = (s: Stats | null) => (s ? `${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})` : "–");
/** A chain entry's client count, marked when its clients PREPAREd before the update. */
const clientsOf = (x: Json) => `${x.n}${x.prepared ? " prepared" : ""}`;
const ratio = (a: number | undefined, b: number | undefined) => (a !== undefined && b ? `${(a / b).toFixed(1)}×` : "–");
/** "k of m" prepared runs within 1.5× of the floor (the issue's barrier target). */
const withinPrepared = (p: Json) => (p.run_ratios?.length ? `${p.run_ratios.filter((x: number) => x <= 1.5).length} of ${p.run_ratios.length}` : "–");

export function summarize(r: Json): Json {
  const vm = r.vm as Json | undefined;
  const s: Json = { barrier: [], restore: [] };
  const boot1 = vm?.boots?.find((b: Json) => b.boot === 1);
  for (const sw of (boot1?.barrier ?? []) as Json[]) {
    const warm = sw.runs.filter((x: Json) => x.admin === "probe" && !x.prepared && !x.cold && x.ok);
    const warmPrepared = sw.runs.filter((x: Json) => x.admin === "probe" && x.prepared && !x.cold && x.ok);
    const cold = sw.runs.find((x: Json) => x.cold);
    const viaLuoctl = sw.runs.find((x: Json) => x.admin === "luoctl");
    const floors = sw.floor.filter((x: Json) => !x.cold);
    const t = (k: string) => stats(warm.map((x: Json) => x.timings?.[k]));
    const luodCpu = stats(warm.map((x: Json) => x.cpu_ms?.luod?.total));
    s.barrier.push({
      n: sw.n,
      luod: t("manifest_preserved_ms"),
      sessions_created: t("sessions_created_ms"),
      fds_sent: t("fds_sent_ms"),
      all_ready: t("all_ready_ms"),
      manifest: t("manifest_ms"),
      cold: cold?.timings?.manifest_preserved_ms ?? null,
      prepared: warmPrepared.length ? {
        luod: stats(warmPrepared.map((x: Json) => x.timings?.manifest_preserved_ms)),
        all_ready: stats(warmPrepared.map((x: Json) => x.timings?.all_ready_ms)),
        cpu_luod: stats(warmPrepared.map((x: Json) => x.cpu_ms?.luod?.total)),
        cpu_clients: stats(warmPrepared.map((x: Json) => x.cpu_ms?.clients)),
        prepare_ms: sw.prepare_ms ?? null,
        // every prepared run, the cold one too, against the floor's median (the issue's "5 of 6")
        run_ratios: sw.runs.filter((x: Json) => x.admin === "probe" && x.prepared && x.ok)
          .map((x: Json) => x.timings?.manifest_preserved_ms / (stats(floors.map((f: Json) => f.manifest_preserved_ms))?.median ?? NaN)),
      } : null,
      floor: stats(floors.map((x: Json) => x.manifest_preserved_ms)),
      floor_sessions: stats(floors.map((x: Json) => x.sessions_created_ms)),
      floor_preserved: stats(floors.map((x: Json) => x.preserved_ms)),
      floor_sync: stats(floors.map((x: Json) => x.sync_ms)),
      floor_cpu: stats(floors.map((x: Json) => x.cpu_ms)),
      admin_wall: stats(warm.map((x: Json) => x.admin_wall_ms)),
      luoctl: viaLuoctl ? { ok: viaLuoctl.ok, wall_ms: viaLuoctl.admin_wall_ms, luod_ms: viaLuoctl.timings?.manifest_preserved_ms ?? null, error: viaLuoctl.error, cpu_ms: viaLuoctl.cpu_ms?.admin, progress_events: viaLuoctl.progress_events } : null,
      cpu_luod: luodCpu,
      cpu_clients: stats(warm.map((x: Json) => x.cpu_ms?.clients)),
      cpu_admin: stats(warm.map((x: Json) => x.cpu_ms?.admin)),
      luod_threads: warm[0]?.cpu_ms?.luod ?? null,
      progress_bytes: warm[0]?.progress_bytes ?? null,
      failed: sw.runs.filter((x: Json) => !x.ok).length,
      rss_subscribed: sw.luod_rss_subscribed,
      rss_after: sw.luod_rss_after,
    });
  }
  for (const b of (vm?.boots ?? []) as Json[]) {
    if (!b.restore) continue;
    const re = b.restore;
    const prevBoot = vm!.boots.find((x: Json) => x.boot === b.boot - 1);
    const rb = Array.isArray(vm!.rebooting) ? null : ((vm!.rebooting as Record<number, Json>)[b.boot - 1] ?? null);
    s.restore.push({
      n: re.n,
      prepared: prevBoot?.kexec_prepare?.prepared === true,
      luod_total: re.luod.all_held_ms,
      luod_listening: re.luod.listening_ms,
      luod_claims: re.luod.claims_ms,
      floor: re.floor?.fds_retrieved_ms ?? null,
      floor_process: re.floor?.process_ms ?? null,
      floor_cpu: re.floor?.cpu_ms ?? null,
      verified: `${re.luod.verified}/${re.n} + floor ${re.floor?.verified ?? 0}/${re.floor?.n ?? 0}`,
      real_kexec_timings: rb?.timings ?? re.previous_update?.timings ?? null,
      real_kexec_source: rb ? "REBOOTING event" : "previous_update (manifest)",
      floor_real_barrier: prevBoot?.kexec_prepare?.floor_barrier?.manifest_preserved_ms ?? null,
      luod_rss: re.luod_rss,
      cpu: re.luod.cpu_ms ?? null,
      first_claimed: re.luod.first_claimed_ms ?? null,
    });
  }
  return s;
}

function markdown(r: Json): string {
  const s = summarize(r);
  const out: string[] = [];
  const h = r.host as Json | undefined;
  const g = r.vm?.boots?.[0]?.guest;
  out.push(`### Machine\n`);
  out.push(`* host: ${r.machine.nproc} × ${r.machine.cpu}, ${r.machine.mem_mib} MiB, Linux ${r.machine.kernel}, Bun ${r.machine.bun}; load average ${h ? `${h.loadavg_before.join(" ")} → ${h.loadavg_after.join(" ")}` : "–"}${r.vm?.loadavg_before ? `; VM part ${r.vm.loadavg_before.join(" ")} → ${r.vm.loadavg_after.join(" ")}` : ""} (other engineers' VMs share the 2 cores)`);
  if (g) out.push(`* guest: QEMU TCG (no usable KVM), ${g.nproc} vCPU (${g.cpu}), ${g.mem_mib} MiB, Linux ${g.kernel} with LUO; memfds of ${r.vm.boots[0].memfd_bytes} bytes`);
  out.push(`* date: ${r.date}; ${reps} repetitions + 1 cold run per data point; medians with (min–max)\n`);

  if (s.barrier.length) {
    out.push(`### Barrier: KEXEC request → luod would call reboot(KEXEC) (dry run, real kernel, ms)\n`);
    out.push(`| clients | luod (median, min–max) | no-broker floor | ratio | luod − floor | cold 1st run | sessions created | fds sent | all READY | CPU ms luod / generator / admin | floor's CPU ms | \`luoctl kexec --dry-run\` once |`);
    out.push(`|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|`);
    for (const b of s.barrier) {
      const l = b.luoctl;
      const lt = !l ? "–" : l.ok ? `ok, ${fmt(l.wall_ms)} ms whole process (luod ${fmt(l.luod_ms)})` : `**failed**: ${typeof l.error === "object" ? l.error?.code + " " + l.error?.message : l.error}`;
      out.push(`| ${b.n} | ${fmtS(b.luod)} | ${fmtS(b.floor)} | ${ratio(b.luod?.median, b.floor?.median)} | ${fmt((b.luod?.median ?? NaN) - (b.floor?.median ?? NaN))} | ${fmt(b.cold)} | ${fmt(b.sessions_created?.median)} | ${fmt(b.fds_sent?.median)} | ${fmt(b.all_ready?.median)} | ${fmt(b.cpu_luod?.median, 0)} / ${fmt(b.cpu_clients?.median, 0)} / ${fmt(b.cpu_admin?.median, 0)} | ${fmt(b.floor_cpu?.median)} | ${lt} |`);
    }
    out.push("");
    if (s.barrier.some((b: Json) => b.prepared)) {
      out.push(`The same clients after PREPARE (each preserved its memfd into its session before the update; the floor is the same, with its PRESERVE_FD ×N inside):\n`);
      out.push(`| clients | luod, prepared clients | no-broker floor | ratio | runs ≤ 1.5× the floor | all READY | CPU ms luod / generator | PREPARE + PRESERVE_FD of all, before the update |`);
      out.push(`|---:|---:|---:|---:|---:|---:|---:|---:|`);
      for (const b of s.barrier) {
        const p = b.prepared;
        if (!p) continue;
        out.push(`| ${b.n} | ${fmtS(p.luod)} | ${fmtS(b.floor)} | ${ratio(p.luod?.median, b.floor?.median)} | ${withinPrepared(p)} | ${fmt(p.all_ready?.median)} | ${fmt(p.cpu_luod?.median, 0)} / ${fmt(p.cpu_clients?.median, 0)} | ${fmt(p.prepare_ms)} |`);
      }
      out.push("");
    }
    out.push(`Floor steps at the largest count: sessions ${fmtS(s.barrier[s.barrier.length - 1].floor_sessions)}, + PRESERVE_FD ×N ${fmtS(s.barrier[s.barrier.length - 1].floor_preserved)}, sync() ${fmtS(s.barrier[s.barrier.length - 1].floor_sync)} (not in the floor: luod stamps reboot_called_ms before its sync()).`);
    out.push("");
  }
  if (s.restore.length) {
    out.push(`### Restore: luod spawned after the live-update boot → every client holds its memfd (ms, one sample per kexec)\n`);
    out.push(`| clients | luod total (spawn → all held) | of which spawn → listening | listening → all held | floor (RETRIEVE_SESSION + RETRIEVE_FD) | floor as a process (spawn → done) | ratio total / floor process | ratio total / floor | ratio claims only / floor | CPU ms luod claims / generator | floor's CPU ms | verified |`);
    out.push(`|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|`);
    for (const x of s.restore) {
      out.push(`| ${clientsOf(x)} | ${fmt(x.luod_total)} | ${fmt(x.luod_listening)} | ${fmt(x.luod_claims)} | ${fmt(x.floor)} | ${fmt(x.floor_process)} | ${ratio(x.luod_total, x.floor_process)} | ${ratio(x.luod_total, x.floor)} | ${ratio(x.luod_claims, x.floor)} | ${x.cpu ? `${fmt(x.cpu.luod_claims?.total, 0)} / ${fmt(x.cpu.clients, 0)}` : "–"} | ${fmt(x.floor_cpu)} | ${x.verified} |`);
    }
    out.push("");
    out.push(`The real kexecs of the chain (the barrier before each restore above), luod's own timings (ms since the KEXEC request; from luoctl's REBOOTING line on the console when it got out before the jump, else from \`previous_update\` in the manifest, which ends at manifest_ms):\n`);
    out.push(`| clients | luod timings | floor barrier (held sessions) | source |`);
    out.push(`|---:|---|---:|---|`);
    for (const x of s.restore) {
      const t = x.real_kexec_timings ? Object.entries(x.real_kexec_timings).map(([k, v]) => `${k.replace(/_ms$/, "")} ${v}`).join(", ") : "–";
      out.push(`| ${clientsOf(x)} | ${t} | ${fmt(x.floor_real_barrier)} | ${x.real_kexec_source} |`);
    }
    out.push("");
  }
  if (h) {
    const p = h.persistent;
    out.push(`### Control path (this host)\n`);
    out.push(`| what | result |`);
    out.push(`|---|---|`);
    const hf = (x: Json) => `${x.mean_ms} ± ${x.stddev_ms} ms (median ${x.median_ms}, ${x.min_ms}–${x.max_ms}${x.cpu_ms !== undefined ? `; CPU ${x.cpu_ms} ms` : ""}; ${x.tool}, ${x.runs} runs)`;
    out.push(`| \`luoctl status\`, whole process | ${hf(h.luoctl_status)} |`);
    out.push(`| \`luoctl status --json\` | ${hf(h.luoctl_status_json)} |`);
    if (h.probe) out.push(`| minimal Bun one-shot client, blocking I/O (bench/probe.ts), whole process | ${hf(h.probe)} |`);
    if (h.probe) out.push(`| \`luoctl status\` / the minimal client, whole process (mean; median) | ${ratio(h.luoctl_status.mean_ms, h.probe.mean_ms)}; ${ratio(h.luoctl_status.median_ms, h.probe.median_ms)} (2 decimals: ${(h.luoctl_status.mean_ms / h.probe.mean_ms).toFixed(2)}×) |`);
    if (h.probe_client) out.push(`| the same through LuoClient (epoll Worker thread), whole process | ${hf(h.probe_client)} |`);
    out.push(`| \`luoctl --version\` (runtime start, no request) | ${hf(h.luoctl_version)} |`);
    if (h.probe_inprocess) out.push(`| fresh connection → STATUS reply, in process | p50 ${h.probe_inprocess.p50_us} µs, p99 ${h.probe_inprocess.p99_us} µs |`);
    out.push(`| persistent client, one STATUS at a time | ${p.sequential.per_s} req/s; RTT p50 ${p.sequential.rtt_p50_us} µs, p99 ${p.sequential.rtt_p99_us} µs; luod CPU ${p.sequential.luod_cpu_us_per_request} µs/req |`);
    out.push(`| persistent client, ${p.pipelined.window} in flight | ${p.pipelined.per_s} req/s; luod CPU ${p.pipelined.luod_cpu_us_per_request} µs/req |`);
    out.push(`| \`luoctl status\` with ${h.with_clients.n} subscribed clients | ${hf(h.with_clients.luoctl_status)} (subscribing them: ${fmt(h.with_clients.subscribe_ms)} ms, generator CPU ${fmt(h.with_clients.subscribe_cpu_ms)} ms) |`);
    out.push("");
  }
  out.push(`### Footprint\n`);
  out.push(`| what | host | VM (TCG) |`);
  out.push(`|---|---|---|`);
  const mib = (kib: number | undefined) => (kib ? `${(kib / 1024).toFixed(1)} MiB` : "–");
  const b1 = r.vm?.boots?.find((b: Json) => b.boot === 1);
  const big = s.barrier[s.barrier.length - 1];
  if (h) out.push(`| binary \`dist/luo\` | ${(h.binary_bytes / 2 ** 20).toFixed(1)} MiB (${h.binary_bytes} bytes) | same file |`);
  out.push(`| luod start → socket accepts | ${h ? fmtS(h.startup.listening_ms) + " ms" : "–"} | ${fmt(b1?.luod_start?.listening_ms)} ms (warm page cache; reading the binary cold over 9p took ${fmt(b1?.warm_binary_ms)} ms) |`);
  out.push(`| luod start → first STATUS reply | ${h ? fmtS(h.startup.first_reply_ms) + " ms" : "–"} | ${fmt(b1?.luod_start?.first_reply_ms)} ms |`);
  out.push(`| luod RSS idle | ${mib(h?.idle.rss_kib)} (${h?.idle.threads} threads; ${h?.idle.cpu_ms_per_5s} ms CPU in 5 s) | ${mib(b1?.luod_idle?.rss_kib)} |`);
  out.push(`| luod RSS after ${h ? "~150k STATUS requests" : "load"} | ${mib(h?.after_request_load.rss_kib)} | – |`);
  out.push(`| luod RSS with ${h?.with_clients.n ?? big?.n ?? "–"} clients subscribed | ${mib(h?.with_clients.rss.rss_kib)} (peak ${mib(h?.with_clients.rss.hwm_kib)}) | ${mib(big?.rss_subscribed?.rss_kib)} |`);
  out.push(`| luod RSS after ${reps + 1} dry runs with ${big?.n ?? "–"} clients | – | ${mib(big?.rss_after?.rss_kib)} (peak ${mib(big?.rss_after?.hwm_kib)}) |`);
  out.push("");

  out.push(`### Targets\n`);
  const big1000 = s.barrier.find((b: Json) => b.n === 1000) ?? big;
  const rest1000 = s.restore.find((x: Json) => x.n === 1000) ?? s.restore[s.restore.length - 1];
  const yes = (ok: boolean | null) => (ok === null ? "not measured" : ok ? "**met**" : "**not met**");
  const barrierRatio = big1000?.luod && big1000?.floor ? big1000.luod.median / big1000.floor.median : null;
  // the targets of issue 19 (docs/performance.md, "Fifth round: the C load generator")
  const preparedRatio = big1000?.prepared?.luod && big1000?.floor ? big1000.prepared.luod.median / big1000.floor.median : null;
  const preparedRuns: number[] = big1000?.prepared?.run_ratios ?? [];
  const preparedWithin = preparedRuns.filter((x) => x <= 1.5).length;
  const restoreRatio = rest1000?.floor_process ? rest1000.luod_total / rest1000.floor_process : null;
  const statusRatio = h?.probe ? h.luoctl_status.mean_ms / h.probe.mean_ms : null;
  // results saved before the fifth round had the Bun floor (no CPU of its own reported)
  const floorName = s.barrier.some((b: Json) => b.floor_cpu) || s.restore.some((x: Json) => x.floor_cpu !== null) ? "the C floor" : "the (Bun) floor";
  out.push(`| target | measured | |`);
  out.push(`|---|---|---|`);
  out.push(`| barrier of prepared clients at ${big1000?.n ?? "–"} within 1.5× of ${floorName} in at least 5 of 6 runs | ${preparedRuns.length ? `${preparedWithin} of ${preparedRuns.length} (${preparedRuns.map((x) => x.toFixed(2) + "×").join(", ")}); median ${preparedRatio?.toFixed(2)}×` : "–"} | ${yes(preparedRuns.length ? preparedWithin >= Math.ceil((5 / 6) * preparedRuns.length) : null)} |`);
  out.push(`| (not a target) usual clients at ${big1000?.n ?? "–"} | ${barrierRatio ? barrierRatio.toFixed(2) + "×" : "–"} | |`);
  out.push(`| restore at ${rest1000?.n ?? "–"} clients, from luod's start, within 3× of ${floorName} (as a process, from its spawn) | ${restoreRatio ? restoreRatio.toFixed(2) + "×" : "–"} (${fmt(rest1000?.luod_total)} / ${fmt(rest1000?.floor_process)} ms; against the floor's ioctls alone: ${rest1000?.floor ? (rest1000.luod_total / rest1000.floor).toFixed(1) + "×" : "–"}) | ${yes(restoreRatio === null ? null : restoreRatio <= 3)} |`);
  out.push(`| \`luoctl status\` within 1.1× of the minimal Bun one-shot client, whole process, same run | ${statusRatio ? `${statusRatio.toFixed(2)}× (${h!.luoctl_status.mean_ms} / ${h!.probe.mean_ms} ms mean)` : "–"} | ${yes(statusRatio === null ? null : statusRatio <= 1.1)} |`);
  const idle = [h?.idle.rss_kib, b1?.luod_idle?.rss_kib].filter((x): x is number => x !== undefined);
  out.push(`| luod idle RSS under 64 MiB (host and VM) | ${mib(h?.idle.rss_kib)} host, ${mib(b1?.luod_idle?.rss_kib)} VM | ${yes(idle.length ? idle.every((x) => x < 64 * 1024) : null)} |`);
  return out.join("\n");
}

// ---- main ----------------------------------------------------------------------------------

async function main(): Promise<number> {
  let r: Json;
  if (args.includes("--from")) {
    r = JSON.parse(readFileSync(opt("from", ""), "utf8"));
  } else {
    const stamp = new Date().toISOString().replace(/[:.]/g, "-");
    const bin = join(root, ".vm", `bench-bin-${process.pid}`);
    await prepare(bin);
    r = { date: new Date().toISOString(), machine: machine(), clients, reps, bytes, luo: relative(root, resolve(opt("luo", join(root, "dist", "luo")))), git: (await run(["git", "-C", root, "rev-parse", "--short", "HEAD"])).stdout.trim() };
    try {
      if (!flag("skip-host")) {
        r.host = await hostBench({ bin, clients: Math.max(...clients), reps, log });
      }
      if (args.includes("--vm-dir")) r.vm = readVm(resolve(opt("vm-dir", "")));
      else if (!flag("skip-vm")) r.vm = await vmBench(bin, join(root, ".vm", `bench-${stamp}`));
    } finally {
      rmSync(bin, { recursive: true, force: true });
    }
    const outFile = opt("out", join(root, ".vm", "bench-results", `${stamp}.json`));
    mkdirSync(resolve(outFile, ".."), { recursive: true });
    writeFileSync(outFile, JSON.stringify(r, null, 1));
    log(`results: ${outFile}`);
  }
  if (json) console.log(JSON.stringify({ ...r, summary: summarize(r) }, null, 1));
  else console.log(markdown(r));
  return r.vm && r.vm.exit_code !== 0 && r.vm.exit_code !== undefined ? 1 : 0;
}

process.exit(await main());

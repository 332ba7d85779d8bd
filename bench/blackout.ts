// The tenant's blackout: idle guest VMs, each an unmodified QEMU under its own luo-qemu, through
// real live updates (luoctl kexec) in the QEMU test VM; each VM's downtime (QMP stop → cont) split
// into phases, and luod's share of it. See docs/performance.md, "Fifth round: the tenant's blackout".
//
//   node_modules/.bin/bun bench/blackout.ts [--vms 1,4,8] [--memory 16M] [--mem 3G]
//        [--vm-timeout 2400] [--json] [--out FILE] [--from FILE] [--vm-dir DIR] [--luo FILE]
//
//   --vms       VM counts, one live update each, in one VM run (the VMs of one count run on into the next)
//   --memory    each guest's RAM (luo-qemu --memory); --mem: the test VM's
//   --out       where to save the raw results (default .vm/bench-results/<time>-blackout.json)
//   --from      print the tables of a saved result instead of measuring
//   --vm-dir    read a finished run's work dir instead of booting one
//   --luo       the binary to measure (default dist/luo)
//
// The guest is examples/qemu's counter guest built --idle (it halts after filling its RAM pattern):
// a busy one would keep the test VM's two vCPUs saturated with 8 of them.
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join, relative, resolve } from "node:path";
import { blackouts, parseConsole, type Json, type UpdateBlackout, type VmBlackout } from "./lib/blackout";
import { benchArgs, copyBinary, machine, round, run } from "./lib/common";

const root = resolve(import.meta.dir, "..");
const { args, flag, opt } = benchArgs(import.meta.path, [3, 16]);
const log = (s: string) => console.error(s);

async function prepare(dir: string): Promise<void> {
  copyBinary(resolve(opt("luo", join(root, "dist", "luo"))), dir, ["luod", "luoctl", "luo-qemu"]);
  const r = await run(["sh", join(root, "examples/qemu/build-guest.sh"), join(dir, "idle-guest.bin"), "--idle"]);
  if (r.code !== 0) throw new Error(`building the idle guest: ${r.stderr.trim()}`);
}

async function vmRun(bin: string, workdir: string): Promise<number> {
  const t0 = performance.now();
  const cmd = [
    join(root, "scripts/vm/run-job.sh"), join(root, "bench/blackout-job.sh"), "-p", join(bin, "idle-guest.bin"),
    "-m", opt("mem", "3G"), "-t", opt("vm-timeout", "2400"),
    "-e", `BLACKOUT_VMS=${opt("vms", "1,4,8")}`, "-e", `BLACKOUT_MEMORY=${opt("memory", "16M")}`, "-e", `BENCH_DIST=${bin}`,
  ];
  log(`vm: ${cmd.join(" ")}`);
  const proc = Bun.spawn(cmd, { env: { ...process.env, LUO_VM_WORKDIR: workdir }, stdout: "inherit", stderr: "inherit" });
  const code = await proc.exited;
  log(`vm: exit ${code} after ${round((performance.now() - t0) / 1000, 1)} s`);
  return code;
}

/** The console and luod's status after each boot, analysed; the raw inputs kept beside. */
function readRun(workdir: string): Json {
  const serial = readFileSync(join(workdir, "serial.log"), "utf8");
  const dir = join(workdir, "share", "blackout");
  const statuses: Record<number, Json> = {};
  for (const f of existsSync(dir) ? readdirSync(dir) : []) {
    const m = /^status-boot(\d+)\.json$/.exec(f);
    if (m) statuses[Number(m[1])] = JSON.parse(readFileSync(join(dir, f), "utf8"));
  }
  const boots = parseConsole(serial);
  const guest = /BLACKOUT: boot 1 stage \d+, (\d+) vCPU, MemTotal: (\d+) kB/.exec(serial);
  return {
    workdir: relative(root, workdir),
    guest: guest ? { nproc: Number(guest[1]), mem_mib: Math.round(Number(guest[2]) / 1024) } : null,
    boots,
    previous_updates: Object.fromEntries(Object.entries(statuses).map(([b, s]) => [b, s.previous_update ?? s.status?.previous_update ?? null])),
    updates: blackouts(boots, statuses),
  };
}

// ---- report --------------------------------------------------------------------------------

const s1 = (ms: number) => (Number.isFinite(ms) ? (ms / 1000).toFixed(2) : "–");
const pct = (x: number) => (Number.isFinite(x) ? `${(x * 100).toFixed(1)}%` : "–");
const median = (xs: number[]) => {
  const v = [...xs].sort((a, b) => a - b);
  return v.length % 2 ? v[v.length >> 1]! : (v[v.length / 2 - 1]! + v[v.length / 2]!) / 2;
};

const COLUMNS: [string, (v: VmBlackout) => string][] = [
  ["blackout", (v) => s1(v.total)],
  ["pause + save", (v) => s1(v.pause_save)],
  ["other VMs' saves", (v) => s1(v.wait_others)],
  ["luod barrier", (v) => s1(v.luod_barrier)],
  ["kernel", (v) => s1(v.kernel)],
  ["init → luod", (v) => s1(v.init_to_luod)],
  ["luod start", (v) => s1(v.luod_start)],
  ["→ luo-qemu", (v) => s1(v.listening_to_luoqemu)],
  ["luo-qemu → CLAIMED", (v) => s1(v.luoqemu_to_claimed)],
  ["of it luod's replies", (v) => s1(v.luod_replies)],
  ["CLAIMED → cont", (v) => s1(v.claimed_to_cont)],
  ["luod share", (v) => pct(v.luod_share)],
  ["luod's own", (v) => pct(v.luod_own_share)],
];

function row(cells: string[]): string {
  return `| ${cells.join(" | ")} |`;
}

export function markdown(r: Json): string {
  const out: string[] = [];
  const g = r.vm?.guest;
  out.push(`Tenant blackout (QMP stop → cont), seconds, host clock; ${r.date}, commit ${r.git}, load average ${r.loadavg_before.join(" ")} → ${r.loadavg_after.join(" ")}`);
  out.push(`* host: ${r.machine.nproc} × ${r.machine.cpu}; test VM: QEMU TCG, ${g?.nproc ?? "?"} vCPU, ${g?.mem_mib ?? "?"} MiB; each guest ${r.memory} RAM (idle counter guest), nested TCG`);
  out.push("");
  out.push(row(["VMs", "VM", ...COLUMNS.map(([h]) => h)]));
  out.push(row(["---", "---", ...COLUMNS.map(() => "---")]));
  for (const u of (r.vm?.updates ?? []) as UpdateBlackout[]) {
    for (const v of u.per_vm) out.push(row([String(u.vms), `vm-${v.vm}`, ...COLUMNS.map(([, f]) => f(v))]));
    if (u.per_vm.length > 1) {
      const med = (k: keyof VmBlackout) => median(u.per_vm.map((v) => v[k] as number));
      const fake = Object.fromEntries(Object.keys(u.per_vm[0]!).map((k) => [k, med(k as keyof VmBlackout)])) as unknown as VmBlackout;
      out.push(row([String(u.vms), "median", ...COLUMNS.map(([, f]) => f(fake))]));
    }
  }
  out.push("");
  out.push(row(["VMs", "luod: last READY → reboot()", "of it manifest", "luod start → listening", "reboot() → kexec (old kernel)", "kexec → /init (new kernel)", "worst VM: luod share", "checks"]));
  out.push(row(["---", "---", "---", "---", "---", "---", "---", "---"]));
  for (const u of (r.vm?.updates ?? []) as UpdateBlackout[]) {
    const t = u.luod.timings;
    const manifest = typeof t.manifest_preserved_ms === "number" && typeof t.all_ready_ms === "number" ? t.manifest_preserved_ms - t.all_ready_ms : NaN;
    const worst = Math.max(...u.per_vm.map((v) => v.luod_share));
    const ok = u.checks.filter((c) => /MARKER ok PATTERN ok .*BOOT 1$/.test(c)).length;
    out.push(row([String(u.vms), s1(u.luod.commit_ms ?? NaN), s1(manifest), s1(u.luod.start_ms ?? NaN), s1(u.kernel.reboot_to_kexec_ms ?? NaN), s1(u.kernel.kexec_to_init_ms ?? NaN), pct(worst), `${ok}/${u.vms} RAM intact, not rebooted`]));
  }
  return out.join("\n");
}

async function main(): Promise<number> {
  let r: Json;
  if (args.includes("--from")) {
    r = JSON.parse(readFileSync(opt("from", ""), "utf8"));
  } else {
    const stamp = new Date().toISOString().replace(/[:.]/g, "-");
    r = {
      date: new Date().toISOString(), machine: machine(), vms: opt("vms", "1,4,8"), memory: opt("memory", "16M"),
      luo: relative(root, resolve(opt("luo", join(root, "dist", "luo")))),
      git: (await run(["git", "-C", root, "rev-parse", "--short", "HEAD"])).stdout.trim(),
      loadavg_before: loadavg().map((x) => round(x)),
    };
    let code = 0;
    if (args.includes("--vm-dir")) {
      r.vm = readRun(resolve(opt("vm-dir", "")));
    } else {
      const bin = join(root, ".vm", `blackout-bin-${process.pid}`);
      await prepare(bin);
      const workdir = join(root, ".vm", `blackout-${stamp}`);
      code = await vmRun(bin, workdir);
      r.vm = readRun(workdir);
      rmSync(bin, { recursive: true, force: true });
    }
    r.vm.exit_code = code;
    r.loadavg_after = loadavg().map((x) => round(x));
    const outFile = opt("out", join(root, ".vm", "bench-results", `${stamp}-blackout.json`));
    mkdirSync(resolve(outFile, ".."), { recursive: true });
    writeFileSync(outFile, JSON.stringify(r, null, 1) + "\n");
    log(`raw results: ${relative(root, outFile)}`);
  }
  console.log(flag("json") ? JSON.stringify(r, null, 1) : markdown(r));
  return r.vm?.exit_code ? 1 : 0;
}

if (import.meta.main) process.exit(await main());

// The peer benchmark: systemd's own fd store across a kexec next to luod, in the systemd VM
// (docs/performance.md, "Fifth round: the peer (systemd's fd store)").
//
//   node_modules/.bin/bun bench/peer.ts [--plan s10,s100,d10,d100,p10,p100] [--mib 1] [--mem 3G]
//        [--vm-timeout 3600] [--out FILE] [--from FILE] [--vm-dir DIR] [--json]
//
//   --plan      one kexec per step (bench/peer/peer-job.sh): sN = N fd-store services and N luod
//               clients in one `luoctl kexec` through systemd; dN = N luod clients, luod in direct
//               mode; pN = N fd-store services alone (the peer beside dN)
//   --mib       each memfd's size
//   --out       where to save the raw results (default bench/results/<date>-<commit>-peer.json)
//   --from      print the tables of a saved result instead of measuring
//   --vm-dir    take the results from a finished run's work dir instead of booting one
//
// Needs the Debian package (`node_modules/.bin/bun scripts/package.ts`) and gcc with a static libc:
// the client (bench/peer/peer-client.c with examples/c/luo_client.c) is built here and copied in.
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { benchArgs, machine, run } from "./lib/common";
import { markdown, ratios, rows, type PeerStep } from "./peer/summary";

const root = resolve(import.meta.dir, "..");
const { args, opt } = benchArgs(import.meta.path, [3, 15]);
const log = (s: string) => console.error(s);

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** The client, static: the guest is Debian sid, the host may have an older glibc. */
async function buildClient(dir: string): Promise<string> {
  const out = join(dir, "luo-peer-client");
  const r = await run(["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-static", "-I", join(root, "examples/c"), "-o", out,
    join(root, "bench/peer/peer-client.c"), join(root, "examples/c/luo_client.c")]);
  if (r.code !== 0) throw new Error(`gcc bench/peer/peer-client.c: ${r.stderr}`);
  return out;
}

function readSteps(workdir: string): PeerStep[] {
  const dir = join(workdir, "share", "peer");
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith(".json"))
    .map((f) => JSON.parse(readFileSync(join(dir, f), "utf8")) as PeerStep);
}

async function vmRun(plan: string[], workdir: string): Promise<Json> {
  mkdirSync(workdir, { recursive: true });
  const client = await buildClient(workdir);
  const t0 = performance.now();
  const cmd = [join(root, "scripts/vm/run-job.sh"), "--systemd", join(root, "bench/peer/peer-job.sh"),
    "-p", client, "-p", join(root, "bench/peer/luo-peer-fdstore@.service"), "-p", join(root, "bench/peer/luo-peer-luod@.service"),
    "-m", opt("mem", "3G"), "-t", opt("vm-timeout", "3600"), "-e", `PEER_PLAN=${plan.join(" ")}`, "-e", `PEER_MIB=${opt("mib", "1")}`];
  log(`vm: ${cmd.join(" ")}`);
  const proc = Bun.spawn(cmd, { env: { ...process.env, LUO_VM_WORKDIR: workdir }, stdout: "inherit", stderr: "inherit" });
  const code = await proc.exited;
  log(`vm: exit ${code} after ${Math.round((performance.now() - t0) / 1000)} s`);
  return { exit_code: code, workdir: relative(root, workdir), steps: readSteps(workdir) };
}

async function main(): Promise<number> {
  let r: Json;
  if (args.includes("--from")) {
    r = JSON.parse(readFileSync(opt("from", ""), "utf8"));
  } else {
    const plan = opt("plan", "s10,s100,d10,d100,p10,p100").split(",").filter(Boolean);
    const git = (await run(["git", "-C", root, "rev-parse", "--short", "HEAD"])).stdout.trim();
    const date = new Date().toISOString();
    const loadBefore = readFileSync("/proc/loadavg", "utf8").trim();
    const vm = args.includes("--vm-dir")
      ? { workdir: opt("vm-dir", ""), steps: readSteps(resolve(opt("vm-dir", ""))) }
      : await vmRun(plan, join(root, ".vm", `peer-${date.replace(/[:.]/g, "-")}`));
    vm.steps.sort((a: PeerStep, b: PeerStep) => plan.indexOf(a.step) - plan.indexOf(b.step));
    if (vm.steps.length === 0) {
      // a run that measured nothing (the VM did not start, an old package) leaves no results file
      log(`no step was measured (VM exit ${"exit_code" in vm ? vm.exit_code : "unknown"}): nothing saved`);
      return 1;
    }
    r = { version: 1, date, git, machine: machine(), load_before: loadBefore, load_after: readFileSync("/proc/loadavg", "utf8").trim(), plan, mib: Number(opt("mib", "1")), vm };
    const outFile = opt("out", join(root, "bench", "results", `${date.slice(0, 10)}-${git}-peer.json`));
    mkdirSync(resolve(outFile, ".."), { recursive: true });
    writeFileSync(outFile, JSON.stringify(r, null, 1) + "\n");
    log(`results: ${outFile}`);
  }
  const steps: PeerStep[] = r.vm.steps;
  if (args.includes("--json")) console.log(JSON.stringify({ rows: rows(steps), ratios: ratios(rows(steps)) }, null, 1));
  else console.log(`${r.date}, commit ${r.git}, host load ${r.load_before} → ${r.load_after}\n\n${markdown(steps)}`);
  return r.vm.exit_code === undefined || r.vm.exit_code === 0 ? 0 : 1;
}

process.exit(await main());

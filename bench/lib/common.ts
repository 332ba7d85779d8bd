// Helpers shared by the host and guest halves of the benchmark: starting luod, one-shot requests,
// RSS, and summary statistics.
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, symlinkSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Subprocess } from "bun";
import { EventLoop } from "../../src/kernel/epoll";
import { Connection } from "../../src/wire/connection";
import { unixConnect } from "../../src/kernel/unix";
import { closeFd } from "../../src/kernel/fd";

export interface Stats {
  n: number;
  median: number;
  min: number;
  max: number;
  /** (max - min) / median: how noisy the repetitions were. */
  spread: number;
}

export function stats(xs: number[]): Stats | null {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const mid = v.length >> 1;
  const median = v.length % 2 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
  return { n: v.length, median, min: v[0]!, max: v[v.length - 1]!, spread: median > 0 ? (v[v.length - 1]! - v[0]!) / median : 0 };
}

export function percentile(xs: number[], p: number): number {
  const v = [...xs].sort((a, b) => a - b);
  return v[Math.min(v.length - 1, Math.floor((p / 100) * v.length))]!;
}

export const round = (x: number, digits = 2) => Math.round(x * 10 ** digits) / 10 ** digits;

export interface Rss {
  rss_kib: number;
  hwm_kib: number;
  threads: number;
}

/** VmRSS, VmHWM (peak) and Threads of a process, from /proc/PID/status. */
export function rssOf(pid: number): Rss {
  const s = readFileSync(`/proc/${pid}/status`, "utf8");
  const num = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, "m").exec(s)?.[1] ?? NaN);
  return { rss_kib: num("VmRSS"), hwm_kib: num("VmHWM"), threads: num("Threads") };
}

export interface LuodProcess {
  proc: Subprocess;
  pid: number;
  /** performance.now() at spawn, at the first successful connect. */
  spawnedAt: number;
  listeningAt: number;
}

/**
 * Spawns luod (the `luod` symlink next to `bin`), waits until its socket accepts a connection.
 * Polls every `pollMs` (a stat, then a connect once the file exists).
 */
export async function startLuod(opts: {
  bin: string; socket: string; stateDir: string; log: string; extra?: string[]; pollMs?: number; timeoutMs?: number;
}): Promise<LuodProcess> {
  rmSync(opts.socket, { force: true });
  const spawnedAt = performance.now();
  const proc = Bun.spawn([`${opts.bin}/luod`, "--socket", opts.socket, "--state-dir", opts.stateDir, "--max-connections", "8192", ...(opts.extra ?? [])], {
    stdin: "ignore", stdout: "ignore", stderr: Bun.file(opts.log),
  });
  const deadline = spawnedAt + (opts.timeoutMs ?? 60_000);
  for (;;) {
    if (existsSync(opts.socket)) {
      try {
        closeFd(unixConnect(opts.socket));
        const listeningAt = performance.now();
        return { proc, pid: proc.pid, spawnedAt, listeningAt };
      } catch {
        // bound but not listening yet, or stale
      }
    }
    if (proc.exitCode !== null) throw new Error(`luod exited with ${proc.exitCode} at start; see ${opts.log}`);
    if (performance.now() > deadline) throw new Error(`luod did not listen within ${opts.timeoutMs ?? 60_000} ms`);
    await Bun.sleep(opts.pollMs ?? 2);
  }
}

export async function stopLuod(l: LuodProcess): Promise<void> {
  l.proc.kill("SIGTERM");
  await l.proc.exited;
}

/** Replies (STATUS, LIST) may be long: luod allows 2 MiB (src/wire/framing.ts MAX_REPLY_BYTES). */
export const REPLY_LIMIT = 4 * 1024 * 1024;

/** One request on a fresh connection; resolves with the first reply line. */
export function request(loop: EventLoop, socket: string, obj: Record<string, unknown>, timeoutMs = 60_000): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    let done = false;
    const timer = setTimeout(() => finish(new Error(`${String(obj.cmd)}: no reply in ${timeoutMs} ms`)), timeoutMs);
    const conn = new Connection(unixConnect(socket), loop, {
      onMessage: (msg, fds) => {
        for (const fd of fds) conn.close(`unexpected fd ${fd}`);
        if (msg.reply !== undefined) finish(null, msg);
      },
      onClose: (reason) => finish(new Error(`${String(obj.cmd)}: connection closed: ${reason}`)),
    }, { maxLineBytes: REPLY_LIMIT });
    function finish(err: Error | null, msg?: Record<string, unknown>) {
      if (done) return;
      done = true;
      clearTimeout(timer);
      conn.close("done");
      if (err) reject(err);
      else resolve(msg!);
    }
    conn.send(obj);
  });
}

/** Runs a command, returns wall time (ms), exit code, stdout, stderr. */
export async function run(cmd: string[], opts: { stdout?: "pipe" | "inherit" | ReturnType<typeof Bun.file> } = {}) {
  const t0 = performance.now();
  const proc = Bun.spawn(cmd, { stdin: "ignore", stdout: opts.stdout ?? "pipe", stderr: "pipe" });
  const [out, err] = await Promise.all([
    proc.stdout instanceof ReadableStream ? new Response(proc.stdout).text() : Promise.resolve(""),
    new Response(proc.stderr).text(),
  ]);
  const code = await proc.exited;
  const ms = performance.now() - t0;
  const ru = proc.resourceUsage();
  const cpuMs = ru ? Number(ru.cpuTime.user + ru.cpuTime.system) / 1000 : NaN;
  return { ms, code, stdout: out, stderr: err, cpuMs };
}

/** Last JSON line of an output that has some. */
export function lastJsonLine(text: string): Record<string, unknown> | null {
  const lines = text.trim().split("\n").reverse();
  for (const l of lines) {
    try {
      return JSON.parse(l);
    } catch {
      // not JSON
    }
  }
  return null;
}

/**
 * Compiles the C load generator and the floor (bench/c) into dir: luo-swarm, luo-floor. Linked
 * against the host's libc: the VM runs them through `hostrun` (scripts/vm/README.md).
 */
export async function buildGenerators(dir: string): Promise<void> {
  const src = resolve(import.meta.dir, "..", "c");
  const client = resolve(import.meta.dir, "..", "..", "examples", "c", "luo_client.c");
  for (const name of ["swarm", "floor"]) {
    const r = await run([process.env.CC ?? "gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", join(dir, `luo-${name}`), join(src, `${name}.c`), client]);
    if (r.code !== 0) throw new Error(`compiling bench/c/${name}.c: ${r.stderr.trim()}`);
  }
}

export function machine() {
  const cpu = readFileSync("/proc/cpuinfo", "utf8");
  const model = /^model name\s*:\s*(.*)$/m.exec(cpu)?.[1] ?? "unknown";
  const mem = /^MemTotal:\s+(\d+)/m.exec(readFileSync("/proc/meminfo", "utf8"))?.[1];
  return {
    nproc: navigator.hardwareConcurrency,
    cpu: model,
    kernel: readFileSync("/proc/sys/kernel/osrelease", "utf8").trim(),
    mem_mib: mem ? Math.round(Number(mem) / 1024) : null,
    bun: Bun.version,
  };
}

/** CPU time of every thread of a process, in ms, by thread name (same names summed). */
export function threadCpu(pid: number): Record<string, number> {
  const out: Record<string, number> = {};
  let tids: string[] = [];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const s = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
      const close = s.lastIndexOf(")");
      const name = s.slice(s.indexOf("(") + 1, close);
      const f = s.slice(close + 2).split(" "); // f[0] is field 3 (state)
      const ms = ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK; // utime, stime: fields 14, 15
      out[name] = (out[name] ?? 0) + ms;
    } catch {
      // the thread ended
    }
  }
  return out;
}

/** b - a per thread name, and the total. */
export function cpuDelta(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  let total = 0;
  for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
    const d = (b[k] ?? 0) - (a[k] ?? 0);
    if (d !== 0) out[k] = d;
    total += d;
  }
  out.total = total;
  return out;
}

const CLK_TCK = 100;

/**
 * A bench driver's command line: `--name VALUE` options and `--flags`. `--help`/`-h` prints the
 * usage, lines [from, to) of the driver's header comment, and exits.
 */
export function benchArgs(driverPath: string, usageLines: [number, number], argv = process.argv.slice(2)) {
  const flag = (name: string) => argv.includes(`--${name}`);
  const opt = (name: string, fallback: string) => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1]! : fallback;
  };
  if (flag("help") || argv.includes("-h")) {
    console.log(readFileSync(driverPath, "utf8").split("\n").slice(...usageLines).map((l) => l.replace(/^\/\/ ?/, "")).join("\n"));
    process.exit(0);
  }
  return { args: argv, flag, opt };
}

/**
 * A private copy of the binary to measure in a fresh `dir`, with a symlink per personality: a
 * rebuild of dist/luo during the run cannot change the binary under it.
 */
export function copyBinary(dist: string, dir: string, personalities: readonly string[]): void {
  if (!existsSync(dist)) throw new Error(`${dist} is missing: build it with \`node_modules/.bin/bun scripts/build-binary.ts\``);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  copyFileSync(dist, join(dir, "luo"));
  for (const name of personalities) symlinkSync("luo", join(dir, name));
}

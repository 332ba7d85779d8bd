// Helpers for integration tests that run the compiled binary (dist/luo, built by
// scripts/build-binary.ts; `npm test` builds it first) on this host.
import { existsSync, mkdtempSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Subprocess } from "bun";

export const REPO = resolve(import.meta.dir, "../..");
export const DIST = join(REPO, "dist");
export const LUO = join(DIST, "luo");

export function requireBinary(): void {
  if (!existsSync(LUO)) throw new Error(`${LUO} is missing: run \`node_modules/.bin/bun scripts/build-binary.ts\` (npm test does)`);
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs dist/<name> (a personality symlink) to completion. */
export async function run(name: "luod" | "luoctl" | "luo-qemu" | "luo", args: string[], opts: { timeoutMs?: number } = {}): Promise<RunResult> {
  const proc = Bun.spawn([join(DIST, name), ...args], { stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const timer = setTimeout(() => proc.kill("SIGKILL"), opts.timeoutMs ?? 15_000);
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  return { code, stdout, stderr };
}

export interface Daemon {
  proc: Subprocess<"ignore", "pipe", "pipe">;
  socket: string;
  stateDir: string;
  dir: string;
  logs: () => string;
  stop: () => Promise<number>;
}

/** Starts dist/luod on a private socket and state dir; resolves once it listens. */
export async function startDaemon(extra: string[] = [], opts: { dir?: string; exe?: string } = {}): Promise<Daemon> {
  requireBinary();
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), "luod-it-"));
  const socket = join(dir, "luod.sock");
  const stateDir = join(dir, "state");
  const proc = Bun.spawn([opts.exe ?? join(DIST, "luod"), "--socket", socket, "--state-dir", stateDir, ...extra], {
    stdin: "ignore", stdout: "pipe", stderr: "pipe",
  });
  let log = "";
  const drain = async () => {
    const reader = proc.stderr.getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      log += new TextDecoder().decode(value);
    }
  };
  void drain();
  const started = Date.now();
  while (!log.includes("listening on")) {
    if (proc.exitCode !== null) throw new Error(`luod exited with ${proc.exitCode}: ${log}`);
    if (Date.now() - started > 10_000) throw new Error(`luod did not start listening within 10 s: ${log}`);
    await Bun.sleep(20);
  }
  return {
    proc, socket, stateDir, dir,
    logs: () => log,
    stop: async () => {
      proc.kill("SIGTERM");
      return await proc.exited;
    },
  };
}

export function openFdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

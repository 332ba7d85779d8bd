// The no-broker floor, bench/c/floor.c (what it measures is described there), run as a process.
import type { Subprocess } from "bun";

export interface FloorBarrier {
  n: number;
  cold: boolean;
  sessions_created_ms: number;
  preserved_ms: number;
  manifest_preserved_ms: number;
  sync_ms: number;
  /** Closing every session again (what a dry-run abort does). */
  release_ms: number;
  /** The floor's own CPU up to manifest_preserved_ms. */
  cpu_ms: number;
}

export interface FloorRestore {
  n: number;
  manifest_read_ms: number;
  sessions_retrieved_ms: number;
  /** Every memfd retrieved: the number to compare with luod's "every client holds its memfd". */
  fds_retrieved_ms: number;
  finish_ms: number;
  verified: number;
  cpu_ms: number;
}

/** reps+1 barriers of n sessions (the first cold) with one set of memfds reused across them. */
export function floorBarriers(bin: string, n: number, bytes: number, reps: number): FloorBarrier[] {
  const r = Bun.spawnSync([bin, "barrier", String(n), String(bytes), String(reps)], { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`luo-floor barrier ${n}: ${r.stderr.toString().trim()}`);
  return (JSON.parse(r.stdout.toString()) as { runs: FloorBarrier[] }).runs;
}

/**
 * One barrier whose sessions stay held by the floor process until the jump (the next boot's
 * restore floor). The process lives on; killing it before the jump drops the sessions.
 */
export async function floorHold(bin: string, n: number, bytes: number): Promise<{ result: FloorBarrier; proc: Subprocess }> {
  const proc = Bun.spawn([bin, "hold", String(n), String(bytes)], { stdin: "pipe", stdout: "pipe", stderr: "inherit" });
  let out = "";
  const dec = new TextDecoder();
  const reader = proc.stdout.getReader();
  while (!out.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`luo-floor hold ${n} ended (exit ${await proc.exited}) without a result`);
    out += dec.decode(value, { stream: true });
  }
  reader.releaseLock();
  return { result: JSON.parse(out.slice(0, out.indexOf("\n"))) as FloorBarrier, proc };
}

/**
 * After a live-update boot: `luo-floor restore` as a process of its own, timed from its spawn
 * (process_ms): what luod's total, which starts a process too, is compared with. null when the
 * previous boot held no floor sessions.
 */
export function floorRestore(bin: string): (FloorRestore & { process_ms: number }) | null {
  const t0 = performance.now();
  const r = Bun.spawnSync([bin, "restore"], { stdout: "pipe", stderr: "pipe" });
  const ms = performance.now() - t0;
  if (r.exitCode !== 0) throw new Error(`luo-floor restore: ${r.stderr.toString().trim()}`);
  const out = JSON.parse(r.stdout.toString()) as FloorRestore | null;
  return out && { ...out, process_ms: Math.round(ms * 100) / 100 };
}

// The C load generator (bench/c/swarm.c) against luod on this host, through bench/profile.ts
// (luod from source with the fake kernel: session fds are plain memfds, the generator makes no
// LUO ioctl). Correctness only, never speed: every client subscribes, answers every dry run's
// START_PRESERVATION with READY, sees ABORTED, and after the restart claims and finishes its
// session. The real ioctls and the floor (bench/c/floor.c) run in the VM bench (bench/run.ts).
import { describe, expect, test } from "bun:test";
import { resolve } from "node:path";

const GCC = Bun.which(process.env.CC ?? "gcc");
if (!GCC) console.warn("tests/integration/bench-generator: SKIPPING: gcc is missing");
const root = resolve(import.meta.dir, "..", "..");

async function profile(extra: string[]) {
  const proc = Bun.spawn([process.execPath, "bench/profile.ts", "--clients", "40", "--reps", "1", ...extra], { cwd: root, stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  expect({ code, err: code === 0 ? "" : err }).toEqual({ code: 0, err: "" });
  return JSON.parse(out);
}

describe.skipIf(!GCC)("the C load generator", () => {
  test("40 clients: every one READY in every dry run, then every one claims and finishes its session", async () => {
    const r = await profile([]);
    expect(r.subscribed).toBe(40);
    for (const run of r.barrier.runs) {
      expect(run.ok).toBe(true);
      expect(run.clients).toMatchObject({ ready_replies: 40, ok: true, errors: [] });
    }
    expect(r.restore).toMatchObject({ held: 40, finished: 40, errors: [] });
  }, 60_000);

  test("40 prepared clients: PREPARE gives each its session, the dry runs need no fd", async () => {
    const r = await profile(["--prepared"]);
    expect(r.prepared).toBe(40);
    for (const run of r.barrier.runs) expect(run.clients).toMatchObject({ ready_replies: 40, ok: true, errors: [] });
  }, 60_000);
});

// luoctl (the compiled binary) and the client library facing a luod that answers at random and
// always wrongly (tests/fuzz/hostile-answers.ts through tests/fixtures/hostile-luod.ts, mode
// random:SEED): garbage bytes, JSON of the wrong shape, wrong types, wrong reply names, broken
// errors, stray tags, lines over 2 MiB, fds nobody asked for (memfds, /dev/null, sockets),
// silence, a line that never ends, events and no reply. luoctl must exit 3 with exactly one line
// on stderr and nothing on stdout, never a raw control character; the library must reject with
// LuoProtocolError (EBADMSG) or LuoTimeoutError (ETIMEDOUT) and keep no fd.
//
//   LUO_FUZZ_SEED=N   replay (the seed is printed)
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { LuoClient } from "../../src/client/client";
import { LuoProtocolError, LuoTimeoutError } from "../../src/client/errors";
import { OneShotClient } from "../../src/client/oneshot";
import { REPO, requireBinary, run } from "../support/binary";
import { fdsOpenedSince, openFds } from "../support/open-fds";
import { hostileAnswer } from "./hostile-answers";
import { Rng } from "./generate";
import { fuzzSeed } from "./support";

const SEED = fuzzSeed();
const LUOCTL_RUNS = Number(process.env.LUO_FUZZ_LUOCTL_RUNS ?? 30);
const LIBRARY_CALLS = Number(process.env.LUO_FUZZ_LIBRARY_CALLS ?? 60);
const FIXTURE = join(REPO, "tests/fixtures/hostile-luod.ts");
/** Control characters a terminal would act on (the newline that ends a line excepted). */
const RAW_CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/;

const dir = mkdtempSync(join(tmpdir(), "hostile-luod-fuzz-"));
const socket = join(dir, "luod.sock");
let proc: Subprocess<"ignore", "pipe", "inherit"> | null = null;
/** Connections the fixture has accepted so far: the next one gets hostileAnswer(SEED, served, cmd). */
let served = 0;

afterAll(() => {
  proc?.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});

async function startHostile(): Promise<void> {
  proc = Bun.spawn([process.execPath, FIXTURE, socket, `random:${SEED}`], { stdout: "pipe", stderr: "inherit", stdin: "ignore" });
  const reader = proc.stdout.getReader();
  let out = "";
  while (!out.includes("listening")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`hostile luod exited: ${out}`);
    out += new TextDecoder().decode(value);
  }
  reader.releaseLock();
}

const QUICK: [args: string[], cmd: string][] = [
  [["status"], "STATUS"], [["list"], "LIST"], [["check"], "CHECK"], [["unload"], "UNLOAD"], [["abort"], "ABORT"],
  [["--json", "status"], "STATUS"], [["evict", "vm-1"], "EVICT"],
];

test("luoctl and the client library reject every random broken answer of a hostile luod, with one line, typed errors and no fd kept", async () => {
  requireBinary();
  console.log(`hostile luod fuzz: seed ${SEED}, ${LUOCTL_RUNS} luoctl runs, ${LIBRARY_CALLS} library calls (replay: LUO_FUZZ_SEED=${SEED} bun test tests/fuzz/hostile-luod-fuzz.test.ts)`);
  await startHostile();
  const rng = new Rng(SEED);
  const kinds = new Map<string, number>();
  const tally = (k: string) => kinds.set(k, (kinds.get(k) ?? 0) + 1);
  // luoctl: a quick command, or kexec --dry-run when the answer is not silence (kexec waits for
  // the READY deadline, not the reply timeout, and says so with exit 1)
  for (let i = 0; i < LUOCTL_RUNS; i++) {
    let [args, cmd] = rng.pick(QUICK);
    const next = hostileAnswer(SEED, served, "KEXEC");
    if (!next.silent && !next.either && rng.chance(0.2)) [args, cmd] = [["kexec", "--dry-run"], "KEXEC"];
    const answer = hostileAnswer(SEED, served, cmd);
    served++;
    tally(answer.kind);
    const ctx = `luoctl ${args.join(" ")} against a "${answer.kind}" answer (seed ${SEED}, connection ${served - 1})`;
    const t = performance.now();
    const r = await run("luoctl", ["--socket", socket, "--reply-timeout", "400ms", ...args], { timeoutMs: 20_000 });
    const took = performance.now() - t;
    expect(r.code, `${ctx}: ${r.stderr}`).toBe(3);
    if (args[0] === "--json") {
      expect(JSON.parse(r.stdout), ctx).toMatchObject({ ok: false });
    } else {
      expect(r.stdout, ctx).toBe("");
      expect(r.stderr, ctx).toMatch(/^luoctl: [^\n]*\n$/);
    }
    expect(r.stderr, ctx).not.toMatch(RAW_CONTROL);
    expect(r.stdout, ctx).not.toMatch(RAW_CONTROL);
    expect(r.stderr, ctx).not.toContain("internal error");
    // it reached the hostile luod, and judged its answer (not "cannot reach luod")
    expect(r.stderr + r.stdout, ctx).toMatch(answer.either ? /did not answer|ETIMEDOUT|invalid reply|EBADMSG/ : answer.silent ? /did not answer|ETIMEDOUT/ : /invalid reply|EBADMSG/);
    // --reply-timeout is a promise of every command: 400 ms, asserted with a generous bound
    expect(took, `${ctx}: seconds`).toBeLessThan(10_000);
  }
  // the library: the blocking one-shot client and the event-loop client, one connection per call
  const before = openFds();
  for (let i = 0; i < LIBRARY_CALLS; i++) {
    const cmd = rng.pick(["STATUS", "LIST", "CHECK"] as const);
    const answer = hostileAnswer(SEED, served, cmd);
    served++;
    tally(answer.kind);
    const oneShot = rng.chance(0.5);
    const ctx = `${oneShot ? "OneShotClient" : "LuoClient"} ${cmd} against a "${answer.kind}" answer (seed ${SEED}, connection ${served - 1})`;
    const call = (c: OneShotClient | LuoClient) => (cmd === "STATUS" ? c.status({ timeoutMs: 300 }) : cmd === "LIST" ? c.list({ timeoutMs: 300 }) : c.check({ timeoutMs: 300 }));
    const client = oneShot ? await OneShotClient.connect(socket) : await LuoClient.connect(socket);
    const e = await call(client).then(() => null, (x: unknown) => x);
    client.close();
    if (answer.either) {
      expect(e instanceof LuoTimeoutError || e instanceof LuoProtocolError, `${ctx}: ${String(e)}`).toBe(true);
    } else if (answer.silent) {
      expect(e, ctx).toBeInstanceOf(LuoTimeoutError);
      expect((e as LuoTimeoutError).code, ctx).toBe("ETIMEDOUT");
    } else {
      expect(e, ctx).toBeInstanceOf(LuoProtocolError);
      expect((e as LuoProtocolError).code, ctx).toBe("EBADMSG");
    }
  }
  // every fd the clients opened or received is closed (LuoClient's loop stops a moment later)
  let left = fdsOpenedSince(before);
  for (let i = 0; i < 200 && left.length > 0; i++) {
    await Bun.sleep(10);
    left = fdsOpenedSince(before);
  }
  expect(left, `fds the client library kept (seed ${SEED})`).toEqual([]);
  console.log(`hostile luod fuzz: answers ${[...kinds].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k} ${n}`).join(", ")}`);
}, 120_000);

// Every field the compiled luoctl prints with --json is documented in docs/protocol.md,
// "luoctl --json outputs", and every document carries json_version: the doc's tables are parsed
// here, and luoctl runs against the compiled luod (this host has no LUO kernel: status, list,
// check, unload, abort, discard, evict, --version and the errors) and against luod's parts in
// this process on the fake kernel (a live-update boot with a previous update and restored
// sessions, an update in progress, a dry run, and a LOAD whose image check is stubbed).
import { afterAll, beforeAll, describe, expect, spyOn, test } from "bun:test";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { REPO, requireBinary, run, startDaemon, type Daemon } from "../support/binary";
import { startInProcessLuod, type InProcessLuod } from "../support/in-process-luod";
import { LuoClient, closeFd } from "../../src/client";
import { FakeKernel } from "../../src/daemon/fake-kernel";
import { KernelLoader, type LoadedKernel } from "../../src/daemon/loader";
import { createLogger } from "../../src/daemon/log";
import { encodeManifest, MANIFEST_FORMAT, MANIFEST_VERSION } from "../../src/daemon/manifest";
import { INTERNAL_SESSION } from "../../src/wire/ids";

// ---- the doc: the fields of each output -----------------------------------------------------

/** The `name`s in the first column of each table under "## luoctl --json outputs", by "### " heading. */
function documentedFields(): Map<string, string[]> {
  const doc = readFileSync(join(REPO, "docs/protocol.md"), "utf8");
  const start = doc.indexOf("\n## luoctl --json outputs\n");
  expect(start).toBeGreaterThan(0);
  const section = doc.slice(start + 1, doc.indexOf("\n## ", start + 1));
  const out = new Map<string, string[]>();
  for (const part of section.split("\n### ").slice(1)) {
    const [heading, ...lines] = part.split("\n");
    const names = lines
      .filter((l) => l.startsWith("| `"))
      .flatMap((l) => [...l.split("|")[1]!.matchAll(/`([^`]+)`/g)].map((m) => m[1]!));
    for (const output of heading!.split(", ")) out.set(output.trim(), names);
  }
  return out;
}

/** Every field path of a document: `a.b`, `a[].b` (objects in arrays), a value that is no object its own path. */
function fieldPaths(x: unknown, prefix = ""): string[] {
  if (Array.isArray(x)) {
    const objects = x.filter((e) => typeof e === "object" && e !== null && !Array.isArray(e));
    if (!objects.length) return [prefix];
    return [...new Set(objects.flatMap((e) => fieldPaths(e, `${prefix}[]`)))];
  }
  if (typeof x === "object" && x !== null) {
    const entries = Object.entries(x);
    if (!entries.length) return [prefix];
    return entries.flatMap(([k, v]) => fieldPaths(v, prefix ? `${prefix}.${k}` : k));
  }
  return [prefix];
}

/** A path is documented when it is a field of the table, the start of one (a null object), or under a `map.*`. */
function undocumented(doc: unknown, documented: string[]): string[] {
  return fieldPaths(doc).filter((p) =>
    !documented.some((d) => d === p || d.startsWith(`${p}.`) || d.startsWith(`${p}[]`) || (d.endsWith(".*") && p.startsWith(d.slice(0, -1)))));
}

// ---- what luoctl printed, by output -----------------------------------------------------------

/** Each document luoctl printed (a line of stdout), under the name of the doc's table it belongs to. */
const printed: { output: string; args: string[]; doc: Record<string, unknown> }[] = [];

async function luoctl(output: string, args: string[]): Promise<Record<string, unknown>[]> {
  const r = await run("luoctl", [...args, "--json"], { timeoutMs: 20_000 });
  const docs = r.stdout.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
  for (const doc of docs) printed.push({ output, args, doc });
  return docs;
}

const uid = process.getuid?.() ?? 0;
const gid = process.getgid?.() ?? 0;
const log = createLogger({ write: () => {} });
let luod: Daemon;
let fake: InProcessLuod;

beforeAll(async () => {
  requireBinary();

  // 1. the compiled luod, without a LUO kernel: one client connected, one expected (it left without UNSUBSCRIBE)
  luod = await startDaemon(["--device", "/nonexistent/liveupdate"]);
  const s = ["--socket", luod.socket];
  const connected = await LuoClient.connect(luod.socket);
  await connected.subscribe("vm-on");
  const gone = await LuoClient.connect(luod.socket);
  await gone.subscribe("vm-gone");
  gone.close();
  await luoctl("status", ["status", ...s]);
  await luoctl("list", ["list", ...s]);
  await luoctl("check", ["check", ...s]);
  await luoctl("unload", ["unload", ...s]);
  await luoctl("abort", ["abort", ...s, "--reason", "none running"]);
  await luoctl("discard", ["discard", "vm-none", ...s]); // ENOENT: the error document
  await luoctl("evict", ["evict", "vm-gone", ...s]);
  await luoctl("kexec", ["kexec", ...s, "--timeout", "2s"]); // refused: no LUO device
  await luoctl("--version", ["--version", ...s]);
  await luoctl("--version", ["--version", "--socket", join(luod.dir, "none.sock")]);
  await luoctl("status", ["frobnicate", ...s]); // usage error
  await connected.unsubscribe();
  connected.close();

  // 2. luod on the fake kernel after a live-update boot, a kernel loaded: the previous update, a
  //    restored session, an update in progress, a dry run, a LOAD
  const kernel = new FakeKernel();
  kernel.loaded = true;
  const at = "2026-12-04T09:00:00.000Z";
  kernel.incoming.set("luod:vm-old/5", { retrieved: false });
  kernel.incoming.set(INTERNAL_SESSION, {
    retrieved: false,
    blob: encodeManifest({
      format: MANIFEST_FORMAT, version: MANIFEST_VERSION, luod: "test", attempt: 5, createdAt: at,
      kernel: { from: "7.2.12", next: null }, timings: { sessions_created_ms: 2, all_ready_ms: 9 },
      entries: [{ id: "vm-old", session: "luod:vm-old/5", uid, gid, pid: 4242, unit: "vm@old.service", subscribedAt: at, readyAt: at }],
    }),
  });
  const loaded: LoadedKernel = { version: "7.2.14", sha256: "ab".repeat(32), cmdline: "console=ttyS0 liveupdate=on", size: 1 << 20, initrdSize: null, loadedAt: at };
  fake = startInProcessLuod({ kernel, log, seed: (f) => f.write("loaded", loaded), maxConnections: 16, name: "luoctl-json" });
  const f = ["--socket", fake.socket];
  await luoctl("status", ["status", ...f]);
  const client = await LuoClient.connect(fake.socket);
  await client.subscribe("vm-1");
  const dryRun = luoctl("kexec", ["kexec", "--dry-run", "--timeout", "10s", ...f]);
  const session = await client.waitForSession({ timeoutMs: 10_000 });
  await luoctl("status", ["status", ...f]); // update in progress
  await luoctl("list", ["list", ...f]);
  await client.ready();
  await dryRun;
  closeFd(session.sessionFd);
  // LOAD: the image check is the loader's (tests/unit), stubbed here; the reply is dispatch's own
  const image = join(fake.dir, "vmlinuz");
  writeFileSync(image, "K");
  const stub = spyOn(KernelLoader.prototype, "load").mockResolvedValue({ ...loaded, initrdSize: 4096, warnings: ["a warning"] });
  await luoctl("load", ["load", image, "--initrd", image, "--cmdline", "console=ttyS0 liveupdate=on", ...f]);
  stub.mockRestore();
  await luoctl("evict", ["evict", "vm-1", ...f]);
  client.close();
}, 60_000);

afterAll(async () => {
  await luod?.stop();
  if (fake) {
    fake.stop();
    await fake.closed;
    rmSync(fake.dir, { recursive: true, force: true });
  }
  rmSync(luod?.dir ?? "/nonexistent", { recursive: true, force: true });
});

describe("luoctl --json: the doc and the output cannot drift", () => {
  test("docs/protocol.md has a table for every output luoctl prints, and every document was printed", () => {
    const documented = documentedFields();
    for (const o of ["Every document", "status", "list", "load", "unload", "check", "kexec", "abort", "discard", "evict", "--version"]) {
      expect([o, documented.get(o)?.length ?? 0]).not.toEqual([o, 0]);
    }
    expect(new Set(printed.map((p) => p.output)).size).toBe(10);
  });

  test("the check itself finds a field that is not in the table, in objects, arrays and maps", () => {
    const doc = { ok: true, kernel: { size: 1, extra: 2 }, clients: [{ id: "a", new_field: 1 }], timings: { x_ms: 1 }, initrd: null, waiting: [] };
    expect(undocumented(doc, ["ok", "kernel.size", "clients[].id", "timings.*", "initrd.size", "waiting"])).toEqual(["kernel.extra", "clients[].new_field"]);
  });

  test("every field luoctl printed is in the table of its output", () => {
    const documented = documentedFields();
    const common = documented.get("Every document")!;
    const missing = printed.flatMap((p) =>
      undocumented(p.doc, [...common, ...documented.get(p.output)!]).map((path) => `${p.output} (${p.args[0]}): ${path}`));
    expect([...new Set(missing)]).toEqual([]);
  });

  test("every document and every kexec line carries json_version 1", () => {
    expect(printed.length).toBeGreaterThan(15);
    expect(printed.filter((p) => p.doc.json_version !== 1)).toEqual([]);
  });

  test("the outputs that matter here were really exercised (not only errors)", () => {
    const docs = (output: string) => printed.filter((p) => p.output === output).map((p) => p.doc);
    expect(docs("kexec").map((d) => d.event ?? d.dry_run ?? d.ok)).toEqual(expect.arrayContaining(["PROGRESS", true]));
    expect(docs("load")).toEqual([expect.objectContaining({ ok: true, warnings: ["a warning"], initrd: { size: 4096 } })]);
    expect(docs("list").flatMap((d) => d.clients as { connected: boolean }[]).map((c) => c.connected)).toEqual(expect.arrayContaining([true, false]));
    expect(docs("status").some((d) => d.update !== null && typeof d.update === "object")).toBe(true);
    expect(docs("--version").map((d) => d.luod === null)).toEqual([false, true]);
  });

  test("STATUS's previous_update carries created_at and, deprecated, createdAt: the same time", () => {
    const status = printed.find((p) => p.output === "status" && p.doc.previous_update)!.doc;
    expect(status.previous_update).toEqual({
      attempt: 5, created_at: "2026-12-04T09:00:00.000Z", createdAt: "2026-12-04T09:00:00.000Z", from: "7.2.12",
      timings: { sessions_created_ms: 2, all_ready_ms: 9 },
    });
    expect(status.restored).toEqual([expect.objectContaining({ id: "vm-old", state: "unclaimed" })]);
  });

  test("luod says its protocol version in STATUS", () => {
    const status = printed.find((p) => p.output === "status" && (p.doc.luod as { stats?: unknown } | undefined)?.stats)!.doc;
    expect(status.luod).toMatchObject({ protocol: 1 });
  });
});

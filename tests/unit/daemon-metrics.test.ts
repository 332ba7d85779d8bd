// luod's Prometheus metrics (src/daemon/metrics.ts, metrics-file.ts; docs/daemon.md, "Metrics"):
// the text format, what luod counts, and the file writer. promtool's own check of a real luod's
// file is in tests/integration/luod-metrics.test.ts.
import { afterAll, describe, expect, test } from "bun:test";
import { lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LuodMetrics, escapeHelp, escapeLabelValue, formatMetrics, restoreDurationMs, type MetricsState } from "../../src/daemon/metrics";
import { MetricsFile, checkMetricsPath } from "../../src/daemon/metrics-file";
import { ConfigError } from "../../src/daemon/settings";
import { Broker } from "../../src/daemon/broker";
import { ABORT_REASONS } from "../../src/daemon/update";
import { FakeKernel } from "../../src/daemon/fake-kernel";
import { createLogger } from "../../src/daemon/log";
import { COMMANDS } from "../../src/wire/requests";
import { RecordingPeer } from "../support/fake-peer";
import { samples } from "../support/metrics-text";

const dir = mkdtempSync(join(tmpdir(), "luod-metrics-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const quiet = createLogger({ write: () => {} });
const START = Date.parse("2026-12-04T08:00:00Z");

function state(over: Partial<MetricsState> = {}): MetricsState {
  return {
    phase: "idle", clients: { subscribed: 0, disconnected: 0, prepared: 0, ready: 0 }, restored: [], previous: null,
    connections: { open: 0, accepted: 0, refused: 0 }, ...over,
  };
}

describe("the text format", () => {
  test("a label value has its backslashes, double quotes and line feeds escaped, and stays one line", () => {
    const text = formatMetrics([{ name: "luod_x", type: "gauge", help: "x", samples: [{ labels: { v: 'a\\b"c\nd' }, value: 1 }] }]);
    expect(text).toContain('luod_x{v="a\\\\b\\"c\\nd"} 1\n');
    expect(text.split("\n")).toHaveLength(4); // HELP, TYPE, the sample, the final newline
    expect(escapeLabelValue("plain")).toBe("plain");
  });

  test("HELP text has its backslashes and line feeds escaped; double quotes stay", () => {
    expect(escapeHelp('a\\b\n"c"')).toBe('a\\\\b\\n"c"');
  });

  test("values: integers and fractions as they are, NaN and the infinities in Prometheus's spelling", () => {
    const text = formatMetrics([1.5, 3, NaN, Infinity, -Infinity].map((value, i) => ({ name: `luod_v${i}`, type: "gauge" as const, help: "v", samples: [{ value }] })));
    expect(text.split("\n").filter((l) => !l.startsWith("#"))).toEqual(["luod_v0 1.5", "luod_v1 3", "luod_v2 NaN", "luod_v3 +Inf", "luod_v4 -Inf", ""]);
  });
});

describe("luod's metrics", () => {
  const metrics = () => new LuodMetrics({ version: "9.9.9", startedAtMs: START });

  test("every metric has HELP and TYPE lines before its samples, a luod_ name, counters end in _total, no series twice", () => {
    const m = metrics();
    const text = formatMetrics(m.families(state({ restored: [{ state: "unclaimed", restoredAt: new Date(START).toISOString(), changedAt: new Date(START).toISOString() }] })));
    const declared = new Map<string, string>();
    const helped = new Set<string>();
    const seen = new Set<string>();
    for (const line of text.trimEnd().split("\n")) {
      const help = /^# HELP (\S+) \S/.exec(line);
      const type = /^# TYPE (\S+) (gauge|counter)$/.exec(line);
      if (help) helped.add(help[1]!);
      else if (type) declared.set(type[1]!, type[2]!);
      else {
        const name = /^([a-z_]+)[{ ]/.exec(line)![1]!;
        expect(helped.has(name) && declared.has(name)).toBe(true);
        const series = line.slice(0, line.lastIndexOf(" "));
        expect(seen.has(series)).toBe(false);
        seen.add(series);
      }
    }
    expect([...helped].sort()).toEqual([...declared.keys()].sort());
    for (const [name, type] of declared) {
      expect(name).toStartWith("luod_");
      expect(name.endsWith("_total")).toBe(type === "counter");
    }
  });

  test("luod_phase is 1 for the current phase and 0 for every other, \"stopped\" included", () => {
    const s = samples(formatMetrics(metrics().families(state({ phase: "preparing" }))));
    expect(["idle", "preparing", "committing", "stopped"].map((p) => s.get(`luod_phase{phase="${p}"}`))).toEqual([0, 1, 0, 0]);
  });

  test("every abort reason and every command has its series from the start, at 0", () => {
    const s = samples(formatMetrics(metrics().families(state())));
    for (const r of ABORT_REASONS) expect(s.get(`luod_updates_aborted_total{reason="${r}"}`)).toBe(0);
    for (const c of COMMANDS) for (const n of ["requests", "requests_refused", "requests_invalid"]) expect(s.get(`luod_${n}_total{request="${c}"}`)).toBe(0);
    expect(s.get('luod_requests_invalid_total{request="unknown"}')).toBe(0);
    expect(s.get('luod_build_info{version="9.9.9"}')).toBe(1);
    expect(s.get("luod_start_time_seconds")).toBe(START / 1000);
  });

  test("a command a client made up is counted as \"unknown\": its text never becomes a label", () => {
    const m = metrics();
    m.invalid('REBOOT"} 1\nluod_fake 1');
    m.invalid(undefined);
    m.invalid("STATUS");
    const text = formatMetrics(m.families(state()));
    expect(text).not.toContain("REBOOT");
    const s = samples(text);
    expect(s.get('luod_requests_invalid_total{request="unknown"}')).toBe(2);
    expect(s.get('luod_requests_invalid_total{request="STATUS"}')).toBe(1);
  });

  test("counters never go down across snapshots, whatever happens in between", () => {
    const m = metrics();
    let before = samples(formatMetrics(m.families(state())));
    const steps: (() => void)[] = [
      () => m.update({ kind: "started", attempt: 1, dryRun: true }),
      () => m.update({ kind: "aborted", attempt: 1, reason: "deadline" }),
      () => m.update({ kind: "started", attempt: 2, dryRun: true }),
      () => m.update({ kind: "all-ready", attempt: 2, barrierMs: 12 }),
      () => m.update({ kind: "completed", attempt: 2, dryRun: true }),
      () => m.received("SUBSCRIBE"),
      () => m.refused("PREPARE"),
      () => m.invalid("nope"),
    ];
    let connections = 0;
    for (const step of steps) {
      step();
      connections++;
      const after = samples(formatMetrics(m.families(state({ connections: { open: 1, accepted: connections, refused: 0 } }))));
      for (const [series, value] of before) if (/_total(\{|$)/.test(series)) expect(after.get(series)!).toBeGreaterThanOrEqual(value);
      before = after;
    }
    expect(before.get("luod_updates_started_total")).toBe(2);
    expect(before.get("luod_updates_completed_total")).toBe(1);
    expect(before.get('luod_updates_aborted_total{reason="deadline"}')).toBe(1);
    expect(before.get("luod_last_barrier_duration_seconds")).toBe(0.012);
  });

  test("a change tells the writer; an update's step is urgent (a phase change), a request is not", () => {
    const m = metrics();
    const told: boolean[] = [];
    m.onChange = (urgent) => told.push(urgent);
    m.received("STATUS");
    m.update({ kind: "started", attempt: 1, dryRun: false });
    m.changed();
    expect(told).toEqual([false, true, false]);
  });

  test("the last barrier is the previous kernel's update after a live-update boot, until this luod runs one", () => {
    const m = metrics();
    const previous = { timings: { all_ready_ms: 2500 } };
    expect(samples(formatMetrics(m.families(state({ previous })))).get("luod_last_barrier_duration_seconds")).toBe(2.5);
    m.update({ kind: "all-ready", attempt: 7, barrierMs: 40 });
    expect(samples(formatMetrics(m.families(state({ previous })))).get("luod_last_barrier_duration_seconds")).toBe(0.04);
    // unknown: the HELP and TYPE lines alone
    const none = formatMetrics(metrics().families(state()));
    expect(none).toContain("# TYPE luod_last_barrier_duration_seconds gauge");
    expect(samples(none).has("luod_last_barrier_duration_seconds")).toBe(false);
  });

  test("restored sessions: counted by state; the oldest unclaimed one's return time; none unclaimed, no sample", () => {
    const at = (min: number) => new Date(START + min * 60_000).toISOString();
    const restored = [
      { state: "unclaimed" as const, restoredAt: at(0), changedAt: at(0) },
      { state: "unclaimed" as const, restoredAt: at(3), changedAt: at(3) },
      { state: "claimed" as const, restoredAt: at(0), changedAt: at(1) },
      { state: "finished" as const, restoredAt: at(0), changedAt: at(2) },
    ];
    const s = samples(formatMetrics(metrics().families(state({ restored }))));
    expect(["unclaimed", "claimed", "finished", "discarded"].map((st) => s.get(`luod_restored_sessions{state="${st}"}`))).toEqual([2, 1, 1, 0]);
    expect(s.get("luod_restored_oldest_unclaimed_timestamp_seconds")).toBe(START / 1000);
    const claimed = samples(formatMetrics(metrics().families(state({ restored: restored.slice(2) }))));
    expect(claimed.has("luod_restored_oldest_unclaimed_timestamp_seconds")).toBe(false);
  });

  test("the restore lasts from the sessions' return to the last one finished or discarded; unknown while one is open", () => {
    const at = (s: number) => new Date(START + s * 1000).toISOString();
    const done = [
      { state: "finished" as const, restoredAt: at(0), changedAt: at(4) },
      { state: "discarded" as const, restoredAt: at(0), changedAt: at(9) },
    ];
    expect(restoreDurationMs(done)).toBe(9000);
    expect(restoreDurationMs([...done, { state: "claimed", restoredAt: at(0), changedAt: at(2) }])).toBeNull();
    expect(restoreDurationMs([])).toBeNull();
    expect(restoreDurationMs([{ state: "finished", restoredAt: "garbage", changedAt: at(1) }])).toBeNull();
  });
});

describe("an update through the fake kernel, counted by its outcome", () => {
  function setup() {
    const kernel = new FakeKernel();
    const m = new LuodMetrics({ version: "t", startedAtMs: START });
    const broker = new Broker({ kernel, log: quiet, nextKernel: () => null, onEvent: (e) => m.update(e) });
    const count = (series: string) => samples(formatMetrics(m.families(state()))).get(series);
    return { broker, count };
  }

  test("a dry run that every client READYs completes, and its barrier is recorded", async () => {
    const { broker, count } = setup();
    const a = new RecordingPeer();
    broker.subscribe(a, "vm-a");
    const run = broker.kexec(null, { timeoutMs: 5000, dryRun: true });
    broker.ready(a);
    expect((await run).ok).toBe(true);
    expect([count("luod_updates_started_total"), count("luod_updates_completed_total")]).toEqual([1, 1]);
    expect(count("luod_last_barrier_duration_seconds")).toBeGreaterThanOrEqual(0);
  });

  test.each([
    ["a client's FAIL", "client_failed", (b: Broker, p: RecordingPeer) => b.fail(p, "disk full")],
    ["an administrator's ABORT", "admin", (b: Broker) => b.abortByAdmin("no")],
    ["a client's disconnect before READY", "client_disconnected", (b: Broker, p: RecordingPeer) => b.peerClosed(p)],
    ["luod stopping", "luod_stopping", (b: Broker) => b.shutdown()],
  ] as const)("%s aborts it with reason %s", async (_what, reason, end) => {
    const { broker, count } = setup();
    const a = new RecordingPeer();
    broker.subscribe(a, "vm-a");
    const run = broker.kexec(null, { timeoutMs: 5000, dryRun: true });
    end(broker, a);
    expect((await run).ok).toBe(false);
    expect(count(`luod_updates_aborted_total{reason="${reason}"}`)).toBe(1);
    expect([count("luod_updates_started_total"), count("luod_updates_completed_total")]).toEqual([1, 0]);
  });

  test("a deadline passing aborts it with reason deadline", async () => {
    const { broker, count } = setup();
    broker.subscribe(new RecordingPeer(), "vm-slow");
    expect((await broker.kexec(null, { timeoutMs: 1, dryRun: true })).ok).toBe(false);
    expect(count('luod_updates_aborted_total{reason="deadline"}')).toBe(1);
  });
});

describe("--metrics-file", () => {
  test("a path whose directory does not exist, or that is a directory, is refused with one line", () => {
    expect(() => checkMetricsPath("/nonexistent-luod-dir/luod.prom")).toThrow(ConfigError);
    expect(() => checkMetricsPath("/nonexistent-luod-dir/luod.prom")).toThrow("the directory /nonexistent-luod-dir does not exist");
    expect(() => checkMetricsPath(dir)).toThrow("is a directory");
  });

  test("a name that does not end in .prom is accepted with a warning: node_exporter would ignore it", () => {
    expect(checkMetricsPath(join(dir, "luod.prom"))).toBeNull();
    expect(checkMetricsPath(join(dir, "luod.txt"))).toContain("reads only *.prom files");
  });
});

describe("the metrics file", () => {
  function writer(path: string, opts: { minIntervalMs?: number } = {}) {
    const logged: string[] = [];
    let renders = 0;
    let n = 0;
    const file = new MetricsFile({
      path, minIntervalMs: opts.minIntervalMs ?? 50,
      log: createLogger({ prefix: true, write: (l) => logged.push(l) }),
      render: (stopped) => {
        renders++;
        return `luod_test ${stopped ? -1 : n}\n`;
      },
    });
    return { file, logged, renders: () => renders, set: (v: number) => (n = v) };
  }

  test("is written at start, mode 0644 whatever the umask, with no temp file left beside it", async () => {
    const d = mkdtempSync(join(dir, "mode-"));
    const path = join(d, "luod.prom");
    const w = writer(path);
    const umask = process.umask(0o077);
    try {
      w.file.start();
      await w.file.settled();
    } finally {
      process.umask(umask);
    }
    expect(readFileSync(path, "utf8")).toBe("luod_test 0\n");
    expect(statSync(path).mode & 0o777).toBe(0o644);
    expect(readdirSync(d)).toEqual(["luod.prom"]);
    await w.file.close();
  });

  test("a burst of 1000 changes is one write of the last state", async () => {
    const path = join(mkdtempSync(join(dir, "burst-")), "luod.prom");
    const w = writer(path);
    w.file.start();
    await w.file.settled();
    for (let i = 1; i <= 1000; i++) {
      w.set(i);
      w.file.changed();
    }
    await w.file.settled();
    expect(readFileSync(path, "utf8")).toBe("luod_test 1000\n");
    expect(w.renders()).toBe(2);
    await w.file.close();
  });

  test("a phase change is written without waiting out the interval, and takes the pending change with it", async () => {
    const path = join(mkdtempSync(join(dir, "urgent-")), "luod.prom");
    const w = writer(path, { minIntervalMs: 3_600_000 });
    w.file.start();
    await w.file.settled();
    w.set(1);
    w.file.changed(); // due in an hour
    w.set(2);
    w.file.changed(true);
    await w.file.settled();
    expect(readFileSync(path, "utf8")).toBe("luod_test 2\n");
    expect(w.renders()).toBe(2);
    await w.file.close();
  });

  test("the stop writes a last time, after the write under way", async () => {
    const path = join(mkdtempSync(join(dir, "stop-")), "luod.prom");
    const w = writer(path);
    w.file.start();
    await w.file.close();
    expect(readFileSync(path, "utf8")).toBe("luod_test -1\n");
    w.file.changed(); // after the stop: nothing more
    await w.file.settled();
    expect(readFileSync(path, "utf8")).toBe("luod_test -1\n");
  });

  test("a failing write is one warning per distinct error, luod carries on, and the next good write says so", async () => {
    const d = mkdtempSync(join(dir, "fail-"));
    const path = join(d, "gone", "luod.prom");
    const w = writer(path, { minIntervalMs: 0 });
    w.file.start();
    for (let i = 0; i < 5; i++) {
      await w.file.settled();
      w.file.changed();
    }
    await w.file.settled();
    const warnings = w.logged.filter((l) => l.startsWith("<4>"));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain(`cannot write the metrics file ${path}: ENOENT`);
    mkdirSync(join(d, "gone"));
    w.file.changed();
    await w.file.settled();
    expect(readFileSync(path, "utf8")).toBe("luod_test 0\n");
    expect(w.logged.at(-1)).toBe(`<5>metrics file ${path} written again`);
    await w.file.close();
  });

  test("a symlink planted at the temp name is not followed: its target stays as it was", async () => {
    const d = mkdtempSync(join(dir, "planted-"));
    const victim = join(d, "victim");
    writeFileSync(victim, "precious\n");
    symlinkSync(victim, join(d, `.luod.prom.${process.pid}.tmp`));
    const w = writer(join(d, "luod.prom"));
    w.file.start();
    await w.file.close();
    expect(readFileSync(victim, "utf8")).toBe("precious\n");
    expect(readFileSync(join(d, "luod.prom"), "utf8")).toBe("luod_test -1\n");
    expect(lstatSync(join(d, "luod.prom")).isFile()).toBe(true);
  });
});

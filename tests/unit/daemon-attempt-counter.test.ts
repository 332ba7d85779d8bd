// Update attempt numbers name sessions (`luod:<id>/<n>`): they must never repeat within a boot,
// not even across luod restarts, and a burst of PREPAREs must not cost one state-file write each.
import { afterEach, beforeEach, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { attemptCounter, attemptFloor } from "../../src/daemon/main";
import { StateFiles } from "../../src/daemon/state-files";

let dir: string;
let files: StateFiles;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "luod-attempt-"));
  files = new StateFiles(dir);
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

test("numbers count up from 1 and the state file holds the end of the reserved block", () => {
  const next = attemptCounter(files, 4);
  expect([next(), next(), next()]).toEqual([1, 2, 3]);
  expect(files.read<{ last: number }>("attempt")).toEqual({ last: 4 });
  expect([next(), next()]).toEqual([4, 5]);
  expect(files.read<{ last: number }>("attempt")).toEqual({ last: 8 });
});

test("a restarted luod starts above every number the previous one could have handed out", () => {
  const before = attemptCounter(files, 64);
  const used = [before(), before(), before()];
  const after = attemptCounter(files, 64); // a new process reading the same state dir
  const first = after();
  expect(first).toBeGreaterThan(Math.max(...used));
  expect(first).toBe(65);
});

test("an unusable attempt.json is set aside and the numbers restart above any a luod of this boot handed out", () => {
  const before = attemptCounter(files, 64);
  const used = [before(), before(), before()];
  const record = join(dir, "attempt.json");
  const bootId = JSON.parse(readFileSync(record, "utf8")).bootId;
  for (const bad of ["{not json", "null", JSON.stringify({ bootId, data: null }), JSON.stringify({ bootId, data: { last: "64" } }), JSON.stringify({ bootId, data: { last: -1 } })]) {
    writeFileSync(record, bad);
    const warnings: string[] = [];
    const after = attemptCounter(new StateFiles(dir, { warning: (m) => warnings.push(m) }), 64, () => 1000);
    const first = after();
    expect(first).toBeGreaterThan(Math.max(...used));
    expect(first).toBe(attemptFloor(1000) + 1);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain(`state file ${record} is unusable`);
    expect(readdirSync(dir).filter((f) => f.startsWith("attempt.json.bad-")).length).toBeGreaterThan(0);
    expect(files.read<{ last: number }>("attempt")).toEqual({ last: attemptFloor(1000) + 64 });
    for (const f of readdirSync(dir)) if (f.includes(".bad-")) rmSync(join(dir, f));
  }
});

test("the fallback floor grows 64 per millisecond of uptime", () => {
  expect(attemptFloor(0)).toBe(0);
  expect(attemptFloor(1500.7)).toBe(1500 * 64);
});

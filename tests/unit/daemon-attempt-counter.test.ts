// Update attempt numbers name sessions (`luod:<id>/<n>`): they must never repeat within a boot,
// not even across luod restarts, and a burst of PREPAREs must not cost one state-file write each.
import { afterEach, beforeEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { attemptCounter } from "../../src/daemon/main";
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

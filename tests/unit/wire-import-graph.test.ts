// The import graph of src/: no module imports itself through others (type-only imports count:
// a cycle of types is still a knot for the reader), and the parts of src/wire that the client
// library and luoctl load never reach valibot (only requests.ts builds schemas).
import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const SRC = resolve(import.meta.dir, "../../src");

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? sourceFiles(p) : p.endsWith(".ts") ? [p] : [];
  });
}

const IMPORT = /(?:^|\n)\s*(import type|export type|import|export)\s[^;]*?from\s+"([^"]+)"|import\(\s*"([^"]+)"\s*\)/g;

/** Each file's imports (relative ones resolved to files, packages by name); `erased`: type-only. */
function importGraph(): Map<string, { dep: string; erased: boolean }[]> {
  const graph = new Map<string, { dep: string; erased: boolean }[]>();
  for (const f of sourceFiles(SRC)) {
    const deps: { dep: string; erased: boolean }[] = [];
    for (const m of readFileSync(f, "utf8").matchAll(IMPORT)) {
      const spec = m[2] ?? m[3]!;
      const erased = m[1] === "import type" || m[1] === "export type";
      if (!spec.startsWith(".")) {
        deps.push({ dep: spec, erased });
        continue;
      }
      const p = resolve(dirname(f), spec);
      deps.push({ dep: p.endsWith(".ts") ? p : existsSync(`${p}.ts`) ? `${p}.ts` : join(p, "index.ts"), erased });
    }
    graph.set(f, deps);
  }
  return graph;
}

describe("src/ import graph", () => {
  const graph = importGraph();
  const name = (f: string) => relative(SRC, f);

  test("has no cycles", () => {
    const cycles: string[] = [];
    const state = new Map<string, "open" | "done">();
    const stack: string[] = [];
    const visit = (f: string) => {
      state.set(f, "open");
      stack.push(f);
      for (const { dep: d } of graph.get(f) ?? []) {
        if (!graph.has(d)) continue;
        if (state.get(d) === "open") cycles.push([...stack.slice(stack.indexOf(d)), d].map(name).join(" -> "));
        else if (!state.has(d)) visit(d);
      }
      stack.pop();
      state.set(f, "done");
    };
    for (const f of graph.keys()) if (!state.has(f)) visit(f);
    expect(cycles).toEqual([]);
  });

  test("the client library and the connection do not load valibot", () => {
    // type-only imports are erased: follow only the imports that load a module
    const reaches = (from: string, seen = new Set<string>()): Set<string> => {
      for (const { dep, erased } of graph.get(from) ?? []) {
        if (erased || seen.has(dep)) continue;
        seen.add(dep);
        reaches(dep, seen);
      }
      return seen;
    };
    expect(reaches(join(SRC, "wire/requests.ts")).has("valibot")).toBe(true); // the check can see it
    for (const entry of ["client/index.ts", "client/oneshot.ts", "wire/connection.ts", "wire/replies.ts", "wire/events.ts"]) {
      expect([...reaches(join(SRC, entry))].filter((d) => d === "valibot")).toEqual([]);
    }
  });
});

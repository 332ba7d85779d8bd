// The module rules of the repository (README.md, "Layout"), checked on the import statements:
// static `import … from`, `export … from`, side-effect `import "…"` and `import("…")`.
// Type-only imports count: a cycle of types is still two modules that need each other.
import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "../..");

function tsFilesUnder(dir: string): string[] {
  const abs = join(ROOT, dir);
  if (!existsSync(abs)) return [];
  const out: string[] = [];
  for (const name of readdirSync(abs).sort()) {
    const rel = join(dir, name);
    if (statSync(join(ROOT, rel)).isDirectory()) out.push(...tsFilesUnder(rel));
    else if (rel.endsWith(".ts")) out.push(rel);
  }
  return out;
}

const IMPORT_PATTERNS = [
  /^\s*(?:import|export)\s[^;'"]*?\bfrom\s*["']([^"']+)["']/gm, // import … from "x", export … from "x"
  /^\s*import\s*["']([^"']+)["']/gm, // import "x"
  /\bimport\s*\(\s*["']([^"']+)["']\s*\)/g, // import("x"), await import("x")
];

/**
 * What a file imports: repo-relative paths for relative specifiers, else the specifier itself.
 * `loadedOnly`: leave out type-only imports (erased at build time: they load nothing).
 */
function importsOf(file: string, loadedOnly = false): string[] {
  const text = readFileSync(join(ROOT, file), "utf8");
  const out = new Set<string>();
  for (const re of IMPORT_PATTERNS) {
    for (const m of text.matchAll(re)) {
      if (loadedOnly && /^\s*(?:import|export)\s+type\s/.test(m[0])) continue;
      const spec = m[1]!;
      if (!spec.startsWith(".")) {
        out.add(spec);
        continue;
      }
      const base = resolve(ROOT, dirname(file), spec);
      const found = [base, `${base}.ts`, join(base, "index.ts")].find((p) => existsSync(p) && statSync(p).isFile());
      out.add(relative(ROOT, found ?? base));
    }
  }
  return [...out];
}

const SRC = tsFilesUnder("src");
const graph = new Map(SRC.map((f) => [f, importsOf(f).filter((i) => i.startsWith("src/"))]));

/** Every import cycle among src/ modules, each as a path a → b → … → a. */
function cycles(): string[] {
  const found = new Set<string>();
  const state = new Map<string, "open" | "done">();
  const stack: string[] = [];
  const visit = (f: string): void => {
    state.set(f, "open");
    stack.push(f);
    for (const next of graph.get(f) ?? []) {
      if (state.get(next) === "open") {
        const loop = stack.slice(stack.indexOf(next));
        const start = loop.indexOf([...loop].sort()[0]!); // one spelling per cycle
        const rotated = [...loop.slice(start), ...loop.slice(0, start)];
        found.add([...rotated, rotated[0]].join(" → "));
      } else if (!state.has(next)) visit(next);
    }
    stack.pop();
    state.set(f, "done");
  };
  for (const f of SRC) if (!state.has(f)) visit(f);
  return [...found].sort();
}

/** "file imports x" for every import of the files (under the dirs) that matches. */
function violations(dirs: string[], forbidden: (imported: string) => boolean): string[] {
  const out: string[] = [];
  for (const file of dirs.flatMap(tsFilesUnder))
    for (const imported of importsOf(file)) if (forbidden(imported)) out.push(`${file} imports ${imported}`);
  return out;
}

/** Every module and package that loading `file` loads, following only the imports that load. */
function loadedBy(file: string, seen = new Set<string>()): Set<string> {
  for (const dep of importsOf(file, true)) {
    if (seen.has(dep)) continue;
    seen.add(dep);
    if (dep.startsWith("src/")) loadedBy(dep, seen);
  }
  return seen;
}

const under = (...dirs: string[]) => (p: string) => dirs.some((d) => p.startsWith(`${d}/`));

describe("architecture", () => {
  test("src/ modules import each other without cycles", () => {
    expect([...graph.values()].flat()).toContain("src/daemon/main.ts"); // the parser sees import("./daemon/main")
    expect(cycles()).toEqual([]);
  });

  test("only src/kernel imports bun:ffi (src/, scripts/, bench/)", () => {
    expect(violations(["src", "scripts", "bench"], (i) => i === "bun:ffi").filter((v) => !v.startsWith("src/kernel/"))).toEqual([]);
  });

  test("nothing in src/, scripts/ or bench/ imports from tests/", () => {
    expect(violations(["src", "scripts", "bench"], under("tests"))).toEqual([]);
  });

  test("src/kernel imports nothing from src/wire, src/daemon, src/ctl or src/client", () => {
    expect(violations(["src/kernel"], under("src/wire", "src/daemon", "src/ctl", "src/client"))).toEqual([]);
  });

  test("src/wire imports nothing from src/daemon, src/ctl or src/client", () => {
    expect(violations(["src/wire"], under("src/daemon", "src/ctl", "src/client"))).toEqual([]);
  });

  test("luo-qemu (src/qemu) is a client: it uses src/client, src/wire and src/kernel, never luod's or luoctl's code", () => {
    expect(violations(["src/qemu"], under("src/daemon", "src/ctl"))).toEqual([]);
    expect(violations(["src/kernel", "src/wire", "src/client", "src/daemon", "src/ctl"], under("src/qemu"))).toEqual([]);
  });

  // luoctl's quick commands and client applications stay light: only src/wire/requests.ts builds
  // the protocol's valibot schemas (docs/performance.md).
  test("the client library, luoctl's one-shot client and the connection do not load valibot", () => {
    expect(loadedBy("src/wire/requests.ts").has("valibot")).toBe(true); // the check can see it
    for (const entry of ["src/client/index.ts", "src/client/oneshot.ts", "src/wire/connection.ts", "src/wire/replies.ts", "src/wire/events.ts"])
      expect([entry, loadedBy(entry).has("valibot")]).toEqual([entry, false]);
  });
});

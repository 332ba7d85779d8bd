// docs/daemon.md's "Code map" cannot rot silently: every `file.ts: symbol` it names is declared
// in that file under src/. A file is named by its path's tail (`dispatch.ts`, `kernel/memfd.ts`),
// which must match exactly one file under src/. A symbol is a top-level declaration (function,
// class, interface, type, const) or `Owner.member`: a member of a class or interface, or a
// property of an object literal that the function or const `Owner` returns or is (realKernel's
// operations). Declarations are read with the TypeScript parser, not by pattern.
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import ts from "typescript";

const ROOT = resolve(import.meta.dir, "../..");
const SRC = join(ROOT, "src");

/** The "Code map" section of docs/daemon.md, up to the next level-2 heading. */
function codeMapSection(): string {
  const doc = readFileSync(join(ROOT, "docs/daemon.md"), "utf8");
  const start = doc.indexOf("\n## Code map\n");
  if (start < 0) throw new Error('docs/daemon.md has no "## Code map" section');
  const end = doc.indexOf("\n## ", start + 1);
  return doc.slice(start, end < 0 ? undefined : end);
}

/** Every `file.ts: symbol` of a text. */
export function citedSymbols(text: string): { file: string; symbol: string }[] {
  return [...text.matchAll(/`([\w./-]+\.ts): ([\w$]+(?:\.[\w$]+)?)`/g)].map((m) => ({ file: m[1]!, symbol: m[2]! }));
}

function sourceFiles(dir = SRC): string[] {
  return readdirSync(dir).flatMap((name) => {
    const abs = join(dir, name);
    return statSync(abs).isDirectory() ? sourceFiles(abs) : name.endsWith(".ts") ? [relative(SRC, abs)] : [];
  });
}

/** The files under src/ whose path ends with `cited` (a whole path component). */
function resolveFile(cited: string, files: string[]): string[] {
  return files.filter((f) => f === cited || f.endsWith(`/${cited}`));
}

function nameOf(n: ts.Node): string | null {
  const name = (n as { name?: ts.Node }).name;
  return name && (ts.isIdentifier(name) || ts.isStringLiteral(name) || ts.isPrivateIdentifier(name)) ? name.text : null;
}

/** Property and method names of the object literals `node` returns (a function) or is (a const). */
function objectLiteralKeys(node: ts.Node): Set<string> {
  const keys = new Set<string>();
  const visit = (n: ts.Node, top: boolean): void => {
    // only this function's own returns, not those of the functions it contains
    if (!top && (ts.isFunctionDeclaration(n) || ts.isFunctionExpression(n) || ts.isArrowFunction(n) || ts.isMethodDeclaration(n))) return;
    if (ts.isReturnStatement(n) && n.expression && ts.isObjectLiteralExpression(n.expression)) addKeys(n.expression);
    ts.forEachChild(n, (c) => visit(c, false));
  };
  const addKeys = (o: ts.ObjectLiteralExpression) => {
    for (const p of o.properties) {
      const k = nameOf(p);
      if (k !== null) keys.add(k);
    }
  };
  if (ts.isVariableDeclaration(node)) {
    if (node.initializer && ts.isObjectLiteralExpression(node.initializer)) addKeys(node.initializer);
  } else {
    visit(node, true);
  }
  return keys;
}

const parsed = new Map<string, Map<string, Set<string>>>();

/** The top-level declarations of a file, each with its member names. */
function declarationsOf(path: string): Map<string, Set<string>> {
  const known = parsed.get(path);
  if (known) return known;
  const sf = ts.createSourceFile(path, readFileSync(path, "utf8"), ts.ScriptTarget.Latest, true);
  const out = new Map<string, Set<string>>();
  for (const st of sf.statements) {
    if (ts.isClassDeclaration(st) || ts.isInterfaceDeclaration(st)) {
      const name = nameOf(st);
      if (name === null) continue;
      const members = new Set<string>();
      for (const m of st.members) {
        const k = nameOf(m);
        if (k !== null) members.add(k);
      }
      out.set(name, members);
    } else if (ts.isFunctionDeclaration(st)) {
      const name = nameOf(st);
      if (name !== null) out.set(name, objectLiteralKeys(st));
    } else if (ts.isVariableStatement(st)) {
      for (const d of st.declarationList.declarations) if (ts.isIdentifier(d.name)) out.set(d.name.text, objectLiteralKeys(d));
    } else if (ts.isTypeAliasDeclaration(st) || ts.isEnumDeclaration(st)) {
      out.set(st.name.text, new Set());
    }
  }
  parsed.set(path, out);
  return out;
}

/** Why `file.ts: symbol` names nothing, or null when it names a declaration. */
export function problemOf(cited: { file: string; symbol: string }, files: string[] = sourceFiles()): string | null {
  const where = `\`${cited.file}: ${cited.symbol}\``;
  const matches = resolveFile(cited.file, files);
  if (matches.length === 0) return `${where}: no file ${cited.file} under src/`;
  if (matches.length > 1) return `${where}: ${cited.file} is ambiguous (${matches.join(", ")}): name more of its path`;
  const decls = declarationsOf(join(SRC, matches[0]!));
  const [owner, member] = cited.symbol.split(".") as [string, string | undefined];
  const members = decls.get(owner);
  if (!members) return `${where}: src/${matches[0]} declares no ${owner}`;
  if (member !== undefined && !members.has(member)) return `${where}: ${owner} in src/${matches[0]} has no member ${member}`;
  return null;
}

describe("docs/daemon.md, Code map", () => {
  const section = codeMapSection();
  const cited = citedSymbols(section);

  test("has one row per request, each naming a handler, a module method, and a kernel port and src/kernel cell", () => {
    const commands = ["SUBSCRIBE", "PREPARE", "READY", "FAIL", "UNSUBSCRIBE", "CLAIM", "FINISHED", "STATUS", "LIST",
      "LOAD", "UNLOAD", "CHECK", "KEXEC", "ABORT", "DISCARD", "EVICT"];
    const rows = section.split("\n").filter((l) => /^\| [A-Z_]+ \|/.test(l));
    expect(rows.map((r) => r.split("|")[1]!.trim())).toEqual(commands);
    for (const row of rows) {
      const cells = row.split("|").slice(2, -1).map((c) => c.trim());
      expect(cells).toHaveLength(4);
      // the handler and the module method name code; the kernel columns name code or say none ("—")
      for (const [i, cell] of cells.entries())
        expect({ row: row.split("|")[1]!.trim(), column: i, ok: citedSymbols(cell).length > 0 || (i >= 2 && cell === "—") })
          .toMatchObject({ ok: true });
    }
  });

  test("every `file.ts: symbol` it names is declared in that file under src/", () => {
    expect(cited.length).toBeGreaterThan(50);
    const files = sourceFiles();
    expect(cited.map((c) => problemOf(c, files)).filter((p) => p !== null)).toEqual([]);
  });

  test("the check catches a misspelt symbol, a missing member and an unknown or ambiguous file", () => {
    expect(problemOf({ file: "broker.ts", symbol: "Broker.kexecc" })).toContain("has no member kexecc");
    expect(problemOf({ file: "dispatch.ts", symbol: "Dispatch" })).toContain("declares no Dispatch");
    expect(problemOf({ file: "kernel-port.ts", symbol: "realKernel.jumpp" })).toContain("has no member jumpp");
    expect(problemOf({ file: "nowhere.ts", symbol: "x" })).toContain("no file nowhere.ts");
    expect(problemOf({ file: "memfd.ts", symbol: "memfdCreate" })).toContain("ambiguous");
    expect(problemOf({ file: "kernel-port.ts", symbol: "realKernel.close" })).toBeNull(); // `close: closeFd`
  });
});

// The repository explains itself: every citation of a doc page resolves to a heading of a page in
// the repository, and nothing cites the research notes that live outside it.
//
// Citation forms checked, in src/, tests/, scripts/, bench/, docs/ and README.md:
//   docs/NAME.md#ANCHOR         ANCHOR is the GitHub slug of a heading of docs/NAME.md
//   docs/NAME.md, "HEADING"     HEADING is the text of a heading of docs/NAME.md
//   [text](FILE.md#ANCHOR)      markdown links in docs/ and README.md, relative to the page
import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "../..");
const SELF = relative(ROOT, import.meta.path);
const SKIP_DIRS = new Set(["node_modules", "dist", ".vm", ".git"]);

/** Text files under the given repository paths (directories walked), as repo-relative paths. */
function filesUnder(...paths: string[]): string[] {
  const out: string[] = [];
  const walk = (rel: string): void => {
    const abs = join(ROOT, rel);
    if (!existsSync(abs)) return;
    if (statSync(abs).isDirectory()) {
      for (const name of readdirSync(abs).sort()) if (!SKIP_DIRS.has(name)) walk(join(rel, name));
    } else if (rel !== SELF && !readFileSync(abs).includes(0)) {
      out.push(rel);
    }
  };
  for (const p of paths) walk(p);
  return out;
}

/** GitHub's heading slug: lower case, punctuation dropped (but - and _), each space a -. */
export function githubSlug(heading: string): string {
  const text = heading.replace(/!?\[([^\]]*)\]\([^)]*\)/g, "$1"); // a link counts as its text
  return text.trim().toLowerCase().replace(/[^\p{L}\p{N}\p{M} _-]/gu, "").replace(/ /g, "-");
}

/** The headings of a markdown page (outside fenced code) and their anchors, duplicates numbered. */
export function headingsOf(markdown: string): { texts: string[]; anchors: Set<string> } {
  const texts: string[] = [];
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  let fence: string | null = null;
  for (const line of markdown.split("\n")) {
    const f = /^\s*(```|~~~)/.exec(line);
    if (f) {
      if (fence === null) fence = f[1]!;
      else if (f[1] === fence) fence = null;
      continue;
    }
    if (fence !== null) continue;
    const h = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!h) continue;
    const base = githubSlug(h[1]!);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    anchors.add(n === 0 ? base : `${base}-${n}`);
    texts.push(h[1]!);
  }
  return { texts, anchors };
}

const pageCache = new Map<string, ReturnType<typeof headingsOf> | null>();
function page(rel: string): ReturnType<typeof headingsOf> | null {
  if (!pageCache.has(rel)) {
    const abs = join(ROOT, rel);
    pageCache.set(rel, existsSync(abs) && statSync(abs).isFile() ? headingsOf(readFileSync(abs, "utf8")) : null);
  }
  return pageCache.get(rel)!;
}

/** "" when `anchor` (or, with byHeading, a heading's text) resolves in page `target`, else why not. */
function resolveIn(target: string, anchor: string | null, byHeading = false): string {
  const p = page(target);
  if (!p) return `${target} does not exist`;
  if (anchor === null) return "";
  if (byHeading) return p.texts.some((t) => githubSlug(t) === githubSlug(anchor)) ? "" : `${target} has no heading "${anchor}"`;
  return p.anchors.has(anchor) ? "" : `${target} has no heading with anchor #${anchor}`;
}

function lineOf(text: string, index: number): number {
  return text.slice(0, index).split("\n").length;
}

const PAGES = ["docs", "README.md"];

/** Problems with the docs/NAME.md#ANCHOR and docs/NAME.md, "HEADING" citations in these files. */
function unresolvedCitations(files: string[]): { problems: string[]; count: number } {
  const problems: string[] = [];
  let count = 0;
  for (const file of files) {
    const text = readFileSync(join(ROOT, file), "utf8");
    for (const m of text.matchAll(/\bdocs\/([\w.-]+\.md)#([\w-]+)/g)) {
      count++;
      const why = resolveIn(`docs/${m[1]}`, m[2]!);
      if (why) problems.push(`${file}:${lineOf(text, m.index!)}: ${m[0]}: ${why}`);
    }
    for (const m of text.matchAll(/\bdocs\/([\w.-]+\.md), "([^"\n]+)"/g)) {
      count++;
      const why = resolveIn(`docs/${m[1]}`, m[2]!, true);
      if (why) problems.push(`${file}:${lineOf(text, m.index!)}: ${m[0]}: ${why}`);
    }
  }
  return { problems, count };
}

describe("doc citations", () => {
  test("in docs/, README.md and src/kernel, every docs/NAME.md#ANCHOR or \"HEADING\" names an existing heading", () => {
    const { problems, count } = unresolvedCitations(filesUnder("docs", "README.md", "src/kernel"));
    expect(problems).toEqual([]);
    expect(count).toBeGreaterThan(0);
  });

  test("in src/ (outside src/kernel), tests/, scripts/, bench/ and examples/, every such citation names an existing heading", () => {
    const files = filesUnder("src", "tests", "scripts", "bench", "examples").filter((f) => !f.startsWith("src/kernel/"));
    expect(unresolvedCitations(files).problems).toEqual([]);
  });

  test("every markdown link in docs/ and README.md points at a file and heading that exist", () => {
    const problems: string[] = [];
    for (const file of filesUnder(...PAGES).filter((f) => f.endsWith(".md"))) {
      const text = readFileSync(join(ROOT, file), "utf8");
      for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        const link = m[1]!;
        if (/^[a-z]+:/i.test(link)) continue; // http:, https:, mailto:
        const [path, anchor] = link.split("#", 2) as [string, string | undefined];
        const target = path === "" ? file : relative(ROOT, resolve(ROOT, dirname(file), path));
        const why = target.endsWith(".md") ? resolveIn(target, anchor ?? null) : existsSync(join(ROOT, target)) ? "" : `${target} does not exist`;
        if (why) problems.push(`${file}:${lineOf(text, m.index!)}: (${link}): ${why}`);
      }
    }
    expect(problems).toEqual([]);
  });
});

// The research notes were written outside the repository, next to it: a fresh clone has
// none of them, so nothing may cite them, nor their section numbers (a bare "§N").
const OUTSIDE_NOTES = [
  /shared\/docs/,
  new RegExp("kernel" + "-luo\\.md"),
  new RegExp("bun" + "-ffi\\.md"),
  new RegExp("systemd" + "-luo\\.md"),
  new RegExp("\u00a7\\s?\\d"),
];

function citationsOfOutsideNotes(files: string[]): string[] {
  const found: string[] = [];
  for (const file of files) {
    const lines = readFileSync(join(ROOT, file), "utf8").split("\n");
    lines.forEach((line, i) => {
      if (OUTSIDE_NOTES.some((re) => re.test(line))) found.push(`${file}:${i + 1}: ${line.trim()}`);
    });
  }
  return found;
}

describe("no citations of notes outside the repository", () => {
  test("in docs/, README.md and src/kernel", () => {
    expect(citationsOfOutsideNotes(filesUnder("docs", "README.md", "src/kernel"))).toEqual([]);
  });

  test("in src/ (outside src/kernel), tests/, scripts/, bench/ and examples/", () => {
    const files = filesUnder("src", "tests", "scripts", "bench", "examples").filter((f) => !f.startsWith("src/kernel/"));
    expect(citationsOfOutsideNotes(files)).toEqual([]);
  });
});

describe("githubSlug", () => {
  test("follows GitHub's rules", () => {
    expect(githubSlug("Session lifetimes")).toBe("session-lifetimes");
    expect(githubSlug("Every fd LUO returns is O_CLOEXEC")).toBe("every-fd-luo-returns-is-o_cloexec");
    expect(githubSlug("/proc and debugfs")).toBe("proc-and-debugfs");
    expect(githubSlug("Files under the state dir (default `/run/luod`)")).toBe("files-under-the-state-dir-default-runluod");
    expect(githubSlug("bun build --compile")).toBe("bun-build---compile");
    expect(githubSlug("Coexistence with systemd's own LUO use")).toBe("coexistence-with-systemds-own-luo-use");
  });

  test("numbers duplicate headings and skips fenced code", () => {
    const { anchors } = headingsOf("# A\n## A\n```\n# not a heading\n```\n## A\n");
    expect([...anchors]).toEqual(["a", "a-1", "a-2"]);
  });
});

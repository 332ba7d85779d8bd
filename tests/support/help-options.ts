// The options a --help text lists: the left column of its indented option lines
// ("  -v, -V, --version   the version" → -v, -V, --version). Used to check that the man pages and
// completions carry every option --help prints.
export function helpOptions(help: string): string[] {
  const names = new Set<string>();
  for (const line of help.split("\n")) {
    if (!/^ {2}-/.test(line)) continue;
    const left = line.trim().split(/\s{2,}/)[0]!;
    for (const m of left.matchAll(/(?:^|[\s,])(--?[A-Za-z][\w-]*)/g)) names.add(m[1]!);
  }
  return [...names];
}

/** An option as the man pages set it in a tag: bold, hyphens as \-. */
export const roffTag = (name: string) => `\\fB${name.replace(/-/g, "\\-")}\\fR`;

// The two-column lists of the three personalities' --help (an option or an exit code, then what
// it means), from the same tables their man pages are made of (src/manual/).

/**
 * `rows` as lines of "  LEFT  RIGHT", the right column aligned. With `width`, a right column that
 * would make the line longer is wrapped under itself at spaces.
 */
export function columns(rows: readonly (readonly [string, string])[], width = Infinity): string {
  const left = Math.max(...rows.map(([l]) => l.length));
  const indent = " ".repeat(2 + left + 2);
  return rows.map(([l, r]) => `  ${l.padEnd(left)}  ${wrap(r, width - indent.length).join(`\n${indent}`)}`).join("\n");
}

/** A paragraph of text in lines of at most `width` characters. */
export function paragraph(text: string, width: number): string {
  return wrap(text, width).join("\n");
}

/** Words of `text` in lines of at most `width` characters (a longer word stays whole). */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    if (line !== "" && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line === "" ? word : `${line} ${word}`;
  }
  return [...lines, line];
}

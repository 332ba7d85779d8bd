// roff for man pages (man(7) macros): text from the command tables escaped so that roff prints it
// as written. Escaping: a backslash is roff's escape character (written \e); a line starting with
// "." or "'" would be a request (guarded by \&); an option's hyphens are \- (a minus sign that man
// pages can be searched for and copied from; a hyphen in a word stays a hyphen); characters
// outside ASCII are named, so the page needs no input encoding.

const NAMED: Readonly<Record<string, string>> = {
  "—": "\\(em",
  "–": "\\(en",
  "…": "\\&.\\|.\\|.",
  "≥": "\\(>=",
  "≤": "\\(<=",
  "→": "\\(->",
  "’": "\\(cq",
  "‘": "\\(oq",
  "“": "\\(lq",
  "”": "\\(rq",
  "×": "\\(mu",
};

/** A character outside ASCII as a roff escape. */
function nonAscii(c: string): string {
  return NAMED[c] ?? `\\[u${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0")}]`;
}

/** Backslashes and characters outside ASCII; nothing else. */
function escapeChars(s: string): string {
  return s.replace(/\\/g, "\\e").replace(/[^\x00-\x7f]/gu, nonAscii);
}

/** A line of output that starts with "." or "'" would be a request: \& makes it text. */
function guardLine(line: string): string {
  return /^[.']/.test(line) ? `\\&${line}` : line;
}

/**
 * Running text (a paragraph): escaped, with the hyphens of options (`--force`, `-h`) as \-, and
 * `code` in backquotes set in bold. Line breaks become spaces: roff fills the paragraph.
 */
export function text(s: string): string {
  const parts = s.replace(/\s*\n\s*/g, " ").split("`");
  const out = parts.map((part, i) => (i % 2 === 1 ? `\\fB${literal(part)}\\fR` : prose(part))).join("");
  return guardLine(out);
}

/** Prose: an option's leading dashes (after a space, "(", "[", "=", "/", ",", a quote, or at the start) are \-. */
function prose(s: string): string {
  return escapeChars(s).replace(/(^|[\s(\[=/,"])(-{1,2})(?=[A-Za-z0-9])/g, (_m, before: string, dashes: string) => before + "\\-".repeat(dashes.length));
}

/** Something typed as it is (an option, a command, a path): every hyphen is \-. */
export function literal(s: string): string {
  return escapeChars(s).replace(/-/g, "\\-");
}

/** A line of a no-fill block (an example command): typed as it is, guarded. */
export function literalLine(s: string): string {
  return guardLine(literal(s));
}

/** A macro call with quoted arguments (a `"` inside one is \(dq). */
export function macro(name: string, ...args: string[]): string {
  return [`.${name}`, ...args.map((a) => `"${a.replace(/"/g, "\\(dq")}"`)].join(" ");
}

/** A bold word (already escaped). */
export const bold = (escaped: string) => `\\fB${escaped}\\fR`;
/** An italic word (already escaped). */
export const italic = (escaped: string) => `\\fI${escaped}\\fR`;

/**
 * An option's tag as help shows it ("-h, --help", "--initrd <file>", "--config FILE",
 * "--machine TYPE[,PROPS]"): the option names bold, the value italic and upper case.
 */
export function optionTag(raw: string): string {
  return raw
    .split(", ")
    .map((alt) => {
      const space = alt.indexOf(" ");
      const name = space < 0 ? alt : alt.slice(0, space);
      const value = space < 0 ? "" : alt.slice(space + 1).replace(/^<(.*)>$/, (_m, v: string) => v.toUpperCase());
      return bold(literal(name)) + (value ? ` ${italic(literal(value))}` : "");
    })
    .join(", ");
}

/** A definition list entry: `.TP`, the tag, the text. */
export function entry(tag: string, body: string): string {
  return [".TP", guardLine(tag), text(body)].join("\n");
}

/** A block of lines typed as they are (examples), indented, not filled. */
export function example(lines: readonly string[]): string {
  return [".PP", ".RS 4", ".nf", ...lines.map(literalLine), ".fi", ".RE"].join("\n");
}

/** The macros the generated pages use: a line starting with "." is one of these, or text went wrong. */
export const MACROS: ReadonlySet<string> = new Set(["TH", "nh", "ad", "SH", "SS", "TP", "PP", "RS", "RE", "nf", "fi", "br", "B", "I", "BR", "IR", "\\\""]);

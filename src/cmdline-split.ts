// Splitting a kernel command line into tokens the way the kernel does (lib/cmdline.c:next_arg), for
// both personalities: luod normalizes and checks the next kernel's command line (daemon/cmdline.ts),
// luoctl places --append before a ` -- ` (ctl/cmd-load.ts). Pure.

/** Split a command line into tokens like the kernel's next_arg (quotes kept in the token). */
export function splitCmdline(raw: string): string[] {
  const out: string[] = [];
  let cur = "";
  let inQuote = false;
  let started = false;
  for (const ch of raw) {
    if (!inQuote && isSpace(ch)) {
      if (started) out.push(cur);
      cur = "";
      started = false;
      continue;
    }
    if (ch === '"') inQuote = !inQuote;
    cur += ch;
    started = true;
  }
  if (started) out.push(cur);
  return out;
}

function isSpace(ch: string): boolean {
  // C isspace(): space, \t, \n, \v, \f, \r
  return ch === " " || ch === "\t" || ch === "\n" || ch === "\v" || ch === "\f" || ch === "\r";
}

/** Index of the bare `--` token that ends the kernel's parameters (kernel/params.c: "Stop at --"), or -1. */
export function initArgsIndex(tokens: readonly string[]): number {
  return tokens.indexOf("--");
}

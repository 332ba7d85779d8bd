// The one duration grammar of both personalities: luoctl's `kexec --timeout` and luod's
// `first-request-timeout`. Each caller adds its own range check and its own error message.

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, min: 60_000, h: 3_600_000 };

/**
 * Milliseconds of "30s", "500ms", "2m", "2min", "1h", "1m30s", "1.5s", or a plain number of
 * seconds ("45"); surrounding blanks are ignored. NaN for anything else (a sign, an exponent, a
 * blank inside, a missing unit after a part). Zero is a value ("0", "0s"); callers that need more
 * than zero check it, and a number too long for a double comes out as Infinity.
 */
export function parseDurationMs(text: string): number {
  const s = text.trim();
  if (/^\d+(\.\d+)?$/.test(s)) return Math.round(Number(s) * 1000);
  // "min" before "m" and "ms" before "m": the alternation takes the first that matches
  const part = /(\d+(?:\.\d+)?)(ms|min|s|m|h)/y;
  let total = 0;
  let pos = 0;
  for (let m = part.exec(s); m; m = part.exec(s)) {
    total += Number(m[1]) * UNIT_MS[m[2]!]!;
    pos = part.lastIndex;
  }
  return pos > 0 && pos === s.length ? Math.round(total) : NaN;
}

// Argument helpers for luoctl: durations, small validators, and (re-exported) the option-value
// protection around cac shared with luod (src/cli-options.ts).
export { UsageError, protectOptionValues, optionValues, lastValue, unmark } from "../cli-options";
import { UsageError } from "../cli-options";

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, min: 60_000, h: 3_600_000 };

/**
 * Parses a duration into milliseconds: "30s", "2m", "500ms", "1h", "1m30s", "1.5s", or a plain
 * number of seconds ("45"). Throws UsageError for anything else, and for zero or negative values.
 */
export function parseDuration(text: string): number {
  const s = text.trim();
  if (/^\d+(\.\d+)?$/.test(s)) return checkPositive(Math.round(Number(s) * 1000), text);
  const re = /(\d+(?:\.\d+)?)(ms|min|s|m|h)/gy;
  let total = 0;
  let pos = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(s)) !== null) {
    total += Number(m[1]) * UNIT_MS[m[2]!]!;
    pos = re.lastIndex;
  }
  if (pos === 0 || pos !== s.length) {
    throw new UsageError(`invalid duration "${text}": use e.g. 30s, 2m, 500ms, 1m30s or a number of seconds`);
  }
  return checkPositive(Math.round(total), text);
}

function checkPositive(ms: number, text: string): number {
  if (!Number.isFinite(ms) || ms <= 0) throw new UsageError(`invalid duration "${text}": must be more than 0`);
  return ms;
}

/** A SHA-256 given on the command line: 64 hex digits (returned lower case). */
export function parseSha256(text: string): string {
  const s = text.trim();
  if (!/^[0-9a-fA-F]{64}$/.test(s)) throw new UsageError(`invalid --sha256 "${text}": 64 hex digits expected`);
  return s.toLowerCase();
}

// Argument helpers for luoctl: durations, small validators, and (re-exported) the option-value
// protection around cac shared with luod (src/cli-options.ts).
export { UsageError, protectOptionValues, optionValues, lastValue, unmark } from "../cli-options";
import { UsageError } from "../cli-options";
import { parseDurationMs } from "../duration";

/**
 * Parses a duration into milliseconds (the grammar of src/duration.ts: "30s", "2m", "2min",
 * "500ms", "1h", "1m30s", "1.5s", or a plain number of seconds). Throws UsageError for anything
 * else, and for zero or negative values.
 */
export function parseDuration(text: string): number {
  const ms = parseDurationMs(text);
  if (Number.isNaN(ms)) {
    throw new UsageError(`invalid duration "${text}": use e.g. 30s, 2m, 500ms, 1m30s or a number of seconds`);
  }
  return checkPositive(ms, text);
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

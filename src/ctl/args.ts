// Argument helpers for luoctl: value protection around cac/mri, durations, small validators.
//
// Why the protection: mri (inside cac) turns every numeric-looking option value into a number
// *before* cac's `type: [String]` transform runs, so `--cmdline 0123` arrives as "123",
// `--cmdline 1e3` as "1000" and `--cmdline=0x10` as "16"; and a value starting with "-" is taken
// for an option (`--reason -x`). luoctl therefore marks the value of every value-taking option in
// the raw argv (getopt_long semantics: a required argument is the next word, whatever it is)
// with a prefix mri cannot read as a number, and strips it again after parsing. A value without
// the mark means the option had no value at all (cac would have given us the string "true").

/** Marks a protected option value (a control character no user types on a command line). */
const MARK = "\u0001";

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/**
 * Returns argv with the value of every option in `valueOptions` (long names without "--")
 * marked. Words after a bare "--" are left alone.
 */
export function protectOptionValues(argv: readonly string[], valueOptions: ReadonlySet<string>): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--") {
      out.push(...argv.slice(i));
      break;
    }
    if (arg.startsWith("--")) {
      const eq = arg.indexOf("=");
      const name = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
      if (valueOptions.has(name)) {
        if (eq >= 0) {
          out.push(`--${name}=${MARK}${arg.slice(eq + 1)}`);
        } else if (i + 1 < argv.length) {
          out.push(arg, MARK + argv[i + 1]!);
          i++;
        } else {
          out.push(arg); // no value: reported by optionValues()
        }
        continue;
      }
    }
    out.push(arg);
  }
  return out;
}

/**
 * The values of a protected option as cac returns them with `type: [String]` (undefined, or an
 * array), unmarked. Throws UsageError for an occurrence that had no value.
 */
export function optionValues(raw: unknown, name: string): string[] {
  if (raw === undefined || raw === null || raw === false) return [];
  const list = Array.isArray(raw) ? raw : [raw];
  return list.map((v) => {
    const s = String(v);
    if (!s.startsWith(MARK)) throw new UsageError(`option --${name} needs a value`);
    return s.slice(MARK.length);
  });
}

/** The last value of a protected option (options given twice: the last wins, like getopt tools). */
export function lastValue(raw: unknown, name: string): string | undefined {
  const values = optionValues(raw, name);
  return values.length ? values[values.length - 1] : undefined;
}

/** Removes the mark from anything that slipped through (positional args never carry it). */
export function unmark(s: string): string {
  return s.startsWith(MARK) ? s.slice(MARK.length) : s;
}

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

// Option values around cac, for both personalities (luod and luoctl).
//
// Why the protection: mri (inside cac) turns every numeric-looking option value into a number
// *before* cac's `type: [String]` transform runs, so `--cmdline 0123` arrives as "123",
// `--cmdline 1e3` as "1000" and `--cmdline=0x10` as "16"; and a value starting with "-" is taken
// for an option (`--reason -x`). The value of every value-taking option is therefore marked in
// the raw argv (getopt_long semantics: a required argument is the next word, whatever it is)
// with a prefix mri cannot read as a number, and unmarked after parsing. A value without the mark
// means the option had no value at all (cac would have given us the string "true").

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

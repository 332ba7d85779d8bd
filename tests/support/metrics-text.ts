// Reading luod's metrics text (src/daemon/metrics.ts) in tests: its samples by series.

/** "name{labels}" → value, for every sample line (HELP and TYPE lines skipped). */
export function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const i = line.lastIndexOf(" ");
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

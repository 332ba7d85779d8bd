// Reading journald's native format back, as journald does (journal_native.c): `NAME=value\n`, or
// `NAME\n` + little-endian u64 length + bytes + `\n`. For tests that look at luod's entries.

/** An entry's fields; a field may repeat, so each has a list of values. */
export type JournalEntry = Map<string, string[]>;

export function decodeJournalEntry(data: Uint8Array): JournalEntry {
  const out: JournalEntry = new Map();
  const text = new TextDecoder();
  let off = 0;
  while (off < data.length) {
    const nl = data.indexOf(0x0a, off);
    if (nl < 0) throw new Error(`field without a newline at byte ${off}`);
    const line = data.subarray(off, nl);
    const eq = line.indexOf(0x3d);
    let name: string;
    let value: Uint8Array;
    if (eq >= 0) {
      name = text.decode(line.subarray(0, eq));
      value = line.subarray(eq + 1);
      off = nl + 1;
    } else {
      name = text.decode(line);
      const len = Number(new DataView(data.buffer, data.byteOffset + nl + 1, 8).getBigUint64(0, true));
      value = data.subarray(nl + 9, nl + 9 + len);
      if (data[nl + 9 + len] !== 0x0a) throw new Error(`binary field ${name} does not end with a newline`);
      off = nl + 10 + len;
    }
    out.set(name, [...(out.get(name) ?? []), text.decode(value)]);
  }
  return out;
}

/** The one value of `name` (throws when it is there twice), or undefined. */
export function field(e: JournalEntry, name: string): string | undefined {
  const v = e.get(name);
  if (v && v.length > 1) throw new Error(`${name} is there ${v.length} times`);
  return v?.[0];
}

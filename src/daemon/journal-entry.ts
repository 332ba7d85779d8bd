// One journal entry in journald's native format (pure): the bytes of the datagram that
// src/kernel/journal.ts sends (docs/daemon.md#logs-and-the-audit-trail). Each field is
// `NAME=value\n`; a value with a newline in it goes as `NAME\n`, its length as a little-endian
// u64, the bytes, `\n` (sd_journal_sendv does the same), so any byte sequence is safe.

/** A value longer than this (UTF-8 bytes) is cut, so an entry always fits in one datagram. */
export const JOURNAL_VALUE_MAX_BYTES = 16 * 1024;
const TRUNCATED = "… (truncated)";

/**
 * journald's rule for a field a client may set (journal_field_valid): upper-case letters, digits
 * and `_`, not starting with a digit or `_` (those are journald's trusted fields), at most 64 bytes.
 */
const FIELD_NAME = /^[A-Z][A-Z0-9_]{0,63}$/;

export type JournalFields = ReadonlyArray<readonly [name: string, value: string | Uint8Array]>;

const utf8 = new TextEncoder();

/** The datagram for `fields`, in order. Throws on a field name journald would reject (a bug in luod). */
export function encodeJournalEntry(fields: JournalFields): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const [name, value] of fields) {
    if (!FIELD_NAME.test(name)) throw new Error(`invalid journal field name ${JSON.stringify(name)}`);
    const bytes = bounded(typeof value === "string" ? utf8.encode(value) : value);
    if (!bytes.includes(0x0a)) {
      parts.push(utf8.encode(`${name}=`), bytes, NEWLINE);
      continue;
    }
    const length = new Uint8Array(8);
    new DataView(length.buffer).setBigUint64(0, BigInt(bytes.length), true);
    parts.push(utf8.encode(`${name}\n`), length, bytes, NEWLINE);
  }
  const out = new Uint8Array(new ArrayBuffer(parts.reduce((n, p) => n + p.length, 0)));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

const NEWLINE = new Uint8Array([0x0a]);
const TRUNCATED_BYTES = utf8.encode(TRUNCATED);

/** At most JOURNAL_VALUE_MAX_BYTES: cut at a UTF-8 character boundary, marked as cut. */
function bounded(bytes: Uint8Array): Uint8Array {
  if (bytes.length <= JOURNAL_VALUE_MAX_BYTES) return bytes;
  let end = JOURNAL_VALUE_MAX_BYTES - TRUNCATED_BYTES.length;
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--; // not inside a multi-byte character
  const out = new Uint8Array(end + TRUNCATED_BYTES.length);
  out.set(bytes.subarray(0, end));
  out.set(TRUNCATED_BYTES, end);
  return out;
}

// The start record: what the QEMU after the boot needs to resume the guest, preserved next to
// the device state (docs/vmm.md, "What to preserve, and tokens"). A contract across the kexec:
// luo-qemu N reads what N−1 wrote, so fields are only ever added (version stays 1 while they are
// optional) and an unknown newer version is refused with a clear line, never guessed at.
import * as v from "valibot";

/** Token of the guest's RAM memfd, preserved once per prepared session. */
export const RAM_TOKEN = 1n;
/** Attempt n's device state and start record (no ioctl takes a file back out of a session). */
export const stateToken = (n: number): bigint => 1000n + 2n * BigInt(n);
export const recordToken = (n: number): bigint => 1001n + 2n * BigInt(n);
/** Attempts a session may hold (a bound for the search of the newest one after the boot). */
export const MAX_ATTEMPTS = 10_000;

export const RECORD_FORMAT = "luo-qemu-start-record";
export const RECORD_VERSION = 1;

const Epoch = v.pipe(v.number(), v.integer(), v.minValue(0));
/** A u64 of stat(2) in decimal: JSON numbers lose digits past 2^53 (nanosecond times do). */
const U64 = v.pipe(v.string(), v.regex(/^(0|[1-9]\d{0,19})$/));

/**
 * Which file the QEMU binary was when it was probed (docs/vmm.md, "luo-qemu"): the same inode,
 * size and times after the boot mean the same QEMU, so its version and machine types are known
 * without starting it again. No st_dev: device numbers may change across a boot.
 */
export const BinaryIdentitySchema = v.object({ ino: U64, size: U64, mtime_ns: U64, ctime_ns: U64 });
export type BinaryIdentity = v.InferOutput<typeof BinaryIdentitySchema>;
/** The file QEMU ran when it saved the guest (readlink of /proc/PID/exe, then its identity by that path). */
export const ExeIdentitySchema = v.object({ path: v.string(), ...BinaryIdentitySchema.entries });
export type ExeIdentity = v.InferOutput<typeof ExeIdentitySchema>;

const RecordSchema = v.object({
  format: v.literal(RECORD_FORMAT),
  version: v.literal(RECORD_VERSION),
  id: v.string(),
  attempt: v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(MAX_ATTEMPTS - 1)),
  /** binary (the file at path, when probed) and exe (the file QEMU ran): absent in records of
   *  luo-qemu before them, and when unknown; then QEMU is probed after the boot. */
  qemu: v.object({ path: v.string(), version: v.string(), binary: v.optional(BinaryIdentitySchema), exe: v.optional(ExeIdentitySchema) }),
  machine: v.object({ type: v.pipe(v.string(), v.regex(/-\d+\.\d+$/)), props: v.array(v.string()) }),
  memory_bytes: v.pipe(v.number(), v.integer(), v.minValue(1)),
  /** The user's QEMU arguments, as given after `--`. */
  args: v.array(v.string()),
  sandbox: v.boolean(),
  state_bytes: v.pipe(v.number(), v.integer(), v.minValue(0)),
  /** What QEMU's migration moved (query-migrate's ram.transferred): RAM it did not skip. */
  ram_transferred_bytes: v.pipe(v.number(), v.integer(), v.minValue(0)),
  /** Wall-clock milliseconds: the blackout's phases are reported after the boot. */
  paused_at: Epoch,
  saved_at: Epoch,
});

export type StartRecord = v.InferOutput<typeof RecordSchema>;

export function encodeRecord(r: StartRecord): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(r) + "\n");
}

/** The record in `bytes`, or a one-line reason it cannot be used. */
export function decodeRecord(bytes: Uint8Array): StartRecord | { error: string } {
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    return { error: "the start record is not JSON" };
  }
  if (typeof raw === "object" && raw !== null) {
    const o = raw as Record<string, unknown>;
    if (o.format !== RECORD_FORMAT) return { error: `the start record's format is ${JSON.stringify(o.format)}, not ${RECORD_FORMAT}` };
    if (o.version !== RECORD_VERSION)
      return { error: `the start record is version ${JSON.stringify(o.version)}; this luo-qemu reads version ${RECORD_VERSION} (use the luo-qemu that wrote it)` };
  }
  const r = v.safeParse(RecordSchema, raw);
  if (!r.success) {
    const issue = r.issues[0];
    const where = issue.path?.map((p) => String(p.key)).join(".") ?? "";
    return { error: `the start record is invalid${where ? ` at ${where}` : ""}: ${issue.message}` };
  }
  return r.output;
}

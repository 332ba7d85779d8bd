// The manifest: who owns which session, written by luod into a sealed memfd in its own LUO
// session ("luod", token 0) just before the jump. The kernel cannot list incoming sessions
// (docs/kernel.md#detecting-a-live-update-boot), so after boot this is the only record of what to hand back.
import * as v from "valibot";

export const MANIFEST_FORMAT = "luod-manifest";
export const MANIFEST_VERSION = 1;
/** Token of the manifest memfd inside the internal session. */
export const MANIFEST_TOKEN = 0n;
/** A manifest larger than this is refused: it is read in one piece after boot. */
export const MANIFEST_MAX_BYTES = 16 * 1024 * 1024;

export const ManifestEntrySchema = v.object({
  id: v.string(),
  session: v.string(),
  uid: v.number(),
  gid: v.number(),
  pid: v.number(),
  unit: v.nullable(v.string()),
  subscribedAt: v.string(),
  readyAt: v.nullable(v.string()),
});
export type ManifestEntry = v.InferOutput<typeof ManifestEntrySchema>;

/** Who a session belongs to, as the broker records it at SUBSCRIBE. */
export interface SessionOwner {
  id: string;
  uid: number;
  gid: number;
  pid: number;
  unit: string | null;
}

/**
 * The one place a manifest entry is made (the broker's commit, the fd store's READY and carried
 * sessions). It picks the owner's fields one by one, so nothing else of a caller's record leaks
 * in, and in the manifest's order (id, session, uid, gid, pid, unit, times).
 */
export function manifestEntry(owner: SessionOwner, session: string, subscribedAt: string, readyAt: string | null): ManifestEntry {
  return { id: owner.id, session, uid: owner.uid, gid: owner.gid, pid: owner.pid, unit: owner.unit, subscribedAt, readyAt };
}

const Manifest = v.object({
  format: v.literal(MANIFEST_FORMAT),
  version: v.literal(MANIFEST_VERSION),
  luod: v.string(),
  attempt: v.number(),
  createdAt: v.string(),
  kernel: v.object({
    from: v.string(),
    // banner and abi: written since the ABI gate (optional: the manifest of an older luod has neither)
    next: v.nullable(v.object({
      version: v.string(), sha256: v.string(), cmdline: v.string(),
      banner: v.optional(v.nullable(v.string())),
      abi: v.optional(v.object({ luo: v.nullable(v.string()), memfd: v.nullable(v.string()), kho: v.nullable(v.string()) })),
    })),
  }),
  timings: v.record(v.string(), v.number()),
  entries: v.array(ManifestEntrySchema),
});
export type Manifest = v.InferOutput<typeof Manifest>;

export function encodeManifest(m: Manifest): Uint8Array {
  const bytes = new TextEncoder().encode(JSON.stringify(m));
  if (bytes.length > MANIFEST_MAX_BYTES) throw new Error(`manifest too large: ${bytes.length} bytes`);
  return bytes;
}

/** Parses a manifest; a wrong format or a newer version is an error, never a guess. */
export function decodeManifest(bytes: Uint8Array): Manifest {
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (e) {
    throw new Error(`manifest is not valid JSON: ${(e as Error).message}`);
  }
  const version = (raw as { version?: unknown } | null)?.version;
  if (typeof version === "number" && version > MANIFEST_VERSION)
    throw new Error(`manifest version ${version} is newer than this luod understands (${MANIFEST_VERSION})`);
  // Fast path: valibot checks the header, a plain predicate the entries. After a boot with 1000
  // sessions, valibot's per-field pass over the entries was the longest step before the first
  // CLAIM could be served (2.9-3.8 ms natively, cold; about 0.36 s under QEMU TCG: docs/performance.md).
  const head = v.safeParse(ManifestHead, raw);
  if (head.success && head.output.entries.every(isEntry)) return head.output as Manifest;
  // Slow path, only for a bad manifest: the full schema says which field is wrong.
  const r = v.safeParse(Manifest, raw);
  if (!r.success) {
    const issue = r.issues[0];
    const at = v.getDotPath(issue);
    throw new Error(`manifest is malformed: ${at ? `${at}: ` : ""}${issue.message}`);
  }
  return r.output;
}

/** The manifest without its entries' fields: those are checked by isEntry. */
const ManifestHead = v.object({ ...Manifest.entries, entries: v.array(v.unknown()) });

/** Refuses whatever the Entry schema refuses (tests/unit/daemon-manifest.test.ts holds it to that). */
function isEntry(e: unknown): e is ManifestEntry {
  if (typeof e !== "object" || e === null) return false;
  const x = e as Record<string, unknown>;
  return typeof x.id === "string" && typeof x.session === "string" &&
    typeof x.uid === "number" && typeof x.gid === "number" && typeof x.pid === "number" &&
    (x.unit === null || typeof x.unit === "string") &&
    typeof x.subscribedAt === "string" &&
    (x.readyAt === null || typeof x.readyAt === "string");
}

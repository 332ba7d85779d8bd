// The manifest: who owns which session, written by luod into a sealed memfd in its own LUO
// session ("luod", token 0) just before the jump. The kernel cannot list incoming sessions
// (kernel-luo.md §4.1, gotcha 7), so after boot this is the only record of what to hand back.
import * as v from "valibot";

export const MANIFEST_FORMAT = "luod-manifest";
export const MANIFEST_VERSION = 1;
/** Token of the manifest memfd inside the internal session. */
export const MANIFEST_TOKEN = 0n;
/** A manifest larger than this is refused: it is read in one piece after boot. */
export const MANIFEST_MAX_BYTES = 16 * 1024 * 1024;

const Entry = v.object({
  id: v.string(),
  session: v.string(),
  uid: v.number(),
  gid: v.number(),
  pid: v.number(),
  unit: v.nullable(v.string()),
  subscribedAt: v.string(),
  readyAt: v.nullable(v.string()),
});
export type ManifestEntry = v.InferOutput<typeof Entry>;

const Manifest = v.object({
  format: v.literal(MANIFEST_FORMAT),
  version: v.literal(MANIFEST_VERSION),
  luod: v.string(),
  attempt: v.number(),
  createdAt: v.string(),
  kernel: v.object({
    from: v.string(),
    next: v.nullable(v.object({ version: v.string(), sha256: v.string(), cmdline: v.string() })),
  }),
  timings: v.record(v.string(), v.number()),
  entries: v.array(Entry),
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
  const r = v.safeParse(Manifest, raw);
  if (!r.success) throw new Error(`manifest is malformed: ${v.summarize(r.issues).split("\n")[0]}`);
  return r.output;
}

// The manifest is the only record, after the jump, of which session belongs to whom: a bad one
// must be refused with a message that names what is wrong, a good one read as written.
import { describe, expect, test } from "bun:test";
import { decodeManifest, encodeManifest, manifestEntry, MANIFEST_FORMAT, MANIFEST_VERSION, type Manifest } from "../../src/daemon/manifest";

const AT = "2026-11-23T10:00:00.000Z";
const entry = (i: number) => ({
  id: `vm-${i}`, session: `luod:vm-${i}/7`, uid: 1000, gid: 1000, pid: 4000 + i, unit: i % 2 ? "vm.service" : null,
  subscribedAt: AT, readyAt: i % 3 ? AT : null,
});
const manifest = (entries: unknown[] = [entry(1), entry(2), entry(3)]) => ({
  format: MANIFEST_FORMAT, version: MANIFEST_VERSION, luod: "0.0.0-test", attempt: 7, createdAt: AT,
  kernel: { from: "7.2.13", next: { version: "7.2.14", sha256: "ab".repeat(32), cmdline: "console=ttyS0" } },
  timings: { ready_ms: 12 }, entries,
});
const bytes = (m: unknown) => new TextEncoder().encode(JSON.stringify(m));

describe("decodeManifest", () => {
  test("reads back what encodeManifest wrote", () => {
    const m = manifest() as Manifest;
    expect(decodeManifest(encodeManifest(m))).toEqual(m);
  });

  test("refuses text that is not JSON, another format and a newer version", () => {
    expect(() => decodeManifest(new TextEncoder().encode("{not json"))).toThrow(/not valid JSON/);
    expect(() => decodeManifest(bytes({ ...manifest(), format: "other" }))).toThrow(/malformed.*format/);
    expect(() => decodeManifest(bytes({ ...manifest(), version: MANIFEST_VERSION + 1 }))).toThrow(/newer than this luod/);
  });

  // every field of an entry, given a value of the wrong type, in the middle of many good entries:
  // the fast check must refuse whatever the schema refuses, and the error must name the field
  const wrong: Record<string, unknown[]> = {
    id: [7, null, undefined], session: [false, null, undefined], uid: ["1000", null, undefined],
    gid: ["1000", null], pid: [null, "1"], unit: [3, undefined], subscribedAt: [null, 0], readyAt: [5, undefined],
  };
  for (const [field, values] of Object.entries(wrong))
    for (const value of values)
      test(`refuses an entry whose ${field} is ${JSON.stringify(value) ?? "missing"}, naming the field`, () => {
        const bad: Record<string, unknown> = { ...entry(50), [field]: value };
        if (value === undefined) delete bad[field];
        const entries = [...Array.from({ length: 100 }, (_, i) => entry(i)), bad, entry(101)];
        expect(() => decodeManifest(bytes(manifest(entries)))).toThrow(new RegExp(`malformed.*${field}`));
      });

  test("refuses an entry that is not an object, and entries that are not a list", () => {
    expect(() => decodeManifest(bytes(manifest([entry(1), "vm-2"])))).toThrow(/malformed/);
    expect(() => decodeManifest(bytes(manifest([entry(1), null])))).toThrow(/malformed/);
    expect(() => decodeManifest(bytes({ ...manifest(), entries: { 0: entry(1) } }))).toThrow(/malformed.*entries/);
  });

  test("refuses a header field of the wrong type even when every entry is good", () => {
    expect(() => decodeManifest(bytes({ ...manifest(), attempt: "7" }))).toThrow(/malformed.*attempt/);
    expect(() => decodeManifest(bytes({ ...manifest(), kernel: { from: "7.2.13", next: 1 } }))).toThrow(/malformed.*next/);
  });
});

describe("manifestEntry", () => {
  test("takes the owner's fields only, in the manifest's order", () => {
    const client = { id: "vm-1", uid: 1000, gid: 1000, pid: 4001, unit: "vm.service", state: "ready", connected: true, since: AT };
    const e = manifestEntry(client, "luod:vm-1/7", client.since, AT);
    expect(JSON.stringify(e)).toBe(JSON.stringify(entry(1)));
  });
});

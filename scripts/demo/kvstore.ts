// kvstore -- the demo application: a key-value store that lives in a memfd and survives a live
// update of the kernel through luod. Run by scripts/demo/job.sh in the VM:
//
//   bun kvstore.ts --state FILE [--entries N]   boot 1: fill the store, print its SHA-256 and a few
//                                               lookups (also saved to FILE), SUBSCRIBE to luod as
//                                               "kvstore", and on START_PRESERVATION preserve the
//                                               memfd (token 1) and answer READY; then wait for the jump
//   bun kvstore.ts --state FILE --restore       boot 2: CLAIM, RETRIEVE_FD, compare SHA-256 and lookups
//                                               with FILE, FINISH, FINISHED. Exit 0 only if identical
//
// Story lines start with "DEMO: [kvstore]"; "DEMO-T name ms" (timings) and "DEMO-SHA256 hex"
// lines are for scripts/demo.sh's summary.
//
// The store is an open-addressing hash table (linear probing, FNV-1a) mapped straight from the
// memfd (MAP_SHARED), so the memfd *is* the store: nothing to serialize before a live update.
//   header (4096 B): "LUOKV\0v1", u32 slot size, u32 slot count, u32 entries  (little endian)
//   slot (192 B):    u16 key length (0 = empty), u16 value length, key[32], value[156]
import { LuoClient, createMemfd, preserveMemfd, retrieveMemfd, finishSession, fileSize, closeFd } from "../../src/client";

const ID = "kvstore", TOKEN = 1n, SOCKET = "/run/luod/liveupdate.sock";
const MAGIC = "LUOKV\0v1", HEADER = 4096, SLOT = 192, KEY_MAX = 32; // values: up to SLOT - 4 - KEY_MAX = 156 B
const SAMPLES = ["user:42", "user:1337", "user:199999", "user:4000000"];

const say = (s: string) => console.log(`DEMO: [kvstore] ${s}`);
const timing = (name: string, ms: number) => console.log(`DEMO-T ${name} ${ms.toFixed(1)}`);
const shaLine = (sha: string) => console.log(`DEMO-SHA256 ${sha}`);
const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
const since = (t0: number) => performance.now() - t0;
const enc = new TextEncoder(), dec = new TextDecoder(), scratch = new Uint8Array(KEY_MAX + 1);

class Store {
  readonly view: DataView;
  constructor(readonly mem: Uint8Array) {
    this.view = new DataView(mem.buffer, mem.byteOffset, mem.byteLength);
  }
  static bytesFor(slots: number) { return HEADER + slots * SLOT; }
  get slots() { return this.view.getUint32(12, true); }
  get entries() { return this.view.getUint32(16, true); }

  /** Writes an empty table's header (the memfd is all zeroes, so every slot is empty). */
  format(slots: number) {
    enc.encodeInto(MAGIC, this.mem);
    this.view.setUint32(8, SLOT, true);
    this.view.setUint32(12, slots, true);
    this.view.setUint32(16, 0, true);
  }
  /** Throws unless the header is ours and matches the mapping's size. */
  check() {
    const magic = dec.decode(this.mem.subarray(0, 8));
    if (magic !== MAGIC || this.view.getUint32(8, true) !== SLOT || Store.bytesFor(this.slots) !== this.mem.length)
      throw new Error(`not a kvstore of ${this.mem.length} bytes (magic ${JSON.stringify(magic)})`);
  }

  /** The slot offset holding `key`, or the empty slot where it would go. */
  private find(key: Uint8Array): number {
    let h = 2166136261;
    for (const b of key) h = Math.imul(h ^ b, 16777619) >>> 0;
    for (let i = h % this.slots, probes = 0; probes < this.slots; i = (i + 1) % this.slots, probes++) {
      const at = HEADER + i * SLOT, len = this.view.getUint16(at, true);
      if (len === 0) return at;
      let j = 0;
      if (len === key.length) while (j < len && this.mem[at + 4 + j] === key[j]) j++;
      if (j === key.length) return at;
    }
    throw new Error("store full");
  }
  /** The key's UTF-8 bytes (in a scratch buffer), or undefined if empty or too long. */
  private encodeKey(key: string): Uint8Array | undefined {
    const { read, written } = enc.encodeInto(key, scratch);
    return read === key.length && written > 0 && written <= KEY_MAX ? scratch.subarray(0, written) : undefined;
  }
  put(key: string, value: string) {
    const k = this.encodeKey(key);
    if (!k) throw new Error(`bad key: ${key}`);
    const at = this.find(k);
    if (this.view.getUint16(at, true) === 0) {
      if (this.entries + 1 >= this.slots) throw new Error("store full");
      this.view.setUint32(16, this.entries + 1, true);
      this.mem.set(k, at + 4);
    }
    const v = enc.encodeInto(value, this.mem.subarray(at + 4 + KEY_MAX, at + SLOT));
    if (v.read !== value.length) throw new Error(`value too long for ${key}`);
    this.view.setUint16(at, k.length, true);
    this.view.setUint16(at + 2, v.written, true);
  }
  get(key: string): string | undefined {
    const k = this.encodeKey(key);
    if (!k) return undefined;
    const at = this.find(k);
    if (this.view.getUint16(at, true) === 0) return undefined;
    const vlen = this.view.getUint16(at + 2, true);
    return dec.decode(this.mem.subarray(at + 4 + KEY_MAX, at + 4 + KEY_MAX + vlen));
  }
  sha256(): string {
    return new Bun.CryptoHasher("sha256").update(this.mem).digest("hex");
  }
}

/** The demo's data: a made-up user record per id, deterministic. */
const FIRST = ["Ada", "Alan", "Grace", "Linus", "Barbara", "Ken", "Dennis", "Margaret", "Edsger", "Radia", "Frances", "John"];
const LAST = ["Lovelace", "Turing", "Hopper", "Torvalds", "Liskov", "Thompson", "Ritchie", "Hamilton", "Dijkstra", "Perlman"];
const CITY = ["Oslo", "Lyon", "Kyoto", "Austin", "Lagos", "Porto", "Quito", "Perth", "Tartu", "Brno", "Dakar", "Hanoi"];
function record(i: number): string {
  let r = Math.imul(i ^ 0x9e3779b9, 0x85ebca6b) >>> 0;
  r = Math.imul(r ^ (r >>> 13), 0xc2b2ae35) >>> 0;
  return `{"name":"${FIRST[r % 12]} ${LAST[(r >>> 4) % 10]}","email":"user${i}@example.org",` +
    `"city":"${CITY[(r >>> 8) % 12]}","balance":${((r >>> 12) / 100).toFixed(2)}}`;
}

const lookups = (store: Store) => Object.fromEntries(SAMPLES.map((k) => [k, store.get(k) ?? null]));
const showLookups = (got: Record<string, string | null>, want?: Record<string, string | null>) => {
  for (const [k, v] of Object.entries(got))
    say(`  get ${k} → ${v ?? "(no such key)"}${want ? (want[k] === v ? "   ✓ same as boot 1" : "   ✗ DIFFERENT from boot 1") : ""}`);
};
/** Maps the memfd's pages into this process (MAP_SHARED: writes go straight to the memfd). */
const mapMemfd = (fd: number) => Bun.mmap(`/proc/self/fd/${fd}`, { shared: true });

// ---- boot 1 ------------------------------------------------------------------------------------
async function serve(stateFile: string, entries: number) {
  const slots = Math.ceil(entries * 1.3); // load factor ~0.77
  let t0 = performance.now();
  const memfd = createMemfd("kvstore", Store.bytesFor(slots));
  const store = new Store(mapMemfd(memfd));
  store.format(slots);
  for (let i = 0; i < entries; i++) store.put(`user:${i}`, record(i));
  const fillMs = since(t0);
  say(`filled ${store.entries} entries into a ${mib(store.mem.length)} memfd in ${(fillMs / 1000).toFixed(2)} s ` +
    `(hash table: ${slots} slots of ${SLOT} B, load ${Math.round((100 * entries) / slots)}%)`);
  timing("fill", fillMs);
  t0 = performance.now();
  const sha = store.sha256();
  say(`SHA-256 of the store: ${sha} (${since(t0).toFixed(0)} ms)`);
  shaLine(sha);
  const answers = lookups(store);
  showLookups(answers);
  await Bun.write(stateFile, JSON.stringify({ sha256: sha, entries: store.entries, bytes: store.mem.length, answers }));

  const client = await LuoClient.connect(SOCKET);
  await client.subscribe(ID, { timeoutMs: 30_000 });
  say(`subscribed to luod as "${ID}"; serving, and waiting for a live update`);
  client.on("ABORTED", (msg) => say(`update ABORTED (${String(msg.reason)}); still serving`));
  for (;;) {
    const { msg, fds } = await client.waitFor("START_PRESERVATION");
    t0 = performance.now();
    const sessionFd = fds[0]!;
    preserveMemfd(sessionFd, memfd, TOKEN);
    const preserveMs = since(t0);
    await client.ready();
    const readyMs = since(t0);
    closeFd(sessionFd); // luod keeps its own copy of the session until the jump
    say(`START_PRESERVATION (session ${String(msg.session)}): memfd preserved as token ${TOKEN} in ${preserveMs.toFixed(1)} ms, ` +
      `READY acknowledged ${readyMs.toFixed(1)} ms after the request; the store stays mapped until the jump`);
    timing("preserve", readyMs);
  }
}

// ---- boot 2 ------------------------------------------------------------------------------------
async function restore(stateFile: string): Promise<number> {
  const before = await Bun.file(stateFile).json() as { sha256: string; entries: number; answers: Record<string, string | null> };
  const t0 = performance.now();
  const client = await LuoClient.connect(SOCKET);
  const connectMs = since(t0);
  const { session, sessionFd } = await client.claim(ID, { timeoutMs: 30_000 });
  const claimMs = since(t0) - connectMs;
  const memfd = retrieveMemfd(sessionFd, TOKEN);
  const retrieveMs = since(t0) - connectMs - claimMs;
  say(`connected to luod (${connectMs.toFixed(0)} ms); CLAIM "${ID}" → session ${session} (${claimMs.toFixed(1)} ms); ` +
    `RETRIEVE_FD token ${TOKEN} → a ${mib(fileSize(memfd))} memfd (${retrieveMs.toFixed(1)} ms)`);
  const store = new Store(mapMemfd(memfd));
  let sha = "(unreadable)", answers: Record<string, string | null> = {};
  try {
    store.check();
    const t1 = performance.now();
    sha = store.sha256();
    say(`store header: ${store.entries} entries, ${store.slots} slots; SHA-256 ${sha} (${since(t1).toFixed(0)} ms)`);
    shaLine(sha);
    answers = lookups(store);
    showLookups(answers, before.answers);
  } catch (e) {
    say(`the restored memfd is not a valid store: ${(e as Error).message}`);
  }
  finishSession(sessionFd);
  closeFd(sessionFd);
  closeFd(memfd); // the mapping keeps the pages
  await client.finished(ID, { timeoutMs: 30_000 });
  client.close();
  timing("claim", since(t0));
  say(`FINISH on the session, FINISHED sent to luod; claim + verify took ${since(t0).toFixed(0)} ms`);
  const same = sha === before.sha256 && JSON.stringify(answers) === JSON.stringify(before.answers);
  say(same ? `SHA-256 equals boot 1's (${before.sha256.slice(0, 16)}…): all ${before.entries} entries came back intact`
    : `MISMATCH: SHA-256 ${sha} but boot 1 had ${before.sha256}`);
  return same ? 0 : 1;
}

const args = process.argv.slice(2);
const opt = (name: string) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : undefined; };
const stateFile = opt("state");
if (!stateFile) {
  console.error("usage: kvstore.ts --state FILE [--entries N] [--restore]");
  process.exit(2);
}
try {
  if (args.includes("--restore")) process.exit(await restore(stateFile));
  await serve(stateFile, Number(opt("entries") ?? 200_000));
} catch (e) {
  say(`ERROR: ${(e as Error).message}`);
  process.exit(1);
}

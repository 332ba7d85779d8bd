// Input generation for the protocol fuzzer: a seeded PRNG (reproducible from its seed) and
// generators of requests — valid ones, mutated ones, random JSON, random bytes — plus the plan of
// one connection: its byte stream cut into writes, fds attached to some lines, and how it ends.
//
// Nothing here can make luod load a kernel: LOAD only ever carries memfds holding a few bytes
// of text, FIFOs, directories, O_PATH fds or /dev/null (see FdKind), which fail the bzImage check
// (sockets are refused before that).

/** sfc32: small, fast, good enough, and the same sequence for the same seed everywhere. */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  constructor(seed: number) {
    this.a = 0x9e3779b9;
    this.b = 0x243f6a88;
    this.c = 0xb7e15162;
    this.d = seed >>> 0;
    for (let i = 0; i < 16; i++) this.u32();
  }
  u32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }
  /** [0, 1) */
  float(): number {
    return this.u32() / 4294967296;
  }
  /** Integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.float() * (hi - lo + 1));
  }
  chance(p: number): boolean {
    return this.float() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.float() * items.length)]!;
  }
  /** A new generator derived from this one (independent streams per connection). */
  fork(): Rng {
    return new Rng(this.u32());
  }
}

export const COMMANDS = [
  "SUBSCRIBE", "PREPARE", "READY", "FAIL", "UNSUBSCRIBE", "CLAIM", "FINISHED",
  "STATUS", "LIST", "LOAD", "UNLOAD", "CHECK", "KEXEC", "ABORT", "DISCARD",
] as const;
// EVICT is not among them: a root fuzz connection evicting another's id would drop a connection
// the check expects every reply on. The update fuzz (update-fuzz.test.ts) sends it.

const ID_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._@:-";
const NASTY_STRINGS = [
  "", " ", "\u0000", "\t", "\\", '"', "luod", "systemd", "luod:vm-1/1", "../../etc/passwd", "é", "😀", "\u2028", "\ud800",
  "%s%n", "null", "true", "[]", "{}", "0", "-1", "1e309", "NaN", "__proto__", "constructor", "toString",
];

export function randomString(rng: Rng, max: number): string {
  const len = rng.int(0, max);
  let s = "";
  for (let i = 0; i < len; i++) {
    const r = rng.float();
    if (r < 0.7) s += String.fromCharCode(rng.int(0x20, 0x7e));
    else if (r < 0.85) s += String.fromCharCode(rng.int(0, 0x1f));
    else if (r < 0.95) s += String.fromCharCode(rng.int(0x80, 0x7ff));
    else s += String.fromCodePoint(rng.int(0x800, 0x10ffff));
  }
  return s;
}

export function validId(rng: Rng): string {
  if (rng.chance(0.7)) return `vm-${rng.int(1, 12)}`; // a small pool: EEXIST and friends happen
  let s = "";
  for (let i = rng.int(1, 48); i > 0; i--) s += ID_CHARS[rng.int(0, ID_CHARS.length - 1)];
  return s;
}

function badId(rng: Rng): unknown {
  return rng.pick<() => unknown>([
    () => "",
    () => "x".repeat(rng.int(49, 300)),
    () => `vm ${rng.int(0, 9)}`,
    () => `vm/${rng.int(0, 9)}`,
    () => randomString(rng, 20),
    () => rng.pick(NASTY_STRINGS),
  ])();
}

/** A value of any JSON type, nested at most `depth` levels. */
export function randomJson(rng: Rng, depth = 4): unknown {
  const r = rng.int(0, depth > 0 ? 9 : 6);
  switch (r) {
    case 0: return null;
    case 1: return rng.chance(0.5);
    case 2: return rng.int(-1000, 1000);
    case 3: return rng.pick([0, -0, 1.5, -1, 2 ** 53, 2 ** 53 + 2, 1e308, -1e308, 5e-324, 2 ** 31, 2 ** 32, 3600001, 99, 100]);
    case 4: return randomString(rng, 40);
    case 5: return rng.pick(NASTY_STRINGS);
    case 6: return rng.pick(COMMANDS);
    case 7: return Array.from({ length: rng.int(0, 5) }, () => randomJson(rng, depth - 1));
    default: {
      const o: Record<string, unknown> = {};
      for (let i = rng.int(0, 5); i > 0; i--) o[rng.chance(0.5) ? rng.pick(FIELDS) : randomString(rng, 10)] = randomJson(rng, depth - 1);
      return o;
    }
  }
}

const FIELDS = ["cmd", "id", "tag", "fds", "reason", "cmdline", "initrd", "force", "sha256", "timeout_ms", "dry_run", "ok", "reply", "event", "session"];

/** A well-formed request of `cmd` (its fds field says `nfds` when > 0). */
export function validRequest(rng: Rng, cmd: string, tag: number): Record<string, unknown> {
  const m: Record<string, unknown> = { cmd };
  switch (cmd) {
    case "SUBSCRIBE":
    case "CLAIM":
    case "FINISHED":
    case "DISCARD":
      m.id = validId(rng);
      break;
    case "PREPARE":
    case "READY":
      if (rng.chance(0.3)) m.id = validId(rng);
      break;
    case "FAIL":
    case "ABORT":
      if (rng.chance(0.5)) m.reason = randomString(rng, 100);
      break;
    case "EVICT":
      m.id = rng.chance(0.8) ? validId(rng) : randomString(rng, 20);
      if (rng.chance(0.3)) m.force = rng.chance(0.5);
      if (rng.chance(0.6)) m.reason = randomString(rng, 100);
      break;
    case "LOAD": {
      m.cmdline = rng.pick(["liveupdate=on", "console=ttyS0 liveupdate=on kho=on", "BOOT_IMAGE=/vmlinuz root=/dev/sda liveupdate=on", "quiet", ""]);
      m.initrd = rng.chance(0.3);
      m.fds = m.initrd ? 2 : 1;
      if (rng.chance(0.2)) m.force = rng.chance(0.5);
      if (rng.chance(0.2)) m.sha256 = "ab".repeat(32);
      break;
    }
    case "KEXEC":
      if (rng.chance(0.5)) m.timeout_ms = rng.int(100, 3_600_000);
      if (rng.chance(0.5)) m.dry_run = rng.chance(0.5);
      break;
  }
  if (rng.chance(0.8)) m.tag = tag;
  return m;
}

/** A valid request with one or more things wrong with it. */
export function mutatedRequest(rng: Rng, cmd: string, tag: number): Record<string, unknown> {
  const m = validRequest(rng, cmd, tag);
  for (let n = rng.int(1, 3); n > 0; n--) {
    const keys = Object.keys(m);
    switch (rng.int(0, 9)) {
      case 0: delete m[rng.pick(keys)]; break;
      case 1: m[rng.chance(0.5) ? rng.pick(FIELDS) : randomString(rng, 12)] = randomJson(rng, 2); break;
      case 2: m[rng.pick(keys)] = randomJson(rng, 2); break;
      case 3: m.cmd = rng.pick([cmd.toLowerCase(), cmd + " ", ` ${cmd}`, cmd.slice(1), rng.pick(COMMANDS), randomString(rng, 40), 7, null, [cmd]]); break;
      case 4: m.fds = rng.pick<unknown>([-1, 0, 1, 2, 3, 1.5, "1", 1e9, null, true]); break;
      case 5: m.tag = rng.pick<unknown>([randomString(rng, 80), "t".repeat(65), -1, 1.5, 2 ** 60, null, {}, [1]]); break;
      case 6: m.id = badId(rng); break;
      case 7: m.reason = rng.pick<unknown>(["r".repeat(257), randomString(rng, 300), 5, null]); break;
      case 8: m.timeout_ms = rng.pick<unknown>([99, 100, 3_600_000, 3_600_001, -1, 1.5, "30000", 0, 2 ** 53]); break;
      default: m.sha256 = rng.pick<unknown>(["z".repeat(64), "a".repeat(63), "A".repeat(64), "", 42]); break;
    }
  }
  return m;
}

/** Bytes of a serialized message with a few bytes flipped, inserted or removed. */
function mangledBytes(rng: Rng, text: string): Uint8Array {
  const bytes = Array.from(new TextEncoder().encode(text));
  for (let n = rng.int(1, 4); n > 0 && bytes.length > 0; n--) {
    const at = rng.int(0, bytes.length - 1);
    switch (rng.int(0, 2)) {
      case 0: bytes[at] = rng.int(0, 255); break;
      case 1: bytes.splice(at, 0, rng.pick([0x22, 0x7b, 0x7d, 0x5b, 0x5d, 0x2c, 0x3a, 0x5c, 0x00, 0xc3, 0xff, rng.int(0, 255)])); break;
      default: bytes.splice(at, 1); break;
    }
  }
  return new Uint8Array(bytes.filter((b) => b !== 0x0a)); // line breaks are the stream's business
}

function randomBytes(rng: Rng, max: number): Uint8Array {
  const out = new Uint8Array(rng.int(0, max));
  for (let i = 0; i < out.length; i++) {
    const b = rng.int(0, 255);
    out[i] = b === 0x0a ? 0x20 : b;
  }
  return out;
}

const enc = new TextEncoder();

export type LineKind = "valid" | "mutated" | "mangled" | "json" | "bytes" | "blank" | "big";

/** One line's bytes, without its newline, and what kind of input it is. */
export interface Line {
  kind: LineKind;
  bytes: Uint8Array;
  /** The unique tag of a request that still carries it (valid or mutated-but-tagged). */
  tag: number | null;
  cmd: string | null;
}

/**
 * One random line. `commands` is the command list to draw from (the caller removes UNLOAD when
 * the host has a kexec image loaded).
 */
export function randomLine(rng: Rng, commands: readonly string[], tag: number): Line {
  const r = rng.float();
  const cmd = rng.pick(commands);
  if (r < 0.35) {
    const m = validRequest(rng, cmd, tag);
    return { kind: "valid", bytes: enc.encode(JSON.stringify(m)), tag: m.tag === tag ? tag : null, cmd };
  }
  if (r < 0.65) {
    const m = mutatedRequest(rng, cmd, tag);
    return { kind: "mutated", bytes: enc.encode(JSON.stringify(m)), tag: m.tag === tag ? tag : null, cmd: typeof m.cmd === "string" ? m.cmd : null };
  }
  if (r < 0.78) {
    // untagged: a flipped digit in a tag would make it another line's tag
    const { tag: _, ...m } = validRequest(rng, cmd, tag);
    return { kind: "mangled", bytes: mangledBytes(rng, JSON.stringify(m)), tag: null, cmd: null };
  }
  if (r < 0.88) return { kind: "json", bytes: enc.encode(JSON.stringify(randomJson(rng))), tag: null, cmd: null };
  if (r < 0.96) return { kind: "bytes", bytes: randomBytes(rng, 200), tag: null, cmd: null };
  if (r < 0.995) return { kind: "blank", bytes: enc.encode(rng.pick(["", " ", "\t", "\r", "  \r"])), tag: null, cmd: null };
  // a long line that still fits the 65536-byte limit
  const m = { cmd, id: validId(rng), tag: "t".repeat(rng.int(30_000, 65_000)) };
  return { kind: "big", bytes: enc.encode(JSON.stringify(m)), tag: null, cmd };
}

/**
 * Every kind of fd a peer can put in SCM_RIGHTS (tests/fuzz/support.ts opens them): luod's own
 * socket (a fresh connection to it), one end of a socket pair, a directory, a FIFO, an O_PATH fd,
 * a memfd, /dev/null. luod refuses the sockets (EBADMSG) and must keep none of them.
 */
export const FD_KINDS = ["luod-socket", "socketpair", "dir", "fifo", "opath", "memfd", "devnull"] as const;
export type FdKind = (typeof FD_KINDS)[number];

/** A write of the connection: bytes, and fds that travel with their first byte. */
export interface Write {
  bytes: Uint8Array;
  fds: FdKind[];
}

export type Ending =
  /** Read every reply, then close: luod must have answered each non-blank line exactly once. */
  | "graceful"
  /** Close right after the last write (maybe mid-line, maybe with replies unread). */
  | "abrupt"
  /** Never read: luod must stall this connection without growing, until it is closed. */
  | "stall";

export interface Plan {
  writes: Write[];
  ending: Ending;
  /** Complete lines sent that luod answers (non-blank, valid UTF-8 or not). */
  expectedReplies: number;
  /** Tags in the order luod must echo them (KEXEC excepted: its reply comes when the update ends). */
  orderedTags: number[];
  /** Every tag this connection's lines were generated with (mutations may have lost some). */
  tags: Set<number>;
  lines: number;
}

export interface PlanOptions {
  commands: readonly string[];
  messages: number;
  nextTag: () => number;
  /** Probability that a line carries fds. */
  fdRate: number;
}

const decoder = new TextDecoder("utf-8", { fatal: true });

/** Whether luod ignores the line (decodes as UTF-8 and is all whitespace, as Connection judges it). */
export function isBlank(bytes: Uint8Array): boolean {
  try {
    return decoder.decode(bytes).trim() === "";
  } catch {
    return false;
  }
}

/** The byte stream of one connection, cut into writes; fd-carrying lines start a write of their own. */
export function planConnection(rng: Rng, o: PlanOptions): Plan {
  const writes: Write[] = [];
  let current: number[] = [];
  let currentFds: FdKind[] = [];
  let expectedReplies = 0;
  const orderedTags: number[] = [];
  const tags = new Set<number>();
  const flush = () => {
    if (current.length || currentFds.length) writes.push({ bytes: new Uint8Array(current), fds: currentFds });
    current = [];
    currentFds = [];
  };
  const ending: Ending = rng.chance(0.8) ? "graceful" : rng.chance(0.75) ? "abrupt" : "stall";
  for (let i = 0; i < o.messages; i++) {
    const tag = o.nextTag();
    tags.add(tag);
    const line = randomLine(rng, o.commands, tag);
    let fds: FdKind[] = [];
    if (line.kind !== "blank" && rng.chance(o.fdRate)) {
      fds = Array.from({ length: rng.int(1, 3) }, () => rng.pick<FdKind>(FD_KINDS));
    }
    if (fds.length) {
      flush();
      currentFds = fds;
    }
    for (const b of line.bytes) current.push(b);
    current.push(rng.chance(0.05) ? 0x0d : 0x0a);
    if (current[current.length - 1] === 0x0d) current.push(0x0a); // CRLF
    if (!isBlank(line.bytes)) expectedReplies++;
    if (line.tag !== null && line.cmd !== "KEXEC" && fds.length === 0 && line.kind === "valid") orderedTags.push(line.tag);
    // cut the stream at random points, also in the middle of a line
    if (rng.chance(0.08)) flush();
  }
  flush();
  // split some writes in two at a random byte (the fds stay with the first part)
  const cut: Write[] = [];
  for (const w of writes) {
    if (w.bytes.length > 2 && rng.chance(0.2)) {
      const at = rng.int(1, w.bytes.length - 1);
      cut.push({ bytes: w.bytes.subarray(0, at), fds: w.fds }, { bytes: w.bytes.subarray(at), fds: [] });
    } else cut.push(w);
  }
  if (ending === "abrupt" && rng.chance(0.5)) {
    // end in the middle of a line, maybe one that carries fds
    cut.push({ bytes: enc.encode('{"cmd":"LOAD","cmdline":"x","initrd":true,"fds":2'.slice(0, rng.int(1, 48))), fds: rng.chance(0.7) ? Array.from({ length: rng.int(1, 3) }, () => rng.pick(FD_KINDS)) : [] });
  }
  return { writes: cut, ending, expectedReplies, orderedTags, tags, lines: o.messages };
}

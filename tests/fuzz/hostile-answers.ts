// Random answers of a hostile luod (tests/fixtures/hostile-luod.ts, mode `random:SEED`), for the
// fuzz of luoctl and the client library (tests/fuzz/hostile-luod-fuzz.test.ts). The n-th
// connection the fixture accepts gets hostileAnswer(SEED, n, cmd); the test computes the same
// answer to know what to expect. Every answer is broken: no reply a client may take as valid.
import { Rng, randomJson, randomString } from "./generate";

export type HostileFd = "memfd" | "devnull" | "socketpair";

export interface HostileAnswer {
  /** What kind of break (for the test's tally and its messages). */
  kind: string;
  /** Bytes to send, in parts, with fds on some parts. */
  parts: { text: string; fds: HostileFd[] }[];
  /** Nothing the client can take as a reply arrives: it must give up at its deadline. */
  silent: boolean;
  /** Fds arrive with a line that never ends: the client may refuse them at once or give up at its deadline. */
  either?: boolean;
}

const line = (x: unknown) => JSON.stringify(x) + "\n";

export function hostileAnswer(seed: number, n: number, cmd: string): HostileAnswer {
  const rng = new Rng((seed ^ Math.imul(n + 1, 0x9e3779b1)) >>> 0);
  const kinds = ["bytes", "json", "ok-type", "reply-name", "error-shape", "stray-tag", "huge", "stray-fds", "claimed-fds", "silence", "partial", "event-only"];
  const kind = rng.pick(kinds);
  const fds = (): HostileFd[] => Array.from({ length: rng.int(1, 4) }, () => rng.pick<HostileFd>(["memfd", "devnull", "socketpair"]));
  const one = (text: string, f: HostileFd[] = []) => ({ kind, parts: [{ text, fds: f }], silent: false });
  switch (kind) {
    case "bytes": {
      // random bytes on one line: not JSON, or JSON that is not an object
      let s = "";
      for (let i = rng.int(1, 300); i > 0; i--) {
        const b = rng.int(0, 255);
        s += String.fromCharCode(b === 0x0a ? 0x20 : b);
      }
      return one(`${rng.pick(["", "[", "\"", "}"])}${s}\n`);
    }
    case "json": {
      const v = randomJson(rng, 4);
      // an object is made a reply with an ok that is not a boolean
      return one(line(v !== null && typeof v === "object" && !Array.isArray(v) ? { ...v, reply: cmd, ok: rng.pick([1, "yes", null]) } : v));
    }
    case "ok-type":
      return one(line({ reply: cmd, ok: rng.pick<unknown>(["true", 1, 0, null, [], {}, "false"]) }));
    case "reply-name":
      return one(line({ reply: rng.pick<unknown>([null, 7, cmd.toLowerCase(), `${cmd} `, "UNLOAD" === cmd ? "LIST" : "UNLOAD", randomString(rng, 20) + "#"]), ok: true }));
    case "error-shape":
      return one(line({ reply: cmd, ok: false, error: rng.pick<unknown>([null, "no", 5, [], { code: 5, message: "x" }, { code: "EPERM" }, { message: "m" }]) }));
    case "stray-tag":
      return one(line({ reply: cmd, ok: true, tag: `not-yours-${randomString(rng, 8)}` }));
    case "huge":
      return one(line({ reply: cmd, ok: true, padding: "A".repeat(2 * 1024 * 1024 + rng.int(1, 100_000)) }));
    case "stray-fds":
      return one(line({ reply: cmd, ok: rng.chance(0.5) }).replace(/}\n$/, rng.chance(0.5) ? ',"error":{"code":"EIO","message":"x"}}\n' : "}\n"), fds());
    case "claimed-fds": {
      // an ok reply claims fds its command never carries (STATUS, LIST, CHECK, UNLOAD, ABORT, KEXEC)
      const f = fds();
      return one(line({ reply: cmd, ok: true, fds: f.length }), f);
    }
    case "silence":
      return { kind, parts: [], silent: true };
    case "partial":
      // the start of a reply and then nothing: the line never ends
    {
      const f = rng.chance(0.3) ? fds() : [];
      return { kind, parts: [{ text: line({ reply: cmd, ok: true }).slice(0, rng.int(1, 10)), fds: f }], silent: f.length === 0, either: f.length > 0 };
    }
    default:
      // events only, never the reply
      return { kind, parts: [{ text: line({ event: rng.pick(["PROGRESS", "ABORTED", "X"]), reason: randomString(rng, 30) }), fds: [] }], silent: true };
  }
}

// The peer benchmark's arithmetic (bench/peer/summary.ts): times from the new userspace's start,
// the last of N as "all hold", and which fd-store row a luod row is compared with.
import { describe, expect, test } from "bun:test";
import { markdown, ratios, rows, type PeerClient, type PeerStep } from "../../bench/peer/summary";

const MS = 1_000_000; // ns
const client = (kind: PeerClient["kind"], id: string, heldMs: number, ok = true): PeerClient => ({
  kind, id, held_ns: (10_000 + heldMs) * MS, verified_ns: (10_000 + heldMs + 2) * MS, bytes: 1 << 20, ok,
});
// userspace started at 10 s on CLOCK_MONOTONIC; luod at +500 ms, ready at +900 ms
const step = (name: string, mode: string, clients: PeerClient[]): PeerStep => ({
  step: name, n: Number(name.slice(1)), mib: 1, luod_mode: `${mode} mode`, userspace_us: 10_000_000,
  luod_start_us: 10_500_000, luod_ready_us: 10_900_000, expected: clients.length, clients,
  started_us: Object.fromEntries(clients.map((c, i) => [`${c.kind}-${c.id}`, 10_100_000 + i * 1000])),
});

describe("bench/peer/summary", () => {
  const s2 = step("s2", "systemd", [client("fdstore", "s2-1", 300), client("fdstore", "s2-2", 400), client("luod", "s2-1", 1000), client("luod", "s2-2", 1200, false)]);
  const d2 = step("d2", "direct", [client("luod", "d2-1", 700), client("luod", "d2-2", 800)]);
  const p2 = step("p2", "systemd", [client("fdstore", "p2-1", 250), client("fdstore", "p2-2", 500)]);

  test("times are from PID 1's start of userspace; all N hold when the last one does", () => {
    const [f, l] = rows([s2]);
    expect(f).toMatchObject({ kind: "fdstore", last_started_ms: 101, first_held_ms: 300, all_held_ms: 400, all_verified_ms: 402, luod_start_ms: null });
    expect(l).toMatchObject({ kind: "luod", mode: "systemd", all_held_ms: 1200, luod_start_ms: 500, luod_ready_ms: 900 });
  });

  test("a memfd that came back altered is counted, not hidden", () => {
    expect(rows([s2])[1]).toMatchObject({ got: 2, intact: 1 });
  });

  test("without every service's start time the column stays empty rather than partial", () => {
    expect(rows([{ ...p2, started_us: { "fdstore-p2-1": 10_100_000 } }])[0]!.last_started_ms).toBeNull();
  });

  test("luod is compared with the fd store of the same kexec, and a direct-mode step with the fd-store-only step of its N", () => {
    expect(ratios(rows([s2, d2, p2]))).toEqual([
      { n: 2, mode: "systemd", luod_step: "s2", peer_step: "s2", luod_all_held_ms: 1200, peer_all_held_ms: 400, ratio: 3 },
      { n: 2, mode: "direct", luod_step: "d2", peer_step: "p2", luod_all_held_ms: 800, peer_all_held_ms: 500, ratio: 1.6 },
    ]);
  });

  test("the table has a row per step and kind and a ratio per luod row", () => {
    const md = markdown([s2, d2, p2]);
    expect(md).toContain("| s2 | systemd | 2 | luod | 1/2 | 500 ms | 900 ms | 103 ms | 1000 ms |");
    expect(md).toContain("| 2 | direct | 800 ms (d2) | 500 ms (p2) | 1.60× |");
  });
});

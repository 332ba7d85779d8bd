// bench/lib/blackout.ts: a VM's blackout put on the host clock from the console of a blackout run.
import { describe, expect, test } from "bun:test";
import { blackouts, parseConsole, parseLuoQemuBlackout } from "../../bench/lib/blackout";

const LINE =
  "luo-qemu[vm-1]: resumed: blackout 9.40 s = pause + state save 0.20 s, barrier (READY → luod's commit) 0.30 s, " +
  "kernel jump (commit → new kernel) 1.10 s, kernel start → luo-qemu start 6.00 s, luo-qemu start → CLAIMED 0.80 s (of it connect + SUBSCRIBE 0.05 s, CLAIM 0.03 s), " +
  "→ QEMU start 0.10 s, QEMU start → incoming done 0.70 s, → cont 0.20 s (device state 700 bytes; RAM moved by the migration 21000 of 16777216 bytes)";

describe("luo-qemu's blackout line", () => {
  test("every phase is read, in ms", () => {
    expect(parseLuoQemuBlackout(LINE)).toEqual({
      total: 9400, pause_save: 200, barrier: 300, kernel_jump: 1100, kernel_to_luoqemu: 6000,
      luoqemu_to_claimed: 800, subscribe: 50, claim: 30, claimed_to_qemu: 100, qemu_to_loaded: 700, loaded_to_cont: 200,
    });
  });
  test("a luo-qemu that does not time its round trips to luod: the phases still, the round trips null", () => {
    const older = parseLuoQemuBlackout(LINE.replace(" (of it connect + SUBSCRIBE 0.05 s, CLAIM 0.03 s)", ""));
    expect(older?.luoqemu_to_claimed).toBe(800);
    expect(older?.subscribe).toBeNull();
    expect(older?.claim).toBeNull();
  });
  test("a line of another shape is not a blackout", () => {
    expect(parseLuoQemuBlackout(LINE.replace("→ cont", "→ resume"))).toBeNull();
  });
});

// Boot 1's wall clock is 2.5 s behind the host's console clock (+ its 0.5 s start); boot 2's
// wall clock is 0.9 s off in the other direction (the RTC's second), which luo-qemu's own
// kernel-jump phase cannot see.
const WALL1 = 1_000_000_000_000;
const console_ = [
  "[   0.400] [    0.000000] Linux version 7.2.13",
  "[   1.000] [    0.600000] Run /init as init process",
  `[  20.000] BLACKOUT: CLOCK boot 1 wall_ms ${WALL1 + 17_500} uptime_s 19.60`,
  `[  20.030] BLACKOUT: CLOCK boot 1 wall_ms ${WALL1 + 17_520} uptime_s 19.62`, // delayed by 10 ms
  // luod commits at WALL1 + 18 000 (host 20.5), calls reboot() 40 ms later (host 20.54)
  '[  20.545] {"ok":true,"event":"REBOOTING","update":1,"timings":{"all_ready_ms":500,"manifest_ms":510,"reboot_called_ms":550}}',
  "[  21.040] [   20.640000] kexec_core: Starting new kernel",
  "[  21.600] [    0.000000] Linux version 7.2.13",
  // boot 2's boot clock: host = uptime + 21.5 s
  "[  23.000] [    1.500000] Run /init as init process",
  "[  23.500] BLACKOUT: MARK boot 2 luod-start uptime_s 2.00",
  "[  24.500] BLACKOUT: MARK boot 2 luod-listening uptime_s 3.00",
  "[  24.520] BLACKOUT: MARK boot 2 vms-start uptime_s 3.02",
  `[  31.000] BLACKOUT: VM 1 ${LINE}`,
  "[  31.200] BLACKOUT: CHECK vm-1 / (deleted) COUNTER 0 MARKER ok PATTERN ok  BOOT 1",
  `[  32.000] BLACKOUT: CLOCK boot 2 wall_ms ${WALL1 + 9_600} uptime_s 10.50`,
].join("\n");
const status2 = {
  previous_update: { attempt: 1, created_at: new Date(WALL1 + 18_000).toISOString(), timings: { all_ready_ms: 500, manifest_ms: 510 } }, // the manifest's: up to manifest_ms
};

describe("a blackout run's console", () => {
  const boots = parseConsole(console_);
  test("each boot's clocks are mapped onto the host's by the smallest offset of their samples", () => {
    expect(boots).toHaveLength(2);
    expect(boots[0]!.wall_to_host).toBe(20_000 - (WALL1 + 17_500));
    expect(boots[0]!.uptime_to_host).toBe(400);
    expect(boots[1]!.uptime_to_host).toBe(21_500);
    expect(boots[1]!.marks).toEqual({ "luod-start": 2000, "luod-listening": 3000, "vms-start": 3020 });
    expect(boots[0]!.kexec_host).toBe(21_040);
    expect(boots[1]!.init_uptime).toBe(1500);
    expect(boots[0]!.rebooting?.timings.reboot_called_ms).toBe(550);
  });

  test("the phases are on the host clock and add up to the VM's blackout", () => {
    const [u] = blackouts(boots, { 2: status2 });
    expect(u!.vms).toBe(1);
    const v = u!.per_vm[0]!;
    // stop at host 20.5 − 0.3 − 0.2 = 20.0; cont at 21.5 + 6.0 + 0.8 + 0.1 + 0.7 + 0.2 = 29.3
    expect(v.total).toBe(9300);
    expect(v.pause_save).toBe(200);
    expect(v.wait_others).toBe(0);
    expect(v.luod_barrier).toBe(340); // READY at 20.2 → reboot() at 20.5 + (550 − 510) ms
    expect(v.kernel).toBe(23_000 - 20_540);
    expect(v.init_to_luod).toBe(500);
    expect(v.luod_start).toBe(1000);
    expect(v.listening_to_luoqemu).toBe(27_500 - 24_500);
    expect(v.luoqemu_to_claimed).toBe(800);
    expect(v.claimed_to_cont).toBe(1000);
    const sum = v.pause_save + v.wait_others + v.luod_barrier + v.kernel + v.init_to_luod + v.luod_start + v.listening_to_luoqemu + v.luoqemu_to_claimed + v.claimed_to_cont;
    expect(sum).toBe(v.total);
    expect(v.luod_start_to_claimed).toBe(28_300 - 23_500);
    expect(v.luod_share).toBeCloseTo((340 + 4800) / 9300, 6);
    expect(v.luod_replies).toBe(80);
    expect(v.luod_own_share).toBeCloseTo((340 + 1000 + 80) / 9300, 6);
    expect(u!.luod.commit_ms).toBe(50);
    expect(u!.kernel.reboot_to_kexec_ms).toBe(500);
    expect(u!.checks).toHaveLength(1);
  });

  test("an update whose boot printed no clock samples is left out, not guessed", () => {
    const noClock = console_.split("\n").filter((l) => !l.includes("CLOCK boot 1")).join("\n");
    expect(blackouts(parseConsole(noClock), { 2: status2 })).toEqual([]);
  });
});

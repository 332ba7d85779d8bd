// luoctl end to end against a fake luod on a real unix socket: what it sends, what it prints,
// how it exits.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LuoClient } from "../../src/client/client";
import { FakeLuod, FakeLuodError } from "../../src/client/fake-luod";
import { fileSize, readFull } from "../../src/client";
import { luoctlMain } from "../../src/ctl/main";
import type { CtlIo } from "../../src/ctl/io";
import { VERSION } from "../../src/version";

let fake: FakeLuod;
let dir: string;

beforeEach(async () => {
  fake = await FakeLuod.start();
  dir = mkdtempSync(join(tmpdir(), "luoctl-e2e-"));
});
afterEach(() => {
  fake.close();
  rmSync(dir, { recursive: true, force: true });
});

async function luoctl(args: string[], overrides: Partial<CtlIo> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await luoctlMain(["--socket", fake.path, ...args], {
    stdout: (t) => void out.push(t),
    stderr: (t) => void err.push(t),
    stdoutIsTTY: false,
    stderrIsTTY: false,
    env: {},
    readProcCmdline: () => "BOOT_IMAGE=/boot/vmlinuz-7.2.12 root=/dev/vda ro kho=on\n",
    onInterrupt: () => () => {},
    connectOnce: inProcess,
    ...overrides,
  });
  return { code, out: out.join(""), err: err.join("") };
}

// The fake luod runs in this very process: luoctl's blocking one-shot client would wait on it
// while starving it, so here the quick commands go through the event-loop client. The one-shot
// path is tested against the real luod in a separate process (tests/integration).
const inProcess = (path: string) => LuoClient.connect(path);

const STATUS = {
  luod: { version: "0.1.0", pid: 42, connections: 1 },
  phase: "idle",
  update: null,
  clients: { subscribed: 2, ready: 0 },
  kernel: { loaded: false },
  restored: [{ id: "vm-3", session: "luod:vm-3/1", state: "unclaimed", uid: 0, unit: null, age_s: 75 }],
  previous_update: null,
};

function readAll(fd: number): string {
  const b = new Uint8Array(fileSize(fd));
  readFull(fd, b, 0);
  return new TextDecoder().decode(b);
}

describe("status / list", () => {
  test("--version names luoctl's version and the version of the luod it reaches, or says it reaches none", async () => {
    fake.handle("STATUS", () => STATUS);
    const r = await luoctl(["--version"]);
    expect(r.code).toBe(0);
    expect(r.out).toBe(`luoctl ${VERSION}\nluod 0.1.0 (${fake.path})\n`);
    const none = await luoctl(["--version", "--socket", join(dir, "no.sock")]);
    expect(none.code).toBe(0);
    expect(none.out).toBe(`luoctl ${VERSION}\nluod not reachable at ${join(dir, "no.sock")} (ENOENT)\n`);
  });

  test("--json before the command, after it, or both: one JSON document", async () => {
    fake.handle("STATUS", () => STATUS);
    for (const args of [["--json", "status"], ["status", "--json", "--json"], ["--json", "status", "--json"]]) {
      const r = await luoctl(args);
      expect(r.code).toBe(0);
      expect(JSON.parse(r.out)).toMatchObject({ ok: true, phase: "idle" });
    }
  });

  test("status prints the phase and restored sessions", async () => {
    fake.handle("STATUS", () => STATUS);
    const r = await luoctl(["status"]);
    expect(r.code).toBe(0);
    expect(r.err).toBe("");
    expect(r.out).toContain("phase:");
    expect(r.out).toMatch(/phase:\s+idle/);
    expect(r.out).toMatch(/\*vm-3\s+unclaimed\s+1m15s/);
    expect(fake.requests.map((q) => q.msg)).toEqual([{ cmd: "STATUS" }]);
  });

  test("status --json is exactly one JSON document", async () => {
    fake.handle("STATUS", () => STATUS);
    const r = await luoctl(["status", "--json"]);
    expect(r.code).toBe(0);
    expect(r.out.trimEnd().split("\n").length).toBe(1);
    expect(JSON.parse(r.out)).toEqual({ ok: true, ...STATUS, json_version: 1 });
  });

  test("list", async () => {
    fake.handle("LIST", () => ({ clients: [{ id: "vm-1", uid: 0, gid: 0, pid: 7, state: "subscribed", connected: true, since: new Date().toISOString(), session: null }] }));
    const r = await luoctl(["list"]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^ID\s+STATE/);
    expect(r.out).toMatch(/vm-1\s+subscribed\s+7/);
  });

  test("LUOD_SOCKET is honoured when --socket is absent", async () => {
    fake.handle("STATUS", () => STATUS);
    const out: string[] = [];
    const code = await luoctlMain(["status"], {
      stdout: (t) => void out.push(t), stderr: () => {}, env: { LUOD_SOCKET: fake.path }, stdoutIsTTY: false, stderrIsTTY: false,
      connectOnce: inProcess,
    });
    expect(code).toBe(0);
    expect(out.join("")).toMatch(/phase:\s+idle/);
  });
});

describe("cannot reach luod: exit 3", () => {
  test("socket missing", async () => {
    const r = await luoctl(["status", "--socket", join(dir, "nope.sock")]);
    expect(r.code).toBe(3);
    expect(r.out).toBe("");
    expect(r.err).toBe(`luoctl: cannot reach luod at ${join(dir, "nope.sock")}: no such socket (is luod running?)\n`);
  });
  test("socket missing, --json", async () => {
    const r = await luoctl(["--json", "list", "--socket", join(dir, "nope.sock")]);
    expect(r.code).toBe(3);
    expect(JSON.parse(r.out)).toMatchObject({ ok: false, error: { code: "ENOENT" } });
  });
  test("luod hangs up before answering", async () => {
    fake.handle("STATUS", (_q, _f, peer) => {
      peer.close("crash");
      return null;
    });
    const r = await luoctl(["status"]);
    expect(r.code).toBe(3);
    expect(r.err).toContain("lost the connection to luod");
  });
});

describe("errors from luod: exit 1", () => {
  test("one clear line with the code", async () => {
    fake.handle("UNLOAD", () => {
      throw new FakeLuodError("EBUSY", "an update is preparing");
    });
    const r = await luoctl(["unload"]);
    expect(r.code).toBe(1);
    expect(r.err).toBe("luoctl: an update is preparing (EBUSY)\n");
    const j = await luoctl(["unload", "--json"]);
    expect(j.code).toBe(1);
    expect(JSON.parse(j.out)).toEqual({ ok: false, error: { code: "EBUSY", message: "an update is preparing" }, json_version: 1 });
  });
});

describe("load", () => {
  function loadHandler(seen: { msg?: Record<string, unknown>; files?: string[] }) {
    fake.handle("LOAD", (msg, fds) => {
      seen.msg = msg;
      seen.files = fds.map(readAll);
      const cmdline = String(msg.cmdline).replace(/BOOT_IMAGE=\S+ ?/, "");
      return { kernel: { version: "7.2.13 #1", size: 6, sha256: "ab".repeat(32) }, initrd: msg.initrd ? { size: 6 } : null, cmdline };
    });
  }

  test("opens the files, sends them as fds, prints what luod loaded", async () => {
    const seen: { msg?: Record<string, unknown>; files?: string[] } = {};
    loadHandler(seen);
    writeFileSync(join(dir, "vmlinuz"), "KERNEL");
    writeFileSync(join(dir, "initrd"), "INITRD");
    const r = await luoctl(["load", join(dir, "vmlinuz"), "--initrd", join(dir, "initrd"), "--reuse-cmdline", "--append", "liveupdate=on"]);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(seen.msg).toEqual({ cmd: "LOAD", cmdline: "BOOT_IMAGE=/boot/vmlinuz-7.2.12 root=/dev/vda ro kho=on liveupdate=on", initrd: true, fds: 2 });
    expect(seen.files).toEqual(["KERNEL", "INITRD"]);
    expect(r.out).toContain("kernel:   7.2.13 #1");
    expect(r.out).toContain("cmdline:  root=/dev/vda ro kho=on liveupdate=on");
  });

  test("numeric-looking values stay strings, and a value may start with '-'", async () => {
    const seen: { msg?: Record<string, unknown> } = {};
    loadHandler(seen);
    writeFileSync(join(dir, "k"), "K");
    for (const [args, want] of [
      [["--cmdline", "0123"], "0123"],
      [["--cmdline=0x10"], "0x10"],
      [["--cmdline", "1e3"], "1e3"],
      [["--cmdline", "-5"], "-5"],
      [["--cmdline", "a", "--cmdline", "007"], "007"], // the last one wins
      [["--append", "1", "--append", "2"], "1 2"],
    ] as [string[], string][]) {
      const r = await luoctl(["load", join(dir, "k"), ...args]);
      expect(r.code).toBe(0);
      expect(seen.msg!.cmdline).toBe(want);
      expect(typeof seen.msg!.cmdline).toBe("string");
    }
  });

  test("kexec-tools' spellings --ramdisk and --command-line (and their =VALUE forms) are luoctl's --initrd and --cmdline", async () => {
    const seen: { msg?: Record<string, unknown>; files?: string[] } = {};
    loadHandler(seen);
    writeFileSync(join(dir, "k"), "K");
    writeFileSync(join(dir, "r"), "R");
    const r = await luoctl(["load", join(dir, "k"), "--ramdisk", join(dir, "r"), "--command-line", "root=/dev/vda liveupdate=on"]);
    expect(r.code).toBe(0);
    expect(seen.msg).toEqual({ cmd: "LOAD", cmdline: "root=/dev/vda liveupdate=on", initrd: true, fds: 2 });
    expect(seen.files).toEqual(["K", "R"]);
    const eq = await luoctl(["load", join(dir, "k"), `--ramdisk=${join(dir, "r")}`, "--command-line=0123"]);
    expect(eq.code).toBe(0);
    expect(seen.msg).toEqual({ cmd: "LOAD", cmdline: "0123", initrd: true, fds: 2 });
  });

  test("--force and --sha256 are passed on; no initrd: initrd false, one fd", async () => {
    const seen: { msg?: Record<string, unknown>; files?: string[] } = {};
    loadHandler(seen);
    writeFileSync(join(dir, "k"), "K");
    const sha = "0123456789".repeat(6) + "abcd";
    const r = await luoctl(["load", join(dir, "k"), "--cmdline", "x", "--force", "--sha256", sha]);
    expect(r.code).toBe(0);
    expect(seen.msg).toEqual({ cmd: "LOAD", cmdline: "x", initrd: false, force: true, sha256: sha, fds: 1 });
    expect(seen.files).toEqual(["K"]);
  });

  test("luod refusing the command line: exit 1", async () => {
    fake.handle("LOAD", () => {
      throw new FakeLuodError("EINVAL", "the command line has no liveupdate=on: the new kernel would not restore any session");
    });
    writeFileSync(join(dir, "k"), "K");
    const r = await luoctl(["load", join(dir, "k"), "--cmdline", "root=/dev/vda"]);
    expect(r.code).toBe(1);
    expect(r.err).toBe("luoctl: the command line has no liveupdate=on: the new kernel would not restore any session (EINVAL)\n");
  });

  test("a missing kernel file is reported before connecting: exit 1", async () => {
    const r = await luoctl(["load", join(dir, "absent"), "--cmdline", "x"]);
    expect(r.code).toBe(1);
    expect(r.err).toContain("cannot open kernel");
    expect(fake.requests.length).toBe(0);
  });
});

describe("check / abort / discard", () => {
  test("check exits 1 when not ready, 0 when ready", async () => {
    let ready = false;
    fake.handle("CHECK", () => ({ ready, checks: [{ name: "device", ok: ready, detail: ready ? "present" : "/dev/liveupdate missing" }] }));
    const no = await luoctl(["check"]);
    expect(no.code).toBe(1);
    expect(no.out).toContain("FAIL  device  /dev/liveupdate missing");
    expect(no.err).toBe("");
    ready = true;
    const yes = await luoctl(["check", "--json"]);
    expect(yes.code).toBe(0);
    expect(JSON.parse(yes.out).ready).toBe(true);
  });

  test("abort and discard", async () => {
    fake.handle("ABORT", (m) => ({ aborted: m.reason === "maintenance" }));
    fake.handle("DISCARD", (m) => ({ id: m.id }));
    const a = await luoctl(["abort", "--reason", "maintenance"]);
    expect(a.code).toBe(0);
    expect(a.out).toBe("update aborted\n");
    const b = await luoctl(["abort"]);
    expect(b.out).toBe("no update was in progress\n");
    const d = await luoctl(["discard", "vm-3"]);
    expect(d.code).toBe(0);
    expect(d.out).toBe("discarded the restored session of vm-3\n");
    expect(fake.requests.map((q) => q.msg)).toEqual([
      { cmd: "ABORT", reason: "maintenance" },
      { cmd: "ABORT" },
      { cmd: "DISCARD", id: "vm-3" },
    ]);
  });
});

describe("kexec", () => {
  function progressThen(final: (peer: { send: (m: Record<string, unknown>) => boolean; close: (r?: string) => void }) => Record<string, unknown> | null) {
    fake.handle("KEXEC", async (_m, _f, peer) => {
      peer.send({ event: "PROGRESS", phase: "preparing", ready: 0, total: 2, waiting: ["vm-1", "vm-7"], remaining_ms: 30000 });
      await Bun.sleep(5);
      peer.send({ event: "PROGRESS", phase: "preparing", ready: 0, total: 2, waiting: ["vm-1", "vm-7"], remaining_ms: 29000 }); // same gist
      peer.send({ event: "PROGRESS", phase: "preparing", ready: 1, total: 2, waiting: ["vm-7"], remaining_ms: 12000 });
      await Bun.sleep(5);
      return final(peer);
    });
  }

  test("dry run: progress lines on stderr, verdict on stdout, exit 0", async () => {
    progressThen(() => ({ dry_run: true, timings: { all_ready_ms: 1500 } }));
    const r = await luoctl(["kexec", "--dry-run", "--timeout", "2m"]);
    expect(r.code).toBe(0);
    expect(fake.requests[0]!.msg).toEqual({ cmd: "KEXEC", timeout_ms: 120000, dry_run: true });
    expect(r.err).toBe("ready 0/2, waiting: vm-1 vm-7 (30s left)\nready 1/2, waiting: vm-7 (12s left)\n");
    expect(r.out).toContain("dry run complete: all clients ready after 1s");
    expect(r.out).toContain("timings: all_ready 1s");
  });

  test("on a terminal the progress line is rewritten in place", async () => {
    progressThen(() => ({ dry_run: true, timings: {} }));
    const r = await luoctl(["kexec", "--dry-run"], { stderrIsTTY: true });
    expect(r.code).toBe(0);
    expect(r.err).toContain("\r\x1b[Kready 1/2, waiting: vm-7 (12s left)");
    expect(r.err).not.toContain("\n");
    expect(r.err).toEndWith("\r\x1b[K");
  });

  test("aborted: exit 1 and the reason", async () => {
    progressThen(() => {
      throw new FakeLuodError("ETIMEDOUT", "READY deadline of 30000 ms passed; not ready: vm-7", { timings: { sessions_created_ms: 3 } });
    });
    const r = await luoctl(["kexec"]);
    expect(r.code).toBe(1);
    expect(fake.requests[0]!.msg).toEqual({ cmd: "KEXEC" });
    expect(r.err).toEndWith("luoctl: update aborted: READY deadline of 30000 ms passed; not ready: vm-7 (ETIMEDOUT)\n");
  });

  test("refused at once (no LUO): one line, exit 1", async () => {
    fake.handle("KEXEC", () => {
      throw new FakeLuodError("ENODEV", "/dev/liveupdate is missing: this kernel has no LUO (CONFIG_LIVEUPDATE and liveupdate=on)");
    });
    const r = await luoctl(["kexec", "--timeout", "2s"]);
    expect(r.code).toBe(1);
    expect(r.err).toBe("luoctl: cannot start the update: /dev/liveupdate is missing: this kernel has no LUO (CONFIG_LIVEUPDATE and liveupdate=on) (ENODEV)\n");
  });

  test("--json: JSON lines of progress, then the final object", async () => {
    progressThen(() => {
      throw new FakeLuodError("ECANCELED", "client vm-7 sent FAIL", { timings: {} });
    });
    const r = await luoctl(["kexec", "--json", "--timeout", "45"]);
    expect(r.code).toBe(1);
    const lines = r.out.trimEnd().split("\n").map((l) => JSON.parse(l));
    expect(lines.length).toBe(4);
    expect(lines.slice(0, 3).every((l) => l.event === "PROGRESS")).toBe(true);
    expect(lines[3]).toEqual({ ok: false, error: { code: "ECANCELED", message: "client vm-7 sent FAIL" }, timings: {}, json_version: 1 });
    expect(fake.requests[0]!.msg).toEqual({ cmd: "KEXEC", timeout_ms: 45000 });
  });

  test("REBOOTING then the connection drops: exit 0", async () => {
    progressThen((peer) => {
      peer.send({ event: "REBOOTING", update: 5, timings: { all_ready_ms: 2100 } });
      setTimeout(() => peer.close("kexec"), 5);
      return null;
    });
    const r = await luoctl(["kexec"]);
    expect(r.code).toBe(0);
    expect(r.out).toBe("all clients ready after 2s; rebooting into the loaded kernel\n");
    const j = await luoctl(["kexec", "--json"]);
    expect(j.code).toBe(0);
    const last = JSON.parse(j.out.trimEnd().split("\n").at(-1)!);
    expect(last).toEqual({ ok: true, event: "REBOOTING", update: 5, timings: { all_ready_ms: 2100 }, json_version: 1 });
  });

  test("REBOOTING then reboot() fails: exit 1", async () => {
    progressThen((peer) => {
      peer.send({ event: "REBOOTING", update: 5, timings: {} });
      throw new FakeLuodError("EINVAL", "reboot(LINUX_REBOOT_CMD_KEXEC): EINVAL (Invalid argument); the host keeps running");
    });
    const r = await luoctl(["kexec"]);
    expect(r.code).toBe(1);
    expect(r.err).toContain("luoctl: the jump failed: reboot(LINUX_REBOOT_CMD_KEXEC): EINVAL (Invalid argument); the host keeps running");
  });

  test("Ctrl-C sends ABORT and the update ends aborted", async () => {
    let interrupt: (() => void) | null = null;
    fake.handle("ABORT", () => ({ aborted: true }));
    let answer!: (v: null) => void;
    fake.handle("KEXEC", (_m, _f, peer) => {
      peer.send({ event: "PROGRESS", phase: "preparing", ready: 0, total: 1, waiting: ["vm-1"], remaining_ms: 30000 });
      setTimeout(() => interrupt?.(), 10);
      return new Promise((r) => (answer = r));
    });
    fake.handle("ABORT", (_m, _f, peer) => {
      // luod's order: the KEXEC reply (ECANCELED) goes out, then the ABORT reply
      for (const p of fake.peers) p.send({ reply: "KEXEC", ok: false, error: { code: "ECANCELED", message: "aborted by an administrator: interrupted" } });
      answer(null);
      void peer;
      return { aborted: true };
    });
    const r = await luoctl(["kexec"], { onInterrupt: (h) => ((interrupt = h), () => (interrupt = null)) });
    expect(r.code).toBe(1);
    expect(r.err).toContain("luoctl: interrupted; aborting the update");
    expect(r.err).toContain("update aborted: aborted by an administrator");
    expect(fake.requests.map((q) => q.msg.cmd)).toEqual(["KEXEC", "ABORT"]);
  });
});

describe("the real entry point", () => {
  async function spawnLuoctl(args: string[], env: Record<string, string> = {}) {
    const main = join(import.meta.dir, "../../src/main.ts");
    // async spawn: the fake luod answers from this process's event loop
    const proc = Bun.spawn([process.execPath, main, "luoctl", ...args], {
      stdout: "pipe", stderr: "pipe", env: { PATH: process.env.PATH ?? "", ...env },
    });
    const killer = setTimeout(() => proc.kill(), 15_000);
    const [code, out, err] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
    clearTimeout(killer);
    return { code, out, err };
  }

  test("bun src/main.ts luoctl: output survives process.exit; exit codes 0, 2, 3", async () => {
    fake.handle("STATUS", () => STATUS);
    const ok = await spawnLuoctl(["--socket", fake.path, "status", "--json"]);
    expect(ok.err).toBe("");
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.out).phase).toBe("idle");
    const env = await spawnLuoctl(["status"], { LUOD_SOCKET: fake.path });
    expect(env.code).toBe(0);
    expect(env.out).toMatch(/phase:\s+idle/);
    const usage = await spawnLuoctl(["bogus"]);
    expect(usage.code).toBe(2);
    expect(usage.err).toBe('luoctl: unknown command "bogus"; see "luoctl --help"\n');
    const gone = await spawnLuoctl(["--socket", join(dir, "none.sock"), "status"]);
    expect(gone.code).toBe(3);
    expect(gone.out).toBe("");
    expect(gone.err).toContain("cannot reach luod");
  });
});

// The ABI gate of the compiled binary on this host, which has no LUO kernel: `luoctl check`
// still answers clearly (what is missing, and how to make the running ABI known), and a real
// kernel image from the VM harness is read (its ABI shown) but refused for LOAD and CHECK: with
// the running kernel's LUO ABI unknown, luod fails closed.
import { existsSync } from "node:fs";
import { afterAll, beforeAll, expect, test } from "bun:test";
import { startDaemon, run, requireBinary, type Daemon } from "../support/binary";
import { cachedKernel } from "../support/kernels";

const kernelA = cachedKernel("a");
let luod: Daemon;
beforeAll(async () => {
  requireBinary();
  luod = await startDaemon(["--device", "/nonexistent/liveupdate"]);
});
afterAll(async () => {
  await luod?.stop();
});

/** luoctl check until the running-abi line is no longer "still being read" (luod reads it at start). */
async function settledCheck(args: string[] = []) {
  for (let i = 0; ; i++) {
    const r = await run("luoctl", ["--socket", luod.socket, "check", ...args]);
    if (!r.stdout.includes("still being read") || i > 100) return r;
    await Bun.sleep(100);
  }
}

test("luoctl check on a host without LUO answers clearly: exit 1, the device, the running ABI and how to make it known", async () => {
  const r = await settledCheck();
  expect(r.code).toBe(1);
  expect(r.stdout).toMatch(/FAIL +device +\/dev\/liveupdate missing/);
  expect(r.stdout).toMatch(/FAIL +running-abi +unknown: luo/);
  expect(r.stdout).toContain("/boot/vmlinuz-$(uname -r)");
  expect(r.stdout).toMatch(/(ok|warn) +memory/);
  expect(r.stdout).toContain("NOT ready for a live update");
  const json = JSON.parse((await run("luoctl", ["--socket", luod.socket, "check", "--json"])).stdout);
  expect(json.abi.running).toMatchObject({ luo: null });
  expect(json.checks.map((c: { name: string }) => c.name)).toEqual(
    ["device", "kexec_load_disabled", "lockdown", "running-abi", "kernel", "memory", "kexec-mode", "clients"],
  );
  // a host kernel built without kexec is named as such, not "unknown" (this CI machine's is one)
  const kexec = json.checks.find((c: { name: string }) => c.name === "kexec_load_disabled");
  if (existsSync("/proc/sys/kernel/kexec_load_disabled")) expect(kexec.detail).toMatch(/^kernel\.kexec_load_disabled=[01]/);
  else expect(kexec).toEqual({ name: "kexec_load_disabled", ok: false, detail: expect.stringContaining("this kernel cannot kexec at all") });
});

test.skipIf(kernelA === null)("a real image: check --kernel shows its ABI and fails closed; load refuses it with the same reason", async () => {
  const { path, expected } = kernelA!;
  const r = await run("luoctl", ["--socket", luod.socket, "check", "--kernel", path, "--cmdline", "console=ttyS0 liveupdate=on", "--json"]);
  expect(r.code).toBe(1);
  const json = JSON.parse(r.stdout);
  expect(json.abi.next).toEqual(expected);
  const abi = json.checks.find((c: { name: string }) => c.name === "abi");
  expect(abi.ok).toBe(false);
  expect(abi.detail).toContain("the running kernel's LUO ABI is unknown");
  expect(json.checks.find((c: { name: string }) => c.name === "panic")).toMatchObject({ ok: true, warning: true });
  const load = await run("luoctl", ["--socket", luod.socket, "load", path, "--cmdline", "console=ttyS0 liveupdate=on"]);
  expect(load.code).toBe(1);
  expect(load.stderr).toContain("refusing this kernel: the running kernel's LUO ABI is unknown");
  expect(load.stderr.trim().split("\n")).toHaveLength(1);
});

test("check --initrd without --kernel is a usage error (exit 2)", async () => {
  const r = await run("luoctl", ["--socket", luod.socket, "check", "--initrd", "/boot/initrd.img"]);
  expect(r.code).toBe(2);
  expect(r.stderr).toContain("go with --kernel");
});

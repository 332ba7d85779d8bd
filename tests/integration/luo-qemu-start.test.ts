// `luo-qemu run` (the compiled binary) refuses, before any QEMU runs a guest, what it could not
// carry across a live update: a VM it cannot preserve, a host where luod is not there, a host
// without LUO. The QEMU here is a script that answers -version and -machine help like QEMU 7.2 and
// leaves a file behind if anyone ever starts it as a VM. QEMU is probed only once luod said no
// resume is due: what the probe refuses is refused after SUBSCRIBE, and UNSUBSCRIBEd.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run, startDaemon, type Daemon } from "../support/binary";

let dir: string;
let qemu: string;
let started: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "luo-qemu-it-"));
  qemu = join(dir, "qemu-system-x86_64");
  started = join(dir, "qemu-was-started");
  writeFileSync(
    qemu,
    `#!/bin/sh
case "$1" in
-version) echo "QEMU emulator version 7.2.22 (fake)"; exit 0 ;;
-machine) printf 'Supported machines are:\\npc                   Standard PC (alias of pc-i440fx-7.2)\\npc-i440fx-7.2        Standard PC (default)\\nisapc                ISA-only PC\\n'; exit 0 ;;
esac
touch "${started}"
exit 1
`,
  );
  chmodSync(qemu, 0o755);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const vm = (extra: string[], qemuArgs: string[] = []) =>
  ["run", "vm-1", "--memory", "16M", "--qemu", qemu, "--run-dir", join(dir, "run"), ...extra, "--", "-bios", "g.bin", ...qemuArgs];

describe("luo-qemu run refuses at start, never at the update", () => {
  test("a VM with tap networking and a balloon: exit 2, one line per reason, QEMU never started", async () => {
    const r = await run("luo-qemu", vm(["--socket", join(dir, "none.sock")], ["-netdev", "tap,id=n0", "-device", "virtio-balloon"]));
    expect(r.stderr.split("\n").filter(Boolean)).toEqual([
      "luo-qemu: refusing this VM: -netdev tap: tap, bridge and vhost networking are host devices that are not carried (use -netdev user, or reconnect the network after the update)",
      "luo-qemu: refusing this VM: -device virtio-balloon: a balloon cannot shrink preserved (pinned) guest memory",
    ]);
    expect(r.code).toBe(2);
    expect(existsSync(started)).toBe(false);
  });

  test("a QEMU binary that is not there: exit 1 before luod is asked (not exit 3: luod is not there either)", async () => {
    const r = await run("luo-qemu", ["run", "vm-1", "--memory", "16M", "--qemu", join(dir, "none"), "--socket", join(dir, "none.sock"), "--connect-timeout", "0"]);
    expect(r.stderr).toBe(`luo-qemu: no QEMU binary ${join(dir, "none")} (give one with --qemu PATH)\n`);
    expect(r.code).toBe(1);
  });

  test("usage errors: no --memory, a bad size, no id: exit 2 with one line", async () => {
    const noMemory = await run("luo-qemu", ["run", "vm-1", "--", "-bios", "g.bin"]);
    expect(noMemory.stderr).toBe("luo-qemu: --memory SIZE is required (see luo-qemu --help)\n");
    expect(noMemory.code).toBe(2);
    const badSize = await run("luo-qemu", ["run", "vm-1", "--memory", "1.5G"]);
    expect(badSize.stderr).toContain("a whole number of MiB");
    expect(badSize.code).toBe(2);
    const badId = await run("luo-qemu", ["run", "vm/1", "--memory", "16M"]);
    expect(badId.stderr).toContain("invalid id");
    expect(badId.code).toBe(2);
  });

  test("luod not reachable: exit 3, the guest is not started fresh (a session may wait for it)", async () => {
    const r = await run("luo-qemu", vm(["--socket", join(dir, "none.sock"), "--connect-timeout", "0"]));
    expect(r.stderr).toContain("cannot reach luod at");
    expect(r.stderr).toContain("not starting the guest");
    expect(r.code).toBe(3);
    expect(existsSync(started)).toBe(false);
  });

  describe("with luod on a host without LUO", () => {
    let luod: Daemon;
    beforeAll(async () => {
      luod = await startDaemon();
    });
    afterAll(async () => {
      await luod.stop();
      rmSync(luod.dir, { recursive: true, force: true });
    });

    test("a machine type without a version: exit 2, and luod no longer expects the VM (UNSUBSCRIBE)", async () => {
      const r = await run("luo-qemu", vm(["--machine", "isapc", "--socket", luod.socket]));
      expect(r.stderr).toBe("luo-qemu: refusing this VM: machine type isapc has no version: its device state may not load in another QEMU (use a versioned type such as pc-i440fx-7.2 or pc-q35-7.2)\n");
      expect(r.code).toBe(2);
      expect(luod.logs()).toContain("client vm-1 unsubscribed");
    });

    test("a QEMU that fails -version: exit 1 with its line, and unsubscribed", async () => {
      const broken = join(dir, "qemu-broken");
      writeFileSync(broken, `#!/bin/sh\necho "cannot load libfoo.so" >&2\nexit 1\n`);
      chmodSync(broken, 0o755);
      const r = await run("luo-qemu", ["run", "vm-2", "--memory", "16M", "--qemu", broken, "--run-dir", join(dir, "run-2"), "--socket", luod.socket, "--", "-bios", "g.bin"]);
      expect(r.stderr).toMatch(/^luo-qemu: \S+qemu-broken (-version|-machine help) failed: cannot load libfoo\.so\n$/);
      expect(r.code).toBe(1);
      expect(luod.logs()).toContain("client vm-2 unsubscribed");
    });

    test("PREPARE fails (ENODEV): exit 1 with one line, QEMU never started", async () => {
      const r = await run("luo-qemu", vm(["--socket", luod.socket]));
      expect(r.stderr).toContain("luo-qemu[vm-1]: cannot start the guest:");
      expect(r.stderr).toContain("(ENODEV)");
      expect(r.code).toBe(1);
      expect(existsSync(started)).toBe(false);
    });
  });
});

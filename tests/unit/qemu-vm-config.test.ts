// luo-qemu's rules for a VM (src/qemu/vm-config.ts) and its start record (src/qemu/record.ts).
import { describe, expect, test } from "bun:test";
import {
  incomingStateUri, machineOptionProblem, parseMachineHelp, parseMemorySize, parseQemuVersion, qemuArgv, refusals, resolveMachine, versionAtLeast,
} from "../../src/qemu/vm-config";
import { decodeRecord, encodeRecord, recordToken, stateToken, type StartRecord } from "../../src/qemu/record";

const MACHINE_HELP = `Supported machines are:
microvm              microvm (i386)
pc                   Standard PC (i440FX + PIIX, 1996) (alias of pc-i440fx-7.2)
pc-i440fx-7.2        Standard PC (i440FX + PIIX, 1996) (default)
pc-i440fx-7.1        Standard PC (i440FX + PIIX, 1996)
q35                  Standard PC (Q35 + ICH9, 2009) (alias of pc-q35-7.2)
pc-q35-7.2           Standard PC (Q35 + ICH9, 2009)
isapc                ISA-only PC
none                 empty machine
`;

// Debian sid's QEMU 11.1.3 (excerpt): "(default)" and "(deprecated)" after the description, the
// alias lines in the middle of the list
const MACHINE_HELP_11 = `Supported machines are:
microvm              microvm (i386)
pc-i440fx-9.2        Standard PC (i440FX + PIIX, 1996)
pc-i440fx-7.2        Standard PC (i440FX + PIIX, 1996) (deprecated)
pc                   Standard PC (i440FX + PIIX, 1996) (alias of pc-i440fx-11.1)
pc-i440fx-11.1       Standard PC (i440FX + PIIX, 1996) (default)
pc-i440fx-11.0       Standard PC (i440FX + PIIX, 1996)
pc-q35-7.2           Standard PC (Q35 + ICH9, 2009) (deprecated)
q35                  Standard PC (Q35 + ICH9, 2009) (alias of pc-q35-11.1)
pc-q35-11.1          Standard PC (Q35 + ICH9, 2009)
isapc                ISA-only PC
nitro                Nitro Enclave
none                 empty machine
x-remote             Experimental remote machine
`;

describe("luo-qemu: the VM it accepts", () => {
  test("memory sizes are whole MiB: M, G, MiB, a plain number of MiB", () => {
    expect(parseMemorySize("16M")).toBe(16 << 20);
    expect(parseMemorySize("2G")).toBe(2 * 1024 ** 3);
    expect(parseMemorySize("512MiB")).toBe(512 << 20);
    expect(parseMemorySize("64")).toBe(64 << 20);
    for (const bad of ["", "0", "1.5G", "-1M", "16K", "12 apples"]) expect([bad, parseMemorySize(bad)]).toEqual([bad, null]);
  });

  test("a plain VM with a disk, user networking and a serial console is accepted", () => {
    expect(refusals(["-drive", "file=/var/lib/vm/a.qcow2,if=virtio", "-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0", "-serial", "stdio"])).toEqual([]);
  });

  test("what luo-qemu owns (RAM, machine, incoming) is refused, with one dash or two", () => {
    expect(refusals(["-m", "1G"])).toEqual(["-m: give the guest's memory with --memory"]);
    expect(refusals(["--machine", "q35"])).toEqual(["-machine: give the machine type with --machine"]);
    expect(refusals(["-object", "memory-backend-ram,id=x,size=1G"])[0]).toContain("-object memory-backend-ram");
    expect(refusals(["-incoming", "defer"])[0]).toContain("-incoming");
    expect(refusals(["-daemonize"])[0]).toContain("-daemonize");
  });

  test("what cannot cross a kexec is refused at start: tap, vhost, VFIO, balloon, -snapshot", () => {
    expect(refusals(["-netdev", "tap,id=n0,ifname=tap0"])[0]).toContain("-netdev tap");
    expect(refusals(["-netdev", "user,id=n0,vhost=on"])[0]).toContain("vhost");
    expect(refusals(["-nic", "bridge,br=br0"])[0]).toContain("-nic bridge");
    expect(refusals(["-device", "vfio-pci,host=01:00.0"])[0]).toContain("VFIO");
    expect(refusals(["-device", "driver=vhost-user-fs-pci,chardev=c"])[0]).toContain("vhost");
    expect(refusals(["-device", "virtio-balloon"])[0]).toContain("balloon");
    expect(refusals(["-snapshot"])[0]).toContain("-snapshot");
    expect(refusals(["-drive", "file=a.img,snapshot=on"])[0]).toContain("snapshot=on");
  });

  test("the refusals see every spelling QEMU accepts: any field order, booleans, JSON, -set", () => {
    expect(refusals(["-drive", "snapshot=on,file=a.img"])[0]).toContain("snapshot=on");
    expect(refusals(["-drive", "file=a.img,snapshot=true"])[0]).toContain("snapshot=on");
    expect(refusals(["-netdev", "id=n0,type=tap"])[0]).toContain("-netdev tap");
    expect(refusals(["-device", "id=x,driver=vfio-pci"])[0]).toContain("VFIO");
    expect(refusals(["-device", '{"driver":"vfio-pci","host":"01:00.0"}'])[0]).toContain("VFIO");
    expect(refusals(["-object", '{"qom-type":"memory-backend-ram","id":"m","size":1024}'])[0]).toContain("memory-backend-ram");
    expect(refusals(["-object", "qom-type=memory-backend-ram,id=m,size=1G"])[0]).toContain("memory-backend-ram");
    expect(refusals(["-set", "drive.d0.snapshot=on"])[0]).toContain("-set");
    // a literal comma (",,") is part of a value, not a separator
    expect(refusals(["-drive", "file=a,,snapshot=on.img,if=virtio"])).toEqual([]);
  });

  test("machine types: an alias resolves to its versioned type; an unversioned type is refused", () => {
    const machines = parseMachineHelp(MACHINE_HELP);
    expect(resolveMachine("pc", machines)).toEqual({ type: "pc-i440fx-7.2", props: [] });
    expect(resolveMachine("q35,accel=tcg", machines)).toEqual({ type: "pc-q35-7.2", props: ["accel=tcg"] });
    expect(resolveMachine("pc-i440fx-7.1", machines)).toEqual({ type: "pc-i440fx-7.1", props: [] });
    expect((resolveMachine("isapc", machines) as { error: string }).error).toContain("has no version");
    expect((resolveMachine("virt", machines) as { error: string }).error).toContain("no machine type virt");
    expect((resolveMachine("pc,memory-backend=x", machines) as { error: string }).error).toContain("memory-backend");
  });

  test("what --machine gets wrong on its own is known without asking QEMU", () => {
    expect(machineOptionProblem("pc")).toBeNull();
    expect(machineOptionProblem("isapc,accel=tcg")).toBeNull(); // only QEMU knows it has no version
    expect(machineOptionProblem(",accel=tcg")).toBe("--machine needs a machine type");
    expect(machineOptionProblem("q35,memory-backend=m0")).toBe("--machine: memory-backend is luo-qemu's");
  });

  test("QEMU 11's machine list: pc is pc-i440fx-11.1, and a guest saved by 7.2 finds its (deprecated) type", () => {
    const machines = parseMachineHelp(MACHINE_HELP_11);
    expect(resolveMachine("pc", machines)).toEqual({ type: "pc-i440fx-11.1", props: [] });
    expect(resolveMachine("q35", machines)).toEqual({ type: "pc-q35-11.1", props: [] });
    expect(machines.get("pc-i440fx-7.2")).toBe("pc-i440fx-7.2"); // what resume() checks for a saved type
    expect((resolveMachine("nitro", machines) as { error: string }).error).toContain("has no version");
  });

  test("the QEMU version is read from -version and compared", () => {
    expect(parseQemuVersion("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright")).toBe("7.2.22");
    expect(parseQemuVersion("something else")).toBeNull();
    expect(versionAtLeast("7.2.22", [5, 0])).toBe(true);
    expect(versionAtLeast("4.2.1", [5, 0])).toBe(false);
    expect(versionAtLeast("11.0", [5, 0])).toBe(true);
  });

  test("QEMU's command line: RAM from inherited fd 3 shared, QMP socket, sandbox, then the user's arguments", () => {
    const argv = qemuArgv({
      qemu: "/usr/bin/qemu-system-x86_64", id: "vm-1", memoryBytes: 16 << 20, machine: "pc-i440fx-7.2", machineProps: [],
      qmpSocket: "/run/luo-qemu/vm-1/qmp.sock", sandbox: true, incoming: true, userArgs: ["-bios", "g.bin"],
    });
    expect(argv.join(" ")).toBe(
      "/usr/bin/qemu-system-x86_64 -name vm-1 -machine pc-i440fx-7.2,memory-backend=luo-ram -m 16M " +
        "-object memory-backend-file,id=luo-ram,size=16777216,mem-path=/proc/self/fd/3,share=on " +
        "-qmp unix:/run/luo-qemu/vm-1/qmp.sock,server=on,wait=off " +
        "-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny -incoming defer -bios g.bin",
    );
    const own = qemuArgv({
      qemu: "q", id: "vm-1", memoryBytes: 1 << 30, machine: "pc-q35-7.2", machineProps: [], qmpSocket: "s",
      sandbox: true, incoming: false, userArgs: ["-name", "mine", "-sandbox", "off"],
    });
    expect(own.filter((a) => a === "-name" || a === "-sandbox")).toEqual(["-name", "-sandbox"]); // the user's only
    expect(own).not.toContain("-incoming");
  });

  test("QMP through -qmp, never -mon (deprecated since QEMU 11.1)", () => {
    const argv = qemuArgv({
      qemu: "q", id: "vm-1", memoryBytes: 16 << 20, machine: "pc-i440fx-11.1", machineProps: [], qmpSocket: "/run/x/qmp.sock",
      sandbox: false, incoming: false, userArgs: [],
    });
    expect(argv).not.toContain("-mon");
    expect(argv[argv.indexOf("-qmp") + 1]).toBe("unix:/run/x/qmp.sock,server=on,wait=off");
  });

  test("the saved state is read from fd 4 as fd:4 before QEMU 8.2, as file:/proc/self/fd/4 from 8.2 (QEMU 11 refuses fd: of a file)", () => {
    expect(incomingStateUri("7.2.22")).toBe("fd:4");
    expect(incomingStateUri("8.1.5")).toBe("fd:4");
    expect(incomingStateUri("8.2.0")).toBe("file:/proc/self/fd/4");
    expect(incomingStateUri("11.1.3")).toBe("file:/proc/self/fd/4");
  });
});

describe("luo-qemu: the start record crosses the kexec", () => {
  const record: StartRecord = {
    format: "luo-qemu-start-record", version: 1, id: "vm-1", attempt: 2,
    qemu: { path: "/usr/bin/qemu-system-x86_64", version: "7.2.22" },
    machine: { type: "pc-i440fx-7.2", props: [] }, memory_bytes: 16 << 20, args: ["-bios", "g.bin"], sandbox: true,
    state_bytes: 129040, ram_transferred_bytes: 17203, paused_at: 1_780_000_000_000, saved_at: 1_780_000_000_300,
  };

  test("tokens: RAM 1, attempt n's state 1000+2n and record 1001+2n", () => {
    expect([stateToken(0), recordToken(0), stateToken(3), recordToken(3)]).toEqual([1000n, 1001n, 1006n, 1007n]);
  });

  test("a record decodes to what was encoded; fields added later are ignored", () => {
    expect(decodeRecord(encodeRecord(record))).toEqual(record);
    const newer = new TextEncoder().encode(JSON.stringify({ ...record, added_in_a_later_release: true }));
    expect(decodeRecord(newer)).toEqual(record);
  });

  test("another version, a moving machine alias or garbage is refused with one line", () => {
    const enc = (o: unknown) => new TextEncoder().encode(JSON.stringify(o));
    expect(decodeRecord(enc({ ...record, version: 2 }))).toEqual({
      error: "the start record is version 2; this luo-qemu reads version 1 (use the luo-qemu that wrote it)",
    });
    expect((decodeRecord(enc({ ...record, machine: { type: "pc", props: [] } })) as { error: string }).error).toContain("machine.type");
    expect(decodeRecord(new TextEncoder().encode("{not json"))).toEqual({ error: "the start record is not JSON" });
    expect((decodeRecord(enc({ format: "other" })) as { error: string }).error).toContain("format");
  });
});

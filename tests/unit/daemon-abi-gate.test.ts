// The ABI gate in the loader (LOAD, CHECK, the reload at KEXEC, unloading what luod cannot vouch
// for) against a fake kernel and a fake ABI reader: fast, on any host. The real images are read in
// tests/unit/daemon-image-*.test.ts; the real kernels refuse and panic in tests/vm/.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdtempSync, openSync, closeSync, fchmodSync, fchownSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KernelLoader, type AbiGate } from "../../src/daemon/loader";
import { RunningAbiSource } from "../../src/daemon/abi-gate";
import type { AbiStrings as LuoAbi } from "../../src/daemon/image-abi";
import type { ImageAbiResult } from "../../src/daemon/image-reader";
import type { ProbedAbi } from "../../src/daemon/running-abi";
import { FakeKernel } from "../../src/daemon/fake-kernel";
import { StateFiles } from "../../src/daemon/state-files";
import { createLogger } from "../../src/daemon/log";
import { ProtocolError } from "../../src/wire/errors";
import { sparseBzImage } from "../support/bzimage";
import { thrown } from "../support/thrown";

const errorOf = (fn: () => unknown) => thrown(fn, ProtocolError);

const V5: LuoAbi = { luo: "luo-v5", memfd: "memfd-v2", kho: "kho-v4" };
const V6: LuoAbi = { ...V5, luo: "luo-v6" };
const BANNER = "Linux version 7.2.13-luo-b (luo@test) #1 SMP\n";

let dir: string;
let kernel: FakeKernel;
let files: StateFiles;
let logs: string[];
let image: LuoAbi | null; // what the fake reader finds in every image; null: unreadable
let running: { abi: LuoAbi; sources: Partial<Record<keyof LuoAbi, string>>; notes: string[] };
let procVersion: string | null;

const log = () => createLogger({ write: (l) => logs.push(l) });

/** `running` as the probes of running-abi.ts return it. */
async function probe(): Promise<ProbedAbi> {
  const v = (k: keyof LuoAbi) => ({ value: running.abi[k], source: running.abi[k] === null ? null : running.sources[k] ?? "probe" });
  return { luo: v("luo"), memfd: v("memfd"), kho: v("kho"), image: null, notes: running.notes };
}

function gate(): AbiGate {
  const readImage = async (): Promise<ImageAbiResult> =>
    image ? { ok: true, compression: "lz4", decompressedBytes: 1, ms: 1, ...image, ambiguous: {}, banners: [BANNER] }
      : { ok: false, code: "unsupported", compression: "xz", message: "could not read the ABI of this image (compression xz)" };
  return { readImage, running: new RunningAbiSource({ probe, files, log: log(), procVersion: () => procVersion }) };
}

function imageFd(name = "bzImage"): number {
  const path = join(dir, name);
  sparseBzImage(path, 1 << 20);
  return openSync(path, "r+");
}

const load = (loader: KernelLoader, fd: number) => loader.load({ kernelFd: fd, initrdFd: null, cmdline: "console=ttyS0 liveupdate=on kho=on panic=10", force: false, sha256: null });

async function refusal(p: Promise<unknown>): Promise<ProtocolError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof ProtocolError) return e;
    throw e;
  }
  throw new Error("expected a refusal");
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "luo-abi-gate-"));
  kernel = new FakeKernel();
  files = new StateFiles(join(dir, "state"));
  logs = [];
  image = V5;
  running = { abi: V5, sources: { luo: "kho debugfs", memfd: "running image /boot/vmlinuz-7.2.13", kho: "kho debugfs" }, notes: [] };
  procVersion = "Linux version 7.2.13 (luo@test) #1 SMP\n";
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe("LOAD", () => {
  test("an image with the running kernel's ABI loads, and luod records its ABI and banner", async () => {
    const loader = new KernelLoader(kernel, files, log(), gate());
    const fd = imageFd();
    const k = await load(loader, fd);
    closeSync(fd);
    expect(kernel.loaded).toBe(true);
    expect(k.abi).toEqual(V5);
    expect(k.banner).toBe(BANNER);
    expect(files.read<{ abi: LuoAbi }>("loaded")?.abi).toEqual(V5);
  });

  test("a command line without liveupdate=on is refused, and the refusal shows the command line luod judged", async () => {
    const loader = new KernelLoader(kernel, files, log(), gate());
    const fd = imageFd();
    const e = await refusal(loader.load({ kernelFd: fd, initrdFd: null, cmdline: "BOOT_IMAGE=/v root=/dev/vda -- liveupdate=on", force: false, sha256: null }));
    closeSync(fd);
    expect(e.code).toBe("EINVAL");
    // liveupdate=on after " -- " is init's: the message shows what luod looked at
    expect(e.message).toBe('the command line has no liveupdate=on: the new kernel would not restore any session (the command line judged: "root=/dev/vda -- liveupdate=on")');
    expect(kernel.loaded).toBe(false);
  });

  test("an image with another LUO ABI is refused with both strings named, and nothing is loaded", async () => {
    image = V6;
    const loader = new KernelLoader(kernel, files, log(), gate());
    const e = await refusal(load(loader, imageFd()));
    expect(e.code).toBe("ENOEXEC");
    expect(e.message).toContain("luo-v5");
    expect(e.message).toContain("luo-v6");
    expect(e.message).toContain("panic");
    expect(kernel.loaded).toBe(false);
    expect(loader.loaded()).toBeNull();
  });

  test("an image without LUO strings (a kernel built without CONFIG_LIVEUPDATE) is refused", async () => {
    image = { luo: null, memfd: null, kho: null };
    const e = await refusal(load(new KernelLoader(kernel, files, log(), gate()), imageFd()));
    expect(e.message).toContain("no LUO ABI string");
    expect(kernel.loaded).toBe(false);
  });

  test("an image whose ABI cannot be read is refused, saying why", async () => {
    image = null;
    const e = await refusal(load(new KernelLoader(kernel, files, log(), gate()), imageFd()));
    expect(e.message).toContain("could not read the ABI of this image (compression xz)");
    expect(kernel.loaded).toBe(false);
  });

  test("when the running kernel's LUO ABI is unknown, luod fails closed and says how to make it known", async () => {
    running = { abi: { ...V5, luo: null }, sources: { memfd: "x", kho: "y" }, notes: ["luo: /sys/kernel/debug/kho is not mounted"] };
    const e = await refusal(load(new KernelLoader(kernel, files, log(), gate()), imageFd()));
    expect(e.message).toContain("the running kernel's LUO ABI is unknown");
    expect(e.message).toContain("/sys/kernel/debug/kho is not mounted");
    expect(e.message).toContain("/boot/vmlinuz-$(uname -r)");
    expect(kernel.loaded).toBe(false);
  });

  test("a luod without an ABI reader never loads", async () => {
    const e = await refusal(load(new KernelLoader(kernel, files, log()), imageFd()));
    expect(e.code).toBe("ENOEXEC");
    expect(kernel.loaded).toBe(false);
  });
});

describe("KEXEC reloads the verified kernel", () => {
  test("it loads the same files again (whatever was loaded since is replaced)", async () => {
    const loader = new KernelLoader(kernel, files, log(), gate());
    const fd = imageFd();
    await load(loader, fd);
    closeSync(fd); // luod keeps its own dup
    let loads = 0;
    kernel.loadKernel = () => void loads++;
    await loader.reload(() => {});
    expect(loads).toBe(1);
  });

  test("a file changed on disk after LOAD is refused and the kernel unloaded", async () => {
    const loader = new KernelLoader(kernel, files, log(), gate());
    const fd = imageFd();
    await load(loader, fd);
    writeSync(fd, new Uint8Array([1, 2, 3]), 0, 3, 4096);
    closeSync(fd);
    const e = await refusal(loader.reload(() => {}));
    expect(e.code).toBe("ENOEXEC");
    expect(e.message).toContain("changed on disk");
    expect(kernel.loaded).toBe(false);
    expect(loader.loaded()).toBeNull();
  });

  test("a luod restarted since LOAD refuses: it cannot vouch for what is in the kernel", async () => {
    const fd = imageFd();
    await load(new KernelLoader(kernel, files, log(), gate()), fd);
    closeSync(fd);
    const restarted = new KernelLoader(kernel, files, log(), gate());
    expect(restarted.loaded()).not.toBeNull(); // it still shows what was loaded
    const e = await refusal(restarted.reload(() => {}));
    expect(e.message).toContain("loaded before luod restarted");
    expect(restarted.check().checks.find((c) => c.name === "kernel")).toMatchObject({ ok: false });
  });
});

describe("files that could change between the checks and the load", () => {
  test("an image writable by others is refused (EACCES), before anything is read or loaded", async () => {
    const fd = imageFd();
    fchmodSync(fd, 0o666);
    const loader = new KernelLoader(kernel, files, log(), gate());
    const e = errorOf(() => load(loader, fd));
    expect(e.code).toBe("EACCES");
    expect(e.message).toContain("the kernel image is writable by its group and others (mode 0666)");
    expect(kernel.loaded).toBe(false);
  });

  test.skipIf(process.geteuid?.() !== 0)("an image owned by another user is refused (EACCES)", () => {
    const fd = imageFd();
    fchownSync(fd, 4321, 4321);
    const e = errorOf(() => load(new KernelLoader(kernel, files, log(), gate()), fd));
    expect(e.message).toContain("owned by uid 4321");
  });

  test("an initrd writable by its group is refused too", () => {
    const fd = imageFd();
    const initrd = imageFd("initrd");
    fchmodSync(initrd, 0o664);
    const e = errorOf(() => new KernelLoader(kernel, files, log(), gate()).load({ kernelFd: fd, initrdFd: initrd, cmdline: "liveupdate=on", force: false, sha256: null }));
    expect(e.message).toContain("the initrd is writable by its group");
  });
});

describe("unloading what luod cannot vouch for", () => {
  test("on a host without LUO an administrator's own kexec -l is left alone", () => {
    kernel.device = false;
    kernel.loaded = true;
    new KernelLoader(kernel, files, log(), gate()).unloadUnvouched("luod is stopping");
    expect(kernel.loaded).toBe(true);
  });

  test("a kernel loaded before luod started is unloaded, with a notice saying why", () => {
    kernel.loaded = true;
    new KernelLoader(kernel, files, log(), gate()).unloadUnvouched("it was loaded before this luod started");
    expect(kernel.loaded).toBe(false);
    expect(logs.join("\n")).toContain("systemctl reboot");
  });

  test("nothing loaded: nothing happens", () => {
    let unloads = 0;
    kernel.unloadKernel = () => void unloads++;
    new KernelLoader(kernel, files, log(), gate()).unloadUnvouched("luod is stopping");
    expect(unloads).toBe(0);
  });
});

describe("CHECK", () => {
  test("before the running ABI is read, the running-abi check fails and says so", () => {
    const c = new KernelLoader(kernel, files, log(), gate()).check();
    expect(c.checks.find((x) => x.name === "running-abi")).toMatchObject({ ok: false, detail: expect.stringContaining("still being read") });
    expect(c.ready).toBe(false);
  });

  test("an image is checked like a LOAD, the ABI check names both strings, and nothing is loaded", async () => {
    image = V6;
    const g = gate();
    await g.running.get();
    const loader = new KernelLoader(kernel, files, log(), g);
    const c = await loader.checkImage({ kernelFd: imageFd(), initrdFd: null, cmdline: "liveupdate=on" });
    expect(c.checks.find((x) => x.name === "running-abi")?.ok).toBe(true);
    const abi = c.checks.find((x) => x.name === "abi")!;
    expect(abi.ok).toBe(false);
    expect(abi.detail).toContain("the running kernel has luo-v5, the new kernel luo-v6");
    expect(c.abi.next).toEqual(V6);
    expect(kernel.loaded).toBe(false);
  });
});

describe("the running ABI", () => {
  test("after a live update, the previous luod's record fills what the probes lack, if this kernel is the image it loaded", async () => {
    running = { abi: { ...V5, memfd: null }, sources: { luo: "kho debugfs", kho: "kho debugfs" }, notes: ["memfd: no running image found"] };
    const src = () => new RunningAbiSource({ probe, files, log: log(), procVersion: () => procVersion });
    src().recordFromManifest({ banner: procVersion, abi: V5 }, 3);
    const r = await src().get();
    expect(r.abi).toEqual(V5);
    expect(r.sources.memfd).toContain("recorded by the luod that jumped into this kernel (update 3)");
  });

  test("a complete record is shown at once and the image is not probed until someone asks (get)", async () => {
    let probes = 0;
    const s = new RunningAbiSource({ probe: async () => (probes++, probe()), files, log: log(), procVersion: () => procVersion });
    s.recordFromManifest({ banner: procVersion, abi: V5 }, 5);
    expect(s.recordedComplete()).toBe(true);
    expect(s.peek()?.abi).toEqual(V5);
    expect(s.peek()?.sources.memfd).toContain("recorded by the luod that jumped into this kernel (update 5)");
    expect(probes).toBe(0);
    await s.get();
    expect(probes).toBe(1);
  });

  test("an incomplete record does not count as complete", () => {
    const s = new RunningAbiSource({ probe, files, log: log(), procVersion: () => procVersion });
    s.recordFromManifest({ banner: procVersion, abi: { ...V5, memfd: null } }, 5);
    expect(s.recordedComplete()).toBe(false);
  });

  test("a record of another kernel (its banner is not /proc/version) is not used", async () => {
    running = { abi: { ...V5, memfd: null }, sources: {}, notes: [] };
    const s = new RunningAbiSource({ probe, files, log: log(), procVersion: () => procVersion });
    s.recordFromManifest({ banner: "Linux version 7.2.12 (other) #9\n", abi: V5 }, 3);
    expect((await s.get()).abi.memfd).toBeNull();
  });

  test("a probe and the record that disagree make that string unknown (fail closed), with a note", async () => {
    const s = new RunningAbiSource({ probe, files, log: log(), procVersion: () => procVersion });
    s.recordFromManifest({ banner: procVersion, abi: V6 }, 4);
    const r = await s.get();
    expect(r.abi.luo).toBeNull();
    expect(r.notes.join(" ")).toContain("luod recorded luo-v6");
  });
});

describe("an unknown running ABI made known", () => {
  const retrying = (): AbiGate => ({ ...gate(), running: new RunningAbiSource({ probe, files, log: log(), procVersion: () => procVersion, retryIncompleteMs: 0 }) });
  test("the next LOAD reads it again: after mounting debugfs (or installing the image) the LOAD that was refused succeeds without a luod restart", async () => {
    running = { abi: { ...V5, luo: null }, sources: { memfd: "x", kho: "y" }, notes: ["kho debugfs: absent"] };
    const loader = new KernelLoader(kernel, files, log(), retrying());
    const e = await refusal(load(loader, imageFd("a")));
    await Bun.sleep(1);
    expect(e.message).toContain("the running kernel's LUO ABI is unknown");
    running = { abi: V5, sources: { luo: "kho debugfs", memfd: "x", kho: "y" }, notes: [] }; // the operator followed the advice
    await load(loader, imageFd("b"));
    expect(kernel.loaded).toBe(true);
  });

  test("CHECK without an image reads it again in the background, and the next CHECK shows it", async () => {
    running = { abi: { ...V5, luo: null }, sources: { memfd: "x", kho: "y" }, notes: ["kho debugfs: absent"] };
    const g = retrying();
    await g.running.get();
    await Bun.sleep(1);
    const loader = new KernelLoader(kernel, files, log(), g);
    running = { abi: V5, sources: { luo: "kho debugfs", memfd: "x", kho: "y" }, notes: [] }; // the operator mounts debugfs
    const first = loader.check().checks.find((x) => x.name === "running-abi")!;
    expect(first.ok).toBe(false); // this one does not wait
    expect(first.detail).toContain("reads it again");
    await Bun.sleep(10);
    expect(loader.check().checks.find((x) => x.name === "running-abi")?.ok).toBe(true);
  });

  test("on a host without LUO, CHECK does not read it again (a monitoring loop would decode the running image for nothing)", async () => {
    running = { abi: { luo: null, memfd: null, kho: null }, sources: {}, notes: [] };
    let probes = 0;
    const src = new RunningAbiSource({ probe: async () => (probes++, probe()), files, log: log(), procVersion: () => procVersion, retryIncompleteMs: 0 });
    await src.get();
    await Bun.sleep(1);
    kernel.device = false;
    const loader = new KernelLoader(kernel, files, log(), { ...gate(), running: src });
    loader.check();
    await Bun.sleep(5);
    expect(probes).toBe(1);
  });

  test("a complete answer is kept: the running kernel's strings are read once per process", async () => {
    let probes = 0;
    const s = new RunningAbiSource({ probe: async () => (probes++, probe()), files, log: log(), procVersion: () => procVersion });
    await s.get();
    await s.get();
    expect(probes).toBe(1);
  });

  test("an incomplete answer is kept for a while: a `luoctl check` loop does not decode the running image every time", async () => {
    running = { abi: { ...V5, luo: null }, sources: {}, notes: [] };
    let probes = 0;
    const s = new RunningAbiSource({ probe: async () => (probes++, probe()), files, log: log(), procVersion: () => procVersion });
    await s.get();
    await Bun.sleep(1);
    await s.get();
    expect(probes).toBe(1);
  });
});

describe("EBUSY says what holds the loader", () => {
  test("UNLOAD and LOAD during a CHECK of an image name the CHECK, not a LOAD", async () => {
    let release!: () => void;
    const g = gate();
    const slow: AbiGate = { ...g, readImage: (fd, info) => new Promise((r) => (release = () => r(g.readImage(fd, info)))) };
    await g.running.get();
    const loader = new KernelLoader(kernel, files, log(), slow);
    await load(new KernelLoader(kernel, files, log(), g), imageFd("loaded"));
    const checking = loader.checkImage({ kernelFd: imageFd("candidate"), initrdFd: null, cmdline: "liveupdate=on" });
    await Bun.sleep(5);
    for (const e of [
      (() => { try { loader.unload(); } catch (x) { return x as ProtocolError; } return null; })(),
      await refusal(Promise.resolve().then(() => load(loader, imageFd("other")))),
    ]) {
      expect(e?.code).toBe("EBUSY");
      expect(e?.message).toContain("a CHECK of an image");
    }
    release();
    await checking;
    loader.unload(); // free again
  });
});

describe("the previous luod's record and a state dir that cannot be written", () => {
  test("recordFromManifest does not throw (restore() would call the boot a failed one) and the record still counts", async () => {
    running = { abi: { ...V5, memfd: null }, sources: { luo: "kho debugfs", kho: "kho debugfs" }, notes: [] };
    const full = Object.assign(Object.create(files), {
      write: () => { throw Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" }); },
    }) as StateFiles;
    const s = new RunningAbiSource({ probe, files: full, log: log(), procVersion: () => procVersion });
    expect(() => s.recordFromManifest({ banner: procVersion, abi: V5 }, 7)).not.toThrow();
    expect(logs.join("\n")).toContain("ENOSPC");
    const r = await s.get();
    expect(r.abi.memfd).toBe("memfd-v2");
    expect(r.sources.memfd).toContain("update 7");
  });
});

describe("the refusal when the running ABI is unknown", () => {
  test("names every unknown string, but says the notes about the sources and how to make it known once", async () => {
    running = {
      abi: { luo: null, memfd: null, kho: null }, sources: {},
      notes: ["kho debugfs: /sys/kernel/debug/kho/out/sub_fdts/LUO: absent", "running image /boot/vmlinuz-7.2.13: absent", "kho: only this kind"],
    };
    const e = await refusal(load(new KernelLoader(kernel, files, log(), gate()), imageFd()));
    for (const k of ["LUO", "memfd", "KHO"]) expect(e.message).toContain(`the running kernel's ${k} ABI is unknown`);
    const count = (needle: string) => e.message.split(needle).length - 1;
    expect(count("make it known")).toBe(1);
    expect(count("running image /boot/vmlinuz-7.2.13: absent")).toBe(1);
    expect(count("kho: only this kind")).toBe(1);
  });
});

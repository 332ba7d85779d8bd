// The next kernel: verify, load with kexec_file_load, unload, and the preflight CHECK.
// Only kexec_file_load carries the KHO data; a legacy kexec_load image would make the jump lose
// every session silently (docs/kernel.md#loading-the-next-kernel), so luod loads the kernel itself and remembers that
// it did (in the state dir: a restarted luod must not trust an image someone else loaded).
import { existsSync, readFileSync } from "node:fs";
import type { KernelPort } from "./kernel-port";
import type { StateFiles } from "./state-files";
import type { NextKernel } from "./broker";
import type { Logger } from "./log";
import { normalizeCmdline, analyzeCmdline, checkCmdline } from "./cmdline";
import { inspectKernelImage, KERNEL_HEAD_BYTES } from "./bzimage";
import { fileSize, readFull } from "../kernel/fd";
import { SysError } from "../kernel/libc";
import { ProtocolError } from "../wire/errors";

/**
 * The kernel reads the kernel image and the initrd whole, each at most KEXEC_FILE_SIZE_MAX bytes
 * (4 GiB on 64-bit; a bigger file gets EFBIG): docs/kernel.md#image-size-limit. luod refuses a
 * bigger one before reading a byte of it.
 */
export const KEXEC_FILE_SIZE_MAX = 4 * 1024 ** 3;
/** Hashing yields to the event loop after this long (ms): a 4 GiB image never stalls other clients. */
export const HASH_SLICE_MS = 10;
const HASH_CHUNK_BYTES = 1 << 20;

export interface LoadedKernel extends NextKernel {
  size: number;
  initrdSize: number | null;
  loadedAt: string;
}

export interface LoadRequest {
  kernelFd: number;
  initrdFd: number | null;
  cmdline: string;
  force: boolean;
  sha256: string | null;
}

export class KernelLoader {
  private current: LoadedKernel | null;
  private loading = false;

  constructor(
    private readonly kernel: KernelPort,
    private readonly files: StateFiles,
    private readonly log: Logger,
  ) {
    this.current = files.read<LoadedKernel>("loaded");
  }

  /** What luod loaded, if the kernel still has an image loaded. */
  loaded(): LoadedKernel | null {
    if (this.current && this.kernel.kexecLoaded() === false) {
      this.log.warning("the kernel luod loaded was unloaded by someone else");
      this.forget();
    }
    return this.current;
  }

  /** A LOAD is hashing its image (another LOAD or an UNLOAD waits for it: EBUSY). */
  get busy(): boolean {
    return this.loading;
  }

  /**
   * Verifies and loads. The size and header checks throw at once (the refusal is answered in
   * order); the image is then hashed in slices of HASH_SLICE_MS between which the event loop
   * serves everyone else, and the returned promise settles when that and the load are done.
   * `beforeLoad` runs just before kexec_file_load (it throws to refuse: an update may have
   * started while the image was hashed).
   */
  load(req: LoadRequest, beforeLoad: () => void = () => {}): Promise<LoadedKernel & { warnings: string[] }> {
    if (this.loading) throw new ProtocolError("EBUSY", "another LOAD is in progress");
    const size = fileSize(req.kernelFd);
    checkSize("kernel image", size);
    const initrdSize = req.initrdFd === null ? null : fileSize(req.initrdFd);
    if (initrdSize !== null) checkSize("initrd", initrdSize);
    const head = new Uint8Array(new ArrayBuffer(Math.min(size, KERNEL_HEAD_BYTES)));
    readFull(req.kernelFd, head, 0);
    const image = inspectKernelImage(head, size);
    // the same header checks as the kernel's bzImage64_probe, plus relocatable and truncation
    if (!image.ok) throw new ProtocolError("ENOEXEC", `not a loadable kernel image: ${image.reason}`);
    this.loading = true;
    return this.verifyAndLoad(req, image, size, initrdSize, beforeLoad).finally(() => (this.loading = false));
  }

  private async verifyAndLoad(
    req: LoadRequest, image: Extract<ReturnType<typeof inspectKernelImage>, { ok: true }>, size: number, initrdSize: number | null,
    beforeLoad: () => void,
  ): Promise<LoadedKernel & { warnings: string[] }> {
    this.log.debug(`LOAD: hashing the kernel image (${size} bytes)`);
    const sha256 = await digest(req.kernelFd, size);
    if (req.sha256 && req.sha256.toLowerCase() !== sha256)
      throw new ProtocolError("ENOEXEC", `kernel image SHA-256 is ${sha256}, expected ${req.sha256.toLowerCase()}`);
    beforeLoad();
    const cmdline = normalizeCmdline(req.cmdline);
    const khoOnByDefault = this.kernel.devicePresent() && !/(^|\s)kho=/.test(readText("/proc/cmdline") ?? "kho=");
    const { errors, warnings } = analyzeCmdline(cmdline, { force: req.force, maxLength: image.maxCmdlineLength, khoOnByDefault });
    if (errors.length) throw new ProtocolError("EINVAL", errors.join("; "));
    try {
      this.kernel.loadKernel(req.kernelFd, req.initrdFd, cmdline);
    } catch (e) {
      if (e instanceof SysError) throw new ProtocolError(e.code, `kexec_file_load: ${e.code}${hint(e.code)}`);
      throw e;
    }
    this.current = {
      version: image.version, sha256, cmdline, size,
      initrdSize,
      loadedAt: new Date().toISOString(),
    };
    this.files.write("loaded", this.current);
    this.log.notice(`loaded kernel ${image.version} (${size} bytes, sha256 ${sha256.slice(0, 16)}…) cmdline: ${cmdline}`);
    for (const w of warnings) this.log.warning(`load: ${w}`);
    return { ...this.current, warnings };
  }

  unload(): void {
    if (this.loading) throw new ProtocolError("EBUSY", "a LOAD is in progress");
    try {
      this.kernel.unloadKernel();
    } catch (e) {
      if (e instanceof SysError) throw new ProtocolError(e.code, `kexec_file_load(KEXEC_FILE_UNLOAD): ${e.code}`);
      throw e;
    }
    this.forget();
    this.log.notice("kernel unloaded");
  }

  /** Preflight: everything an operator should know before `luoctl kexec`. */
  check(): { ready: boolean; checks: { name: string; ok: boolean; detail: string }[] } {
    const checks: { name: string; ok: boolean; detail: string }[] = [];
    const device = this.kernel.devicePresent();
    checks.push({
      name: "device",
      ok: device,
      detail: device ? "/dev/liveupdate present" : "/dev/liveupdate missing: boot a kernel with CONFIG_LIVEUPDATE and liveupdate=on",
    });
    const sysctl = readText("/proc/sys/kernel/kexec_load_disabled");
    checks.push({
      name: "kexec_load_disabled",
      ok: sysctl !== "1",
      detail: sysctl === "1" ? "kernel.kexec_load_disabled=1: no kernel can be loaded until reboot" : `kernel.kexec_load_disabled=${sysctl ?? "unknown"}`,
    });
    const lockdown = readText("/sys/kernel/security/lockdown");
    const locked = !!lockdown && !lockdown.includes("[none]");
    checks.push({
      name: "lockdown",
      ok: true,
      detail: lockdown ? `lockdown ${lockdown}${locked ? ": only signed kernel images load" : ""}` : "lockdown not reported",
    });
    const loaded = this.loaded();
    checks.push({
      name: "kernel",
      ok: !!loaded,
      detail: loaded ? `${loaded.version} loaded by luod at ${loaded.loadedAt}` : "no kernel loaded by luod: run `luoctl load`",
    });
    if (loaded) {
      const problems = checkCmdline(loaded.cmdline, { force: false });
      checks.push({ name: "cmdline", ok: problems.length === 0, detail: problems.length ? problems.join("; ") : loaded.cmdline });
    }
    return { ready: checks.every((c) => c.ok), checks };
  }

  private forget(): void {
    this.current = null;
    this.files.remove("loaded");
  }
}

/** Refuses what kexec_file_load would refuse for its size, before luod reads any of it. */
function checkSize(what: string, size: number): void {
  if (size > KEXEC_FILE_SIZE_MAX)
    throw new ProtocolError("EFBIG", `the ${what} is ${size} bytes, over the kernel's maximum of ${KEXEC_FILE_SIZE_MAX} (KEXEC_FILE_SIZE_MAX, 4 GiB)`);
}

/**
 * SHA-256 of the first `size` bytes, read in 1 MiB preads; after every HASH_SLICE_MS of work it
 * yields to the event loop (a timer, so that epoll wake-ups and other requests run in between).
 */
async function digest(fd: number, size: number): Promise<string> {
  const hasher = new Bun.CryptoHasher("sha256");
  const chunk = new Uint8Array(new ArrayBuffer(HASH_CHUNK_BYTES));
  let slice = performance.now();
  for (let off = 0; off < size; ) {
    const n = readFull(fd, chunk.subarray(0, Math.min(chunk.length, size - off)), off);
    if (n <= 0) break;
    hasher.update(chunk.subarray(0, n));
    off += n;
    if (performance.now() - slice >= HASH_SLICE_MS) {
      await new Promise((resolve) => setTimeout(resolve, 0));
      slice = performance.now();
    }
  }
  return hasher.digest("hex");
}

function readText(path: string): string | null {
  if (!existsSync(path)) return null;
  try {
    return readFileSync(path, "utf8").trim();
  } catch {
    return null;
  }
}

/** The errnos of kexec_file_load that have one likely cause (docs/kernel.md#loading-the-next-kernel). */
function hint(code: string): string {
  switch (code) {
    case "EPERM": return " (needs CAP_SYS_BOOT; or kexec_load_disabled, or lockdown refused an unsigned image)";
    case "EBUSY": return " (another kexec load is in progress)";
    case "EADDRNOTAVAIL": return " (the KHO scratch area is too small for this kernel/initrd: see kho_scratch=)";
    case "ENOEXEC": return " (the kernel does not recognise this image format)";
    case "ENOSYS": return " (this kernel has no CONFIG_KEXEC_FILE)";
    default: return "";
  }
}

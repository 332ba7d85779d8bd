// The next kernel: verify, load with kexec_file_load, unload, and the preflight CHECK.
// Only kexec_file_load carries the KHO data; a legacy kexec_load image would make the jump lose
// every session silently (docs/kernel.md#loading-the-next-kernel), so luod loads the kernel itself and remembers that
// it did (in the state dir: a restarted luod must not trust an image someone else loaded).
import { existsSync, fstatSync, readFileSync } from "node:fs";
import type { KernelPort } from "./kernel-port";
import type { StateFiles } from "./state-files";
import type { NextKernel } from "./broker";
import type { Logger } from "./log";
import { MESSAGE_ID } from "./message-ids";
import { normalizeCmdline, analyzeCmdline, checkCmdline } from "./cmdline";
import { inspectKernelImage, KERNEL_HEAD_BYTES } from "./bzimage";
import { closeQuietly, dupFd, fileSize, readFull } from "../kernel/fd";
import { F_SEAL_GROW, F_SEAL_SHRINK, F_SEAL_WRITE, getSeals } from "../kernel/memfd";
import { MAKE_KNOWN, abiProblems, formatAbi, type RunningAbi, type RunningAbiSource } from "./abi-gate";
import { ABI_KINDS, type AbiStrings } from "./image-abi";
import type { ImageAbiResult } from "./image-reader";
import type { KernelImageInfo } from "./bzimage";
import { kernelPlacement, type KernelPlacement, type PreflightKernel } from "./preflight";
import { SysError } from "../kernel/libc";
import { ProtocolError } from "../wire/errors";

/** A kernel image after the synchronous checks. */
type Inspected = KernelImageInfo & { fileSize: number; initrdSize: number | null; placement: KernelPlacement | null };

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
  /** SHA-256 of the initrd (absent in records written before luod hashed initrds). */
  initrdSha256?: string | null;
  /** bzImage init_size and where the kernel may go (preflight: does it fit the KHO scratch); absent in records written before the ABI gate. */
  initSize?: number;
  placement?: KernelPlacement | null;
  loadedAt: string;
}

/** How luod reads the ABI of an image and knows the running kernel's (abi-gate.ts). */
export interface AbiGate {
  /** image-reader.ts readImageAbi (never rejects). */
  readImage(fd: number, image: KernelImageInfo): Promise<ImageAbiResult>;
  running: RunningAbiSource;
}

/** An image that passed every check (LOAD loads it, CHECK with an image only reports). */
interface Verified {
  sha256: string;
  initrdSha256: string | null;
  abi: AbiStrings;
  banner: string | null;
  compression: string;
  /** Why the image must not be loaded (ABI); empty when it may. */
  problems: string[];
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
  /** What holds the loader (one at a time: one image read, one worker): named in the EBUSY refusals. */
  private loading: string | null = null;
  /**
   * luod's own dups of the files it loaded: KEXEC re-hashes them and loads them again, so the
   * kernel in the kernel is the one verified even if someone ran `kexec -s -l` since. Null after
   * a restart (the state file remembers what was loaded, but luod can no longer vouch for it).
   */
  private held: { kernelFd: number; initrdFd: number | null } | null = null;

  constructor(
    private readonly kernel: KernelPort,
    private readonly files: StateFiles,
    private readonly log: Logger,
    private readonly gate: AbiGate | null = null,
  ) {
    this.current = files.read<LoadedKernel>("loaded");
  }

  /** The running kernel's ABI if it was read already (STATUS does not wait for it). */
  runningAbiKnown(): RunningAbi | null {
    return this.gate?.running.peek() ?? null;
  }

  /** Whether this luod loaded the kernel itself (and can reload it at KEXEC). */
  get verifiable(): boolean {
    return this.held !== null;
  }

  /** What luod loaded, if the kernel still has an image loaded. */
  loaded(): LoadedKernel | null {
    if (this.current && this.kernel.kexecLoaded() === false) {
      this.log.warning("the kernel luod loaded was unloaded by someone else");
      this.forget();
    }
    return this.current;
  }

  /** A LOAD, a CHECK of an image or the KEXEC reload is reading an image (another one, or an UNLOAD, is refused: EBUSY). */
  get busy(): boolean {
    return this.loading !== null;
  }

  /**
   * Verifies and loads. The size and header checks throw at once (the refusal is answered in
   * order); the image is then hashed in slices of HASH_SLICE_MS between which the event loop
   * serves everyone else, its ABI is read in a worker thread and compared with the running
   * kernel's, and the returned promise settles when that and the load are done.
   * `beforeLoad` runs just before kexec_file_load (it throws to refuse: an update may have
   * started while the image was read).
   */
  load(req: LoadRequest, beforeLoad: () => void = () => {}): Promise<LoadedKernel & { warnings: string[] }> {
    const image = this.inspect(req.kernelFd, req.initrdFd);
    this.loading = "a LOAD";
    return this.verifyAndLoad(req, image, beforeLoad).finally(() => (this.loading = null));
  }

  /** The synchronous checks: size limits and the bzImage header. Throws the refusal. */
  private inspect(kernelFd: number, initrdFd: number | null): Inspected {
    if (this.loading) throw new ProtocolError("EBUSY", `${this.loading} is in progress: try again when it is done`);
    checkUnchangeable("kernel image", kernelFd);
    if (initrdFd !== null) checkUnchangeable("initrd", initrdFd);
    const size = fileSize(kernelFd);
    checkSize("kernel image", size);
    const initrdSize = initrdFd === null ? null : fileSize(initrdFd);
    if (initrdSize !== null) checkSize("initrd", initrdSize);
    const head = new Uint8Array(new ArrayBuffer(Math.min(size, KERNEL_HEAD_BYTES)));
    readFull(kernelFd, head, 0);
    const image = inspectKernelImage(head, size);
    // the same header checks as the kernel's bzImage64_probe, plus relocatable and truncation
    if (!image.ok) throw new ProtocolError("ENOEXEC", `not a loadable kernel image: ${image.reason}`);
    return { ...image, fileSize: size, initrdSize, placement: kernelPlacement(head) };
  }

  /** Hashes both files and reads the image's ABI; `problems` says why it must not be loaded. */
  private async verify(kernelFd: number, initrdFd: number | null, image: Inspected, sha256Wanted: string | null): Promise<Verified> {
    this.log.debug(`LOAD: hashing the kernel image (${image.fileSize} bytes)`);
    const sha256 = await digest(kernelFd, image.fileSize);
    if (sha256Wanted && sha256Wanted.toLowerCase() !== sha256)
      throw new ProtocolError("ENOEXEC", `kernel image SHA-256 is ${sha256}, expected ${sha256Wanted.toLowerCase()}`);
    const initrdSha256 = initrdFd === null ? null : await digest(initrdFd, image.initrdSize!);
    if (!this.gate) {
      // fail closed: a luod that cannot read ABIs never loads
      return { sha256, initrdSha256, abi: NO_ABI, banner: null, compression: "unknown", problems: ["luod cannot read kernel ABIs here"] };
    }
    const [read, running] = await Promise.all([this.gate.readImage(kernelFd, image), this.gate.running.get()]);
    if (!read.ok) {
      return { sha256, initrdSha256, abi: NO_ABI, banner: null, compression: read.compression ?? "unknown", problems: [read.message] };
    }
    const abi = { luo: read.luo, memfd: read.memfd, kho: read.kho };
    // the banner the new kernel's /proc/version will show: the one that is a whole version line
    const banner = read.banners.find((b) => /^Linux version \S+ .*#\d/.test(b)) ?? null;
    return { sha256, initrdSha256, abi, banner, compression: read.compression, problems: abiProblems(running, { ...abi, ambiguous: read.ambiguous }) };
  }

  private async verifyAndLoad(
    req: LoadRequest, image: Inspected, beforeLoad: () => void,
  ): Promise<LoadedKernel & { warnings: string[] }> {
    const v = await this.verify(req.kernelFd, req.initrdFd, image, req.sha256);
    // No --force for these: a kernel with another LUO ABI panics at boot, which is strictly
    // worse than a cold reboot (docs/reliability.md#the-abi-gate).
    if (v.problems.length) throw new ProtocolError("ENOEXEC", `refusing this kernel: ${v.problems.join("; ")}`);
    beforeLoad();
    const cmdline = normalizeCmdline(req.cmdline);
    const { errors, warnings } = analyzeCmdline(cmdline, { force: req.force, maxLength: image.maxCmdlineLength, khoOnByDefault: this.khoOnByDefault() });
    if (errors.length) throw new ProtocolError("EINVAL", `${errors.join("; ")} (the command line judged: ${judged(cmdline)})`);
    // dup first: a failing dup (EMFILE) must not leave a kernel loaded that luod cannot reload
    const held = { kernelFd: dupFd(req.kernelFd), initrdFd: req.initrdFd === null ? null : dupFd(req.initrdFd) };
    try {
      this.kexecFileLoad(req.kernelFd, req.initrdFd, cmdline);
    } catch (e) {
      closeQuietly([held.kernelFd, ...(held.initrdFd === null ? [] : [held.initrdFd])]);
      throw e;
    }
    this.release();
    this.held = held;
    this.current = {
      version: image.version, sha256: v.sha256, cmdline, size: image.fileSize,
      initrdSize: image.initrdSize, initrdSha256: v.initrdSha256,
      banner: v.banner, abi: v.abi, initSize: image.initSize, placement: image.placement,
      loadedAt: new Date().toISOString(),
    };
    this.files.write("loaded", this.current);
    this.log.notice(`loaded kernel ${image.version} (${image.fileSize} bytes, sha256 ${v.sha256.slice(0, 16)}…, ABI ${formatAbi(v.abi)}) cmdline: ${cmdline}`, { MESSAGE_ID: MESSAGE_ID.kernelLoaded });
    for (const w of warnings) this.log.warning(`load: ${w}`);
    return { ...this.current, warnings };
  }

  /**
   * KEXEC, before any client is paused: the image in the kernel must still be the one luod
   * verified (anyone with CAP_SYS_BOOT may have run `kexec -s -l` since, and nothing reads back
   * what is loaded: docs/kernel.md#loading-the-next-kernel). Re-hash what luod holds and load it
   * again. Throws the refusal.
   */
  async reload(stillWanted: () => void): Promise<void> {
    const k = this.current;
    if (!k) throw new ProtocolError("EINVAL", "no kernel is loaded by luod: run `luoctl load` first");
    if (!this.held)
      throw new ProtocolError("EINVAL", `the kernel ${k.version} was loaded before luod restarted, and luod cannot vouch for what is in the kernel now: run \`luoctl load\` again`);
    if (this.loading) throw new ProtocolError("EBUSY", `${this.loading} is in progress: try again when it is done`);
    this.loading = "a KEXEC re-verifying the loaded kernel";
    try {
      const { kernelFd, initrdFd } = this.held;
      const sha256 = await digest(kernelFd, fileSize(kernelFd));
      const initrdSha256 = initrdFd === null ? null : await digest(initrdFd, fileSize(initrdFd));
      if (sha256 !== k.sha256 || (k.initrdSha256 !== undefined && initrdSha256 !== k.initrdSha256)) {
        this.unloadQuietly("its file changed after LOAD");
        throw new ProtocolError("ENOEXEC", `the ${sha256 !== k.sha256 ? "kernel image" : "initrd"} changed on disk after \`luoctl load\` verified it: unloaded; load it again`);
      }
      stillWanted();
      this.kexecFileLoad(kernelFd, initrdFd, k.cmdline);
      this.log.info(`KEXEC: reloaded the verified kernel ${k.version} (whatever was loaded since LOAD is replaced)`);
    } finally {
      this.loading = null;
    }
  }

  unload(): void {
    if (this.loading) throw new ProtocolError("EBUSY", `${this.loading} is in progress: try again when it is done`);
    try {
      this.kernel.unloadKernel();
    } catch (e) {
      if (e instanceof SysError) throw new ProtocolError(e.code, `kexec_file_load(KEXEC_FILE_UNLOAD): ${e.code}`);
      throw e;
    }
    this.forget();
    this.log.notice("kernel unloaded", { MESSAGE_ID: MESSAGE_ID.kernelUnloaded });
  }

  /**
   * luod starts or stops outside of a jump: a loaded kernel goes, whoever loaded it. While one is
   * loaded, systemd ≥ 261 makes every `systemctl reboot` a kexec (docs/systemd.md#surprise-kexecs),
   * and a luod that does not hold the image cannot vouch for its ABI (a mismatch panics the new
   * kernel). The crash kernel (kexec -p) is a separate image and stays.
   */
  unloadUnvouched(why: string): void {
    // Without LUO there are no sessions and no handover ABI to protect: an administrator's own
    // `kexec -l` for a fast reboot is left alone (and so is the record, for STATUS).
    if (!this.kernel.devicePresent()) return;
    if (this.kernel.kexecLoaded() !== true) {
      if (this.current && !this.held) this.forget();
      return;
    }
    this.unloadQuietly(why);
  }

  private unloadQuietly(why: string): void {
    try {
      this.kernel.unloadKernel();
      this.forget();
      this.log.notice(`unloaded the next kernel (${why}): while one is loaded every \`systemctl reboot\` is a kexec; \`luoctl load\` again to update`, { MESSAGE_ID: MESSAGE_ID.kernelUnloaded });
    } catch (e) {
      this.log.warning(`unloading the next kernel (${why}) failed: ${(e as Error).message}`);
    }
  }

  private kexecFileLoad(kernelFd: number, initrdFd: number | null, cmdline: string): void {
    try {
      this.kernel.loadKernel(kernelFd, initrdFd, cmdline);
    } catch (e) {
      if (e instanceof SysError) throw new ProtocolError(e.code, `kexec_file_load: ${e.code}${hint(e.code)}`);
      throw e;
    }
  }

  private release(): void {
    if (!this.held) return;
    closeQuietly([this.held.kernelFd, ...(this.held.initrdFd === null ? [] : [this.held.initrdFd])]);
    this.held = null;
  }

  private khoOnByDefault(): boolean {
    return this.kernel.devicePresent() && !/(^|\s)kho=/.test(readText("/proc/cmdline") ?? "kho=");
  }

  /**
   * Preflight: everything an operator should know before `luoctl kexec`, about the loaded kernel.
   * Synchronous (CHECK is answered in order): the running ABI is what luod read at start-up
   * (main.ts starts reading it); until that is done the check says so and fails.
   */
  check(): CheckResult {
    const running = this.runningAbiNow();
    const checks = [...this.hostChecks(), running.check];
    const loaded = this.loaded();
    checks.push({
      name: "kernel",
      ok: !!loaded && this.held !== null,
      detail: !loaded ? "no kernel loaded by luod: run `luoctl load`"
        : this.held ? `${loaded.version} loaded by luod at ${loaded.loadedAt}`
        : `${loaded.version} was loaded before luod restarted: luod cannot vouch for it, run \`luoctl load\` again`,
    });
    let next: CheckResult["next"] = null;
    if (loaded) {
      const abi = loaded.abi ?? NO_ABI;
      const abiTrouble = !loaded.abi ? ["this kernel was loaded by a luod that did not record its ABI: load it again"]
        : running.abi ? abiProblems(running.abi, abi) : [running.check.detail];
      checks.push(abiCheck(abi, abiTrouble));
      const problems = checkCmdline(loaded.cmdline, { force: false });
      checks.push({ name: "cmdline", ok: problems.length === 0, detail: problems.length ? problems.join("; ") : loaded.cmdline });
      next = { abi, version: loaded.version, cmdline: loaded.cmdline, initSize: loaded.initSize, placement: loaded.placement, size: loaded.size, initrdSize: loaded.initrdSize };
    }
    return { ready: checks.every((c) => c.ok), checks, abi: { running: running.abi, next: next?.abi ?? null }, next };
  }

  /**
   * `luoctl check --kernel`: the same checks about an image that is verified like a LOAD (hash,
   * ABI) and never loaded. The header checks throw at once; the rest settles later.
   */
  checkImage(candidate: CheckCandidate): Promise<CheckResult> {
    const image = this.inspect(candidate.kernelFd, candidate.initrdFd);
    this.loading = "a CHECK of an image (luoctl check --kernel)";
    return this.verify(candidate.kernelFd, candidate.initrdFd, image, null).finally(() => (this.loading = null)).then((v) => {
      const running = this.runningAbiNow();
      const checks = [...this.hostChecks(), running.check];
      const cmdline = normalizeCmdline(candidate.cmdline);
      checks.push({ name: "kernel", ok: true, detail: `${image.version} (${image.fileSize} bytes, sha256 ${v.sha256.slice(0, 16)}…, ${v.compression}): checked, not loaded` });
      checks.push(abiCheck(v.abi, v.problems));
      const { errors, warnings } = analyzeCmdline(cmdline, { force: false, maxLength: image.maxCmdlineLength, khoOnByDefault: this.khoOnByDefault() });
      checks.push({ name: "cmdline", ok: errors.length === 0, detail: [...errors, ...warnings].length ? `${[...errors, ...warnings].join("; ")} (the command line judged: ${judged(cmdline)})` : cmdline });
      const next = { abi: v.abi, version: image.version, cmdline, initSize: image.initSize, placement: image.placement, size: image.fileSize, initrdSize: image.initrdSize };
      return { ready: checks.every((c) => c.ok), checks, abi: { running: running.abi, next: v.abi }, next };
    });
  }

  /** What the host allows: the device, kexec_load_disabled, lockdown. */
  private hostChecks(): Check[] {
    const checks: Check[] = [];
    const device = this.kernel.devicePresent();
    checks.push({
      name: "device",
      ok: device,
      detail: device ? "/dev/liveupdate present" : "/dev/liveupdate missing: boot a kernel with CONFIG_LIVEUPDATE and liveupdate=on",
    });
    // no such sysctl: the running kernel was built without kexec (docs/kernel.md#loading-the-next-kernel)
    const sysctl = readText("/proc/sys/kernel/kexec_load_disabled");
    checks.push({
      name: "kexec_load_disabled",
      ok: sysctl === "0",
      detail: sysctl === "1"
        ? "kernel.kexec_load_disabled=1: no kernel can be loaded until reboot"
        : sysctl === null
          ? "this kernel cannot kexec at all: no /proc/sys/kernel/kexec_load_disabled (built without CONFIG_KEXEC_CORE / CONFIG_KEXEC_FILE)"
          : `kernel.kexec_load_disabled=${sysctl}`,
    });
    const lockdown = readText("/sys/kernel/security/lockdown");
    const locked = !!lockdown && !lockdown.includes("[none]");
    checks.push({
      name: "lockdown",
      ok: true,
      detail: lockdown ? `lockdown ${lockdown}${locked ? ": only signed kernel images load" : ""}` : "lockdown not reported",
    });
    return checks;
  }

  /** The running kernel's ABI as a check, from what has been read so far: never waits, never throws. */
  private runningAbiNow(): { abi: RunningAbi | null; check: Check } {
    if (!this.gate) return { abi: null, check: { name: "running-abi", ok: false, detail: "luod cannot read kernel ABIs here" } };
    const r = this.gate.running.peek();
    if (!r) {
      const failed = this.gate.running.failure();
      return { abi: null, check: { name: "running-abi", ok: false, detail: failed ? `reading the running kernel's ABI failed: ${failed}` : "still being read (luod started a moment ago): check again" } };
    }
    const unknown = ABI_KINDS.filter((k) => r.abi[k] === null);
    // not on a host without LUO: a `luoctl check` loop there would decode the running image every 10 s for nothing
    if (unknown.length && this.kernel.devicePresent()) this.gate.running.refreshIfIncomplete();
    return {
      abi: r,
      check: {
        name: "running-abi",
        ok: unknown.length === 0,
        detail: unknown.length
          ? `unknown: ${unknown.join(", ")} (${r.notes.join("; ") || "no source had it"}); ${MAKE_KNOWN} (luod reads it again at the next check)`
          : `${formatAbi(r.abi)} (${ABI_KINDS.map((k) => `${k}: ${r.sources[k]}`).join("; ")})`,
      },
    };
  }

  private forget(): void {
    this.release();
    this.current = null;
    this.files.remove("loaded");
  }
}

export interface Check {
  name: string;
  ok: boolean;
  detail: string;
  /** ok, but the operator should know (preflight.ts). */
  warning?: boolean;
}

export interface CheckCandidate {
  kernelFd: number;
  initrdFd: number | null;
  cmdline: string;
}

export interface CheckResult {
  ready: boolean;
  checks: Check[];
  abi: { running: RunningAbi | null; next: AbiStrings | null };
  /** The kernel the checks are about (loaded, or the candidate): for the checks the caller adds (preflight.ts). */
  next: (PreflightKernel & { abi: AbiStrings; version: string }) | null;
}

function abiCheck(abi: AbiStrings, problems: string[]): Check {
  return { name: "abi", ok: problems.length === 0, detail: problems.length ? problems.join("; ") : `${formatAbi(abi)}: the same as the running kernel's` };
}

const NO_ABI: AbiStrings = { luo: null, memfd: null, kho: null };

/**
 * luod reads an image several times (hash, ABI, kexec_file_load, the reload at KEXEC): a file that
 * someone other than root (or luod's own user) may write could change in between, and a kernel
 * with another LUO ABI panics at boot. Taken: a regular file owned by root or luod's user and not
 * writable by group or others, or a memfd sealed against writes and size changes (a fleet tool's
 * download). The fd is checked, not a path.
 */
function checkUnchangeable(what: string, fd: number): void {
  const st = fstatSync(fd);
  if (!st.isFile()) throw new ProtocolError("EINVAL", `the ${what} is not a regular file`);
  if (sealedMemfd(fd)) return;
  const me = process.geteuid?.() ?? 0;
  const writers = [st.mode & 0o020 ? "its group" : "", st.mode & 0o002 ? "others" : ""].filter(Boolean).join(" and ");
  const why = st.uid !== 0 && st.uid !== me ? `owned by uid ${st.uid}`
    : writers ? `writable by ${writers} (mode ${(st.mode & 0o777).toString(8).padStart(4, "0")})` : null;
  if (why)
    throw new ProtocolError("EACCES",
      `the ${what} is ${why}: it could change between luod's checks and the load; ` +
        "copy it where only root can write it (e.g. install -o root -m 0644 FILE /boot/) and load that, or send a sealed memfd");
}

const WRITE_SEALS = F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW;

/** A memfd whose content can no longer change (F_GET_SEALS fails on anything but a memfd). */
function sealedMemfd(fd: number): boolean {
  try {
    return (getSeals(fd) & WRITE_SEALS) === WRITE_SEALS;
  } catch {
    return false;
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

/** A command line quoted for an error message, cut at 512 characters (the client escapes it for its terminal). */
function judged(cmdline: string): string {
  return JSON.stringify(cmdline.length > 512 ? `${cmdline.slice(0, 512)}…` : cmdline);
}

// The commands about the next kernel: load (luoctl opens the files, luod verifies and loads),
// unload, and check (the preflight).
import { closeSync, constants, fstatSync, openSync } from "node:fs";
import { setNonblocking } from "../kernel/unix";
import { UsageError, lastValue, optionValues, parseSha256, unmark } from "./args";
import { EXIT_FAILED, EXIT_OK, LocalError, QUICK_REPLY_TIMEOUT_MS, emit, replyTimeout, withClient, type Ctx } from "./context";
import { formatCheck, formatLoad } from "./format";
import { initArgsIndex, splitCmdline } from "../cmdline-split";

/** LOAD hashes and loads a kernel image: allow for a slow disk. */
const LOAD_TIMEOUT_MS = 120_000;

/** The command line luoctl sends with LOAD (luod normalizes and checks it). */
export function buildCmdline(o: { cmdline?: string; reuse: boolean; append: string[] }, procCmdline: () => string): string {
  if (o.cmdline !== undefined && o.reuse) throw new UsageError("--cmdline and --reuse-cmdline exclude each other");
  if (o.cmdline === undefined && !o.reuse && o.append.length === 0) {
    throw new UsageError("load needs a command line: --cmdline STRING, --reuse-cmdline, or --append STRING");
  }
  let base = o.cmdline ?? "";
  if (o.reuse) {
    try {
      base = procCmdline().replace(/\n$/, "").trim();
    } catch (e) {
      throw new LocalError("EIO", `cannot read /proc/cmdline: ${(e as Error).message}`);
    }
  }
  const appended = o.append.map((p) => p.trim()).filter((p) => p !== "");
  // everything after a bare "--" goes to init, not to the kernel: what --append adds is a kernel
  // parameter (liveupdate=on), so it goes before it, as kexec-tools' --append does
  const tokens = splitCmdline(base);
  const init = initArgsIndex(tokens);
  if (init >= 0 && appended.length > 0) return [...tokens.slice(0, init), ...appended, ...tokens.slice(init)].join(" ");
  return [base.trim(), ...appended].filter((p) => p !== "").join(" ");
}

/**
 * Opens a file for LOAD and refuses anything but a regular file. O_NONBLOCK: opening a FIFO (or a
 * device) must not block luoctl before the type is known; the type is then checked on the open
 * fd (fstat), not on the path, so nothing can be swapped in between. O_NOCTTY: a terminal device
 * never becomes luoctl's controlling terminal.
 */
function openForLoad(path: string, what: string): number {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (e) {
    const code = (e as { code?: string }).code ?? "EIO";
    // node's message: "ENOENT: no such file or directory, open '/x'"
    const why = /^[A-Z0-9]+: ([^,]+)/.exec((e as Error).message)?.[1];
    throw new LocalError(code, `cannot open ${what} ${path}: ${why ? `${why} (${code})` : code}`);
  }
  try {
    if (!fstatSync(fd).isFile()) throw new LocalError("EINVAL", `${what} ${path} is not a regular file`);
    setNonblocking(fd, false); // what luod reads is a plain file descriptor
  } catch (e) {
    closeSync(fd);
    throw e;
  }
  return fd;
}

export async function cmdLoad(ctx: Ctx, args: string[], opts: Record<string, unknown>): Promise<number> {
  const shaText = lastValue(opts.sha256, "sha256");
  const sha256 = shaText === undefined ? undefined : parseSha256(shaText);
  return withImage(ctx, unmark(args[0]!), opts, async (image) => {
    const r = await withClient(ctx, (c) =>
      c.load({ ...image, force: opts.force === true, sha256 }, { timeoutMs: replyTimeout(ctx, LOAD_TIMEOUT_MS) }),
    );
    emit(ctx, r, () => formatLoad(r));
    return EXIT_OK;
  });
}

/** Opens KERNEL (and --initrd), builds the command line from the options, runs `use`, closes the files. */
async function withImage(
  ctx: Ctx, kernel: string, opts: Record<string, unknown>,
  use: (image: { kernelFd: number; initrdFd: number | null; cmdline: string }) => Promise<number>,
): Promise<number> {
  const initrd = lastValue(opts.initrd, "initrd");
  const cmdline = buildCmdline(
    { cmdline: lastValue(opts.cmdline, "cmdline"), reuse: opts.reuseCmdline === true, append: optionValues(opts.append, "append") },
    () => ctx.io.readProcCmdline(),
  );
  const fds: number[] = [];
  try {
    const kernelFd = openForLoad(kernel, "kernel");
    fds.push(kernelFd);
    const initrdFd = initrd === undefined ? null : openForLoad(initrd, "initrd");
    if (initrdFd !== null) fds.push(initrdFd);
    return await use({ kernelFd, initrdFd, cmdline });
  } finally {
    for (const fd of fds) closeSync(fd);
  }
}

export async function cmdUnload(ctx: Ctx): Promise<number> {
  const r = await withClient(ctx, (c) => c.unload({ timeoutMs: replyTimeout(ctx, QUICK_REPLY_TIMEOUT_MS) }));
  emit(ctx, r, () => "kernel unloaded");
  return EXIT_OK;
}

/**
 * Exit 1 when luod is not ready for a live update. With --kernel, the checks are about that image
 * (luod verifies it as LOAD would, ABI included, and never loads it) instead of the loaded one.
 */
export async function cmdCheck(ctx: Ctx, _args: string[] = [], opts: Record<string, unknown> = {}): Promise<number> {
  const kernel = lastValue(opts.kernel, "kernel");
  const run = async (image?: { kernelFd: number; initrdFd: number | null; cmdline: string }) => {
    // with an image, luod hashes it and reads its ABI: give it LOAD's time
    const timeoutMs = replyTimeout(ctx, image ? LOAD_TIMEOUT_MS : QUICK_REPLY_TIMEOUT_MS);
    const r = await withClient(ctx, (c) => c.check({ timeoutMs }, image));
    emit(ctx, r, () => formatCheck(r));
    return r.ready === true ? EXIT_OK : EXIT_FAILED;
  };
  if (kernel === undefined) {
    if (opts.initrd !== undefined || opts.cmdline !== undefined || opts.reuseCmdline || opts.append !== undefined)
      throw new UsageError("--initrd, --cmdline, --reuse-cmdline and --append go with --kernel FILE");
    return run();
  }
  // no command line given: the running one, which is what `luoctl load --reuse-cmdline` would send
  const given = opts.cmdline !== undefined || opts.reuseCmdline === true;
  return withImage(ctx, kernel, given ? opts : { ...opts, reuseCmdline: true }, run);
}

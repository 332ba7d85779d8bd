// Loading the next kernel and jumping into it (docs/kernel.md#loading-the-next-kernel,
// docs/kernel.md#the-freeze-and-its-rollback).
import { readFileSync } from "node:fs";
import { release } from "node:os";
import { ptr } from "bun:ffi";
import { check, cString, lastErrno, SysError, sys } from "./libc.ts";

export const KEXEC_FILE_UNLOAD = 0x1;
export const KEXEC_FILE_ON_CRASH = 0x2;
export const KEXEC_FILE_NO_INITRAMFS = 0x4;

// x86_64 syscall numbers; glibc wraps neither kexec_file_load nor the raw reboot(2).
const SYS_kexec_file_load = 320;
const SYS_reboot = 169;
const LINUX_REBOOT_MAGIC1 = 0xfee1dead;
const LINUX_REBOOT_MAGIC2 = 672274793; // 0x28121969
const LINUX_REBOOT_CMD_KEXEC = 0x45584543;

/**
 * kexec_file_load(2). Only this call carries KHO: an image loaded with the legacy kexec_load makes
 * the jump silently drop every LUO session (docs/kernel.md#loading-the-next-kernel), so there is no
 * fallback. cmdline_len counts the trailing NUL (the kernel answers EINVAL otherwise). A null
 * initrd sets KEXEC_FILE_NO_INITRAMFS. Segments must fit in KHO scratch, else EADDRNOTAVAIL
 * (docs/kernel.md#kho-scratch). Needs CAP_SYS_BOOT in the initial user namespace (EPERM otherwise).
 */
export function kexecFileLoad(kernelFd: number, initrdFd: number | null, cmdline: string, flags = 0): void {
  const op = "kexec_file_load";
  const cmd = cString(op, cmdline);
  const initrd = initrdFd ?? -1;
  const allFlags = initrdFd === null ? flags | KEXEC_FILE_NO_INITRAMFS : flags;
  // cmd stays referenced until the call returns; the kernel copies it.
  check(op, sys.syscall(SYS_kexec_file_load, kernelFd, initrd, cmd.length, ptr(cmd), allFlags, 0));
}

/** Unload the loaded (non-crash) image, e.g. on abort: a loaded image turns every reboot into a kexec. */
export function kexecFileUnload(): void {
  check("kexec_file_load(KEXEC_FILE_UNLOAD)", sys.syscall(SYS_kexec_file_load, -1, -1, 0, 0, KEXEC_FILE_UNLOAD, 0));
}

/** /sys/kernel/kexec_loaded as a boolean; null when the file is absent or unreadable. */
export function kexecLoaded(path = "/sys/kernel/kexec_loaded"): boolean | null {
  try {
    return readFileSync(path, "utf8").trim() === "1";
  } catch {
    return null;
  }
}

/**
 * sync(2): kexec neither syncs nor unmounts (docs/kernel.md#sync-before-the-jump), so the caller
 * must, right before the jump.
 */
export function syncFilesystems(): void {
  sys.sync();
}

/**
 * reboot(LINUX_REBOOT_CMD_KEXEC): LUO freezes and serializes every outgoing session here
 * (docs/kernel.md#the-freeze-and-its-rollback), so the caller must still hold all session fds. On
 * success the machine is gone and this never returns. On failure the freeze was rolled back,
 * sessions are intact, and this throws:
 * EINVAL (no image loaded, or called from a child pid namespace), EBUSY, EPERM, or a freeze error.
 */
export function rebootKexec(): never {
  sys.syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2, LINUX_REBOOT_CMD_KEXEC, 0, 0, 0);
  throw new SysError("reboot(LINUX_REBOOT_CMD_KEXEC)", lastErrno());
}

/** uname -r of the running kernel. */
export function unameRelease(): string {
  return release();
}

// memfd_create, size and seals: the only file type LUO can preserve in 7.2
// (docs/kernel.md#what-can-be-preserved).
import { check, cString, sys } from "./libc.ts";

export const MFD_CLOEXEC = 1;
export const MFD_ALLOW_SEALING = 2;

export const F_SEAL_SEAL = 0x1;
export const F_SEAL_SHRINK = 0x2;
export const F_SEAL_GROW = 0x4;
export const F_SEAL_WRITE = 0x8;
export const F_SEAL_FUTURE_WRITE = 0x10;
export const F_SEAL_EXEC = 0x20;

const F_ADD_SEALS = 1033;
const F_GET_SEALS = 1034;

/**
 * memfd_create(2). Don't add MFD_HUGETLB if it is to be preserved: hugetlb memfds are rejected with
 * ENOENT (docs/kernel.md#what-can-be-preserved). The name is lost across a live update either way.
 */
export function memfdCreate(name: string, flags: number = MFD_CLOEXEC | MFD_ALLOW_SEALING): number {
  const op = `memfd_create ${name}`;
  return check(op, sys.memfd_create(cString(op, name), flags));
}

/**
 * ftruncate(2). After PRESERVE_FD a size change fails with EPERM
 * (docs/kernel.md#memfd-preservation).
 */
export function ftruncate(fd: number, size: number): void {
  check("ftruncate", sys.ftruncate(fd, size));
}

/**
 * F_ADD_SEALS. LUO captures seals at PRESERVE_FD time only; seals added afterwards are not
 * carried over (docs/kernel.md#memfd-preservation).
 */
export function addSeals(fd: number, seals: number): void {
  check("fcntl(F_ADD_SEALS)", sys.fcntl(fd, F_ADD_SEALS, seals));
}

export function getSeals(fd: number): number {
  return check("fcntl(F_GET_SEALS)", sys.fcntl(fd, F_GET_SEALS, 0));
}

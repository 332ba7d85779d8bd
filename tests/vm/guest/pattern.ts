// The content every VM test client puts in its memfd: xorshift32 seeded from the client's id, so
// the second boot can regenerate it and compare every byte, and no two clients share content.
import { closeFd, readWhole } from "../../../src/kernel/fd";
import { finishSession, retrieveMemfd, type LuoClient } from "../../../src/client";

export function pattern(id: string, bytes: number): Uint8Array {
  const out = new Uint8Array(new ArrayBuffer(bytes));
  const words = new Uint32Array(out.buffer, 0, bytes >>> 2);
  let x = 2166136261;
  for (const ch of id) x = Math.imul(x ^ ch.charCodeAt(0), 16777619) >>> 0;
  x ||= 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    words[i] = x;
  }
  return out;
}

/** Whether the memfd holds exactly `bytes` bytes of `id`'s pattern (its size is returned too). */
export function holdsPattern(fd: number, id: string, bytes: number): { size: number; same: boolean } {
  const got = readWhole(fd);
  const want = pattern(id, bytes);
  return { size: got.length, same: got.length === want.length && Buffer.from(got.buffer).equals(Buffer.from(want.buffer)) };
}

/**
 * The rest of a claim, after CLAIMED: RETRIEVE_FD `token`, compare every byte with `id`'s pattern
 * of `bytes` bytes, FINISH the session, close both fds and send FINISHED.
 */
export async function verifyAndFinish(
  client: LuoClient, id: string, sessionFd: number, token: number | bigint, bytes: number,
): Promise<{ size: number; same: boolean }> {
  const memfd = retrieveMemfd(sessionFd, token);
  const seen = holdsPattern(memfd, id, bytes);
  finishSession(sessionFd);
  closeFd(sessionFd);
  closeFd(memfd);
  await client.finished(id);
  return seen;
}

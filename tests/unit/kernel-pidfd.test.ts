// isSocket and peerPidfd (src/kernel): the two facts luod's dead-peer rules rest on
// (docs/kernel.md#sockets-in-flight, docs/kernel.md#pidfds-of-peers).
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { acceptConnection, peerCredentials, peerPidfd, socketPair, unixListen, waitFd } from "../../src/kernel/unix";
import { closeFd, fdTarget, isSocket, openFile, O_RDONLY, O_CLOEXEC } from "../../src/kernel/fd";
import { memfdCreate } from "../../src/kernel/memfd";

const dir = mkdtempSync(join(tmpdir(), "luo-pidfd-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("isSocket", () => {
  test("true for either end of a socketpair, false for a memfd and /dev/null", () => {
    const [a, b] = socketPair();
    const m = memfdCreate("not-a-socket");
    const n = openFile("/dev/null", O_RDONLY | O_CLOEXEC);
    try {
      expect([isSocket(a!), isSocket(b!), isSocket(m), isSocket(n)]).toEqual([true, true, false, false]);
    } finally {
      for (const fd of [a!, b!, m, n]) closeFd(fd);
    }
  });
});

describe("peerPidfd", () => {
  test("names the connecting process, and becomes readable once that process has exited", async () => {
    const path = join(dir, "s.sock");
    const listenFd = unixListen(path);
    const child = Bun.spawn([process.execPath, "-e", `require("node:net").connect(${JSON.stringify(path)}).on("connect", () => setTimeout(() => process.exit(0), 300))`]);
    let conn: number | null = null;
    let pidfd: number | null = null;
    try {
      const until = Date.now() + 10_000;
      while ((conn = acceptConnection(listenFd)) === null && Date.now() < until) await Bun.sleep(10);
      expect(conn).not.toBeNull();
      const pid = peerCredentials(conn!).pid;
      expect(pid).toBe(child.pid);
      pidfd = peerPidfd(conn!, pid);
      expect(pidfd).not.toBeNull();
      expect(fdTarget(pidfd!)).toContain("pidfd");
      expect(waitFd(pidfd!, "read", 0)).toBe(false); // alive
      await child.exited;
      expect(waitFd(pidfd!, "read", 5000)).toBe(true); // exited
    } finally {
      if (pidfd !== null) closeFd(pidfd);
      if (conn !== null) closeFd(conn);
      closeFd(listenFd);
      child.kill();
    }
  });
});

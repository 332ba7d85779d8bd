// luod's parts in this process, wired as runDaemon (src/daemon/main.ts) wires them in direct kexec
// mode (no SystemdHandoff: it would wrap the kernel port; the fake kernel's jump is the jump), on a
// socket in a fresh temp dir. For tests that drive luod over its socket and look inside it.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { KernelPort } from "../../src/daemon/kernel-port";
import { Broker } from "../../src/daemon/broker";
import { KernelLoader } from "../../src/daemon/loader";
import { RestoredSessions } from "../../src/daemon/restored";
import { Server } from "../../src/daemon/server";
import { StateFiles } from "../../src/daemon/state-files";
import type { Logger } from "../../src/daemon/log";
import { attemptCounter } from "../../src/daemon/main";
import { decodeManifest, MANIFEST_TOKEN } from "../../src/daemon/manifest";
import { INTERNAL_SESSION } from "../../src/wire/ids";
import { EventLoop } from "../../src/kernel/epoll";
import { unixListen } from "../../src/kernel/unix";
import { closeFd } from "../../src/kernel/fd";

export interface InProcessLuod {
  socket: string;
  /** The temp dir of the socket and the state dir (the caller removes it). */
  dir: string;
  broker: Broker;
  restored: RestoredSessions;
  server: Server;
  /** What main.ts's stop() does on SIGTERM; a second call does nothing. */
  stop(): void;
  /** Resolves once luod's event loop has stopped. */
  closed: Promise<void>;
}

export function startInProcessLuod(o: {
  kernel: KernelPort;
  log: Logger;
  /** Runs on the state dir before the parts read it. */
  seed?: (files: StateFiles) => void;
  maxConnections: number;
  /** Prefix of the temp dir's name. */
  name: string;
}): InProcessLuod {
  const { kernel, log } = o;
  const dir = mkdtempSync(join(tmpdir(), `${o.name}-`));
  const socket = join(dir, "luod.sock");
  const listenFd = unixListen(socket);
  const loop = new EventLoop({ onError: (e) => log.error(String(e)) });
  const files = new StateFiles(join(dir, "state"));
  o.seed?.(files);
  const restored = new RestoredSessions(kernel, files, log);
  // main.ts's restore(), its live-update-boot branch: the manifest is in luod's own session
  let boot = "cold boot";
  const blob = kernel.takeBlob(INTERNAL_SESSION, MANIFEST_TOKEN);
  if (blob.kind === "taken") {
    restored.adoptManifest(decodeManifest(blob.data));
    boot = "live-update boot";
  }
  const loader = new KernelLoader(kernel, files, log);
  const broker = new Broker({ kernel, log, nextKernel: () => loader.loaded(), nextAttempt: attemptCounter(files) });
  const gid = process.getgid?.() ?? 0;
  const server = new Server({
    listenFd, loop, broker, loader, restored, log,
    access: { adminGid: gid, clientGid: gid }, // root or not, the test process has both roles
    maxConnections: o.maxConnections,
    statusExtra: () => ({ boot, device: kernel.devicePresent() ? "present" : "absent" }),
  });
  let stopped = false;
  return {
    socket, dir, broker, restored, server, closed: loop.closed,
    stop() {
      if (stopped) return;
      stopped = true;
      broker.shutdown();
      server.close();
      restored.closeAll();
      loop.close();
      closeFd(listenFd);
    },
  };
}

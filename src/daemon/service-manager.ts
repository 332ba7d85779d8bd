// What luod asks of its service manager and of the session fds it hands over: sd_notify (with
// fds), $LISTEN_FDS, systemctl, LIVEUPDATE_SESSION_GET_NAME, reading a blob session. One object,
// so that tests replace all of it with a fake manager (tests/unit/daemon-systemd-handoff.test.ts).
import { sdListenFds, sdNotify, sdNotifyBarrier, sdNotifyWithFds } from "../kernel/sdnotify";
import { closeFd, readWhole } from "../kernel/fd";
import { finishSession, getSessionName, retrieveFd } from "../kernel/liveupdate";

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface SystemdOps {
  listenFds(): { fd: number; name: string }[];
  /** sd_notify (with fds: sd_pid_notify_with_fds); throws when it cannot be sent. */
  notify(state: string, fds?: readonly number[]): void;
  /** sd_notify_barrier: returns once the manager processed every earlier notification. */
  barrier(timeoutMs: number): void;
  run(argv: string[], timeoutMs: number): CommandResult;
  /** LIVEUPDATE_SESSION_GET_NAME; throws when fd is not a session. */
  sessionName(fd: number): string;
  /** RETRIEVE_FD(token) + read + FINISH of an incoming session fd (the fd stays open). */
  readBlob(sessionFd: number, token: bigint, name: string): Uint8Array;
  close(fd: number): void;
  /** Ends the process (after a requested jump, once luod has stopped). */
  exit(code: number): void;
  env: Record<string, string | undefined>;
}

export const realOps: SystemdOps = {
  listenFds: () => sdListenFds(),
  notify(state, fds = []) {
    if (!(fds.length ? sdNotifyWithFds(state, fds) : sdNotify(state))) throw new Error("$NOTIFY_SOCKET is not set");
  },
  barrier(timeoutMs) {
    if (!sdNotifyBarrier(timeoutMs)) throw new Error("$NOTIFY_SOCKET is not set");
  },
  run(argv, timeoutMs) {
    try {
      const r = Bun.spawnSync(argv, { stdin: "ignore", stdout: "pipe", stderr: "pipe", timeout: timeoutMs });
      return { code: r.exitCode ?? 128 + 9, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
    } catch (e) {
      return { code: 127, stdout: "", stderr: (e as Error).message };
    }
  },
  sessionName: (fd) => getSessionName(fd),
  readBlob(sessionFd, token, name) {
    const fd = retrieveFd(sessionFd, token, name);
    try {
      return readWhole(fd);
    } finally {
      closeFd(fd);
      finishSession(sessionFd, name);
    }
  },
  close: (fd) => closeFd(fd),
  exit: (code) => process.exit(code),
  env: process.env,
};

/** A short reason when systemd is about to kexec (logind delaying it, or the job queued); null otherwise. */
export function kexecPending(ops: Pick<SystemdOps, "run">): string | null {
  const jobs = ops.run(["systemctl", "list-jobs", "--no-legend", "--plain"], 10_000);
  if (jobs.code === 0 && /\bkexec\.target\b/.test(jobs.stdout)) return "kexec.target job queued";
  const p = ops.run(
    ["busctl", "get-property", "org.freedesktop.login1", "/org/freedesktop/login1", "org.freedesktop.login1.Manager", "PreparingForShutdown"],
    10_000,
  );
  if (p.code === 0 && /^b true/.test(p.stdout.trim())) return "logind is preparing the shutdown";
  return null;
}

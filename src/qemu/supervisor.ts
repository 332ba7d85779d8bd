// luo-qemu's supervisor: one VM, its QEMU and its place among luod's clients (docs/vmm.md,
// "luo-qemu"). The guest's RAM is a memfd this process owns and preserves at start (PREPARE), so
// an update only pauses the guest and saves its device state:
//
//   start        SUBSCRIBE; restored? → resume() : probe QEMU, memfd + PREPARE + PRESERVE_FD(RAM) → QEMU
//   START_PRES.  QMP stop → device state (x-ignore-shared) into a memfd → PRESERVE_FD state and
//                start record → READY            (any failure: FAIL, then cont)
//   ABORTED      QMP cont: the guest runs on in the old kernel
//   after boot   CLAIM → RETRIEVE_FD record, RAM, state → (probe QEMU only if its binary changed
//                since the save) → QEMU -incoming defer → load → cont → FINISH → FINISHED → PREPARE again
//
// It never boots a guest fresh when luod holds a session for it: a resume that cannot be done
// leaves the session with luod (claimed, not finished) and exits EXIT.CANNOT_RESUME.
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  LuoClient, LuoConnectError, LuoConnectionClosed, LuoError, type Preservation,
  preserveMemfd, retrieveMemfd, finishSession, createMemfd, closeFd, fileSize, readFull, writeFull, addSeals,
  F_SEAL_SEAL, F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_WRITE, SysError,
} from "../client";
import { sdNotify } from "../kernel/sdnotify";
import { O_CLOEXEC, O_RDONLY, O_RDWR, openFile } from "../kernel/fd";
import { escapeControl } from "../wire/escape";
import { previousUpdateCreatedAt } from "../wire/replies";
import { Qmp } from "./qmp";
import { loadDeviceState, saveDeviceState } from "./migration";
import { binaryIdentity, probeQemu, recordableIdentity, runningExe, spawnQemu, whyProbeAgain, type QemuInfo, type QemuProbe, type RunningQemu } from "./qemu-process";
import { RAM_TOKEN, decodeRecord, encodeRecord, recordToken, stateToken, MAX_ATTEMPTS, RECORD_FORMAT, RECORD_VERSION, type StartRecord } from "./record";
import { qemuArgv, RAM_FD, resolveMachine } from "./vm-config";
import { findRunningQemu, prepareRunDir, processStartTime, writeQemuState, type QemuState } from "./run-dir";

export const EXIT = {
  /** The guest powered off, luo-qemu was stopped, or it left the guest paused for the kexec. */
  OK: 0,
  /** QEMU failed or exited with an error; luo-qemu could not do its job. */
  FAILED: 1,
  /** A usage error, a VM luo-qemu refuses to run (it could not carry it), or luod refusing this user. */
  USAGE: 2,
  /** luod could not be reached at start: luo-qemu will not guess whether a session waits. */
  NO_LUOD: 3,
  /** A preserved guest could not be resumed: its session stays with luod, the guest is kept. */
  CANNOT_RESUME: 4,
} as const;

/** The VM as the command line asks for it. */
export interface VmRequest {
  id: string;
  memoryBytes: number;
  /** --machine as given: an alias (pc) is resolved by the QEMU probed on a cold start. */
  machine: string;
  /** The QEMU binary, found (findQemu) but not run: a probe is two QEMU starts, done when needed. */
  qemuPath: string;
  args: string[];
  sandbox: boolean;
}

/** The VM as its QEMU runs it: the request's on a cold start, else the start record's or qemu.json's. */
export interface VmSpec {
  id: string;
  memoryBytes: number;
  machine: { type: string; props: string[] };
  qemu: QemuInfo;
  args: string[];
  sandbox: boolean;
}

export interface SupervisorOptions {
  socket: string;
  runDir: string;
  /** How long a guest has to power off after system_powerdown before QEMU is told to quit. */
  shutdownTimeoutMs: number;
  /** How long to wait for luod at start. */
  connectTimeoutMs: number;
  log: (line: string) => void;
}

/** How long a held id is waited for at start before luo-qemu says another one runs this VM. */
const HELD_ID_WAIT_MS = 10_000;
/**
 * Every aborted update (and dry run) leaves its device state in the prepared session, pinned, for
 * as long as the session lives (no ioctl takes a file back out, docs/kernel.md#ioctls). Past these,
 * luo-qemu releases the session (it reconnects: luod drops its copy of a disconnected client's
 * prepared session and keeps expecting the client) and prepares a new one.
 */
const ROTATE_AFTER_ATTEMPTS = 4;
const ROTATE_AFTER_STATE_BYTES = 64 * 1024 * 1024;

type Phase = "starting" | "running" | "saving" | "ready" | "resuming" | "stopping";

class CannotResume extends Error {}

const SEALS = F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE;

export class VmSupervisor {
  private phase: Phase = "starting";
  private client: LuoClient | null = null;
  private qemu: RunningQemu | null = null;
  private qmp: Qmp | null = null;
  private ramFd = -1;
  /** The prepared session's fd (PREPARE), the RAM preserved in it under RAM_TOKEN. */
  private sessionFd: number | null = null;
  /** The next token pair of the prepared session (docs/vmm.md, "What to preserve, and tokens"). */
  private attempt = 0;
  private stopRequested = false;
  /** How long the first connect + SUBSCRIBE took, ms: luod's part of the start (the blackout line). */
  private subscribeMs = 0;
  private finished!: (code: number) => void;
  private readonly done = new Promise<number>((r) => (this.finished = r));
  private exitCode: number | null = null;
  private qemuStartTime: string | null = null;
  /** QEMU was left running by a luo-qemu before this one (adopt()). */
  private adopted = false;
  /** Device state bytes preserved in the prepared session (see ROTATE_AFTER_STATE_BYTES). */
  private sessionStateBytes = 0;
  /** FINISHED could not be sent after a resume: send it once luod is reachable again. */
  private pendingFinished = false;
  /** Updates known to be over (their ABORTED was seen): a late START_PRESERVATION of one is skipped. */
  private readonly endedUpdates = new Set<number>();

  /** Set by startFresh(), resume() or adopt(): which of them runs decides where it comes from. */
  private current: VmSpec | null = null;

  constructor(private readonly request: VmRequest, private readonly o: SupervisorOptions) {}

  private get spec(): VmSpec {
    if (!this.current) throw new Error("the VM's configuration is not known before it starts");
    return this.current;
  }

  private say(line: string): void {
    this.o.log(`luo-qemu[${this.request.id}]: ${line}`);
  }

  private notify(state: string): void {
    try {
      sdNotify(state);
    } catch {
      /* systemd gone: nothing to tell */
    }
  }

  private finish(code: number): void {
    if (this.exitCode !== null) return;
    this.exitCode = code;
    this.finished(code);
  }

  /** Runs the VM until it stops; resolves with luo-qemu's exit code. */
  async run(): Promise<number> {
    const id = this.request.id;
    const runDirProblem = prepareRunDir(this.o.runDir);
    if (runDirProblem) {
      this.say(`${escapeControl(runDirProblem)}; not starting`);
      return EXIT.USAGE;
    }
    let restored: boolean;
    try {
      const subscribeAt = Date.now();
      ({ client: this.client, restored } = await this.subscribe(this.o.connectTimeoutMs));
      this.subscribeMs = Date.now() - subscribeAt;
    } catch (e) {
      const code = e instanceof LuoError && !(e instanceof LuoConnectError) && !(e instanceof LuoConnectionClosed) ? e.code : null;
      if (code === "EEXIST") {
        this.say(`luod says ${id} is subscribed by another connection: is another luo-qemu running this VM? ${errText(e)}`);
        return EXIT.FAILED;
      }
      if (code === "EPERM" || code === "EACCES" || code === "EINVAL") {
        this.say(`luod refuses ${id}: ${errText(e)} (luo-qemu must run as root or in luod's client group)`);
        return EXIT.USAGE;
      }
      const why = code === "EBUSY" ? `an update is still in progress after ${this.o.connectTimeoutMs / 1000} s (${errText(e)})` : `cannot reach luod at ${escapeControl(this.o.socket)}: ${errText(e)}`;
      this.say(`${why}; not starting the guest (after a live update its memory may be waiting there)`);
      return EXIT.NO_LUOD;
    }
    if (this.stopRequested) {
      // stopped while waiting for luod: nothing was started
      this.client.close();
      return EXIT.OK;
    }
    const running = findRunningQemu(this.o.runDir, id);
    if (running && "conflict" in running) {
      this.say(`${escapeControl(running.conflict)}; starting nothing rather than a second guest`);
      this.client.close();
      return EXIT.FAILED;
    }
    if (!running && !restored) {
      // A cold start: only now is QEMU probed, since only luod's answer says no resume is due. A
      // QEMU refused here leaves no subscription behind: luod would expect this VM back.
      const refused = await this.checkColdStart();
      // stopped during the probe: nothing was started, and luod need not expect the VM either
      if (refused !== null || this.stopRequested) {
        await this.client.unsubscribe().catch((e) => this.say(`UNSUBSCRIBE: ${errText(e)} (luoctl evict ${id} makes luod forget this VM)`));
        this.client.close();
        return refused ?? EXIT.OK;
      }
    }
    try {
      if (running && restored) await this.resumeOrTakeOver(running);
      else if (running) await this.adopt(running);
      else if (restored) await this.resume();
      else await this.startFresh();
    } catch (e) {
      if (this.adopted) {
        this.say(`cannot take over the running QEMU: ${errText(e)}; it is left running`);
        this.qmp?.close();
        this.client.close();
        return EXIT.FAILED;
      }
      this.killQemu();
      if (e instanceof CannotResume) {
        this.say(`cannot resume the guest: ${e.message}; its session stays with luod (claimed, not finished): fix the cause and start luo-qemu again, or give the guest up with luoctl discard ${id}`);
        this.client.close();
        return EXIT.CANNOT_RESUME;
      }
      this.say(`cannot start the guest: ${errText(e)}`);
      this.client.close();
      return EXIT.FAILED;
    }
    void this.qemu!.exited.then((code) => this.onQemuExit(code));
    void this.updateLoop();
    if (this.stopRequested) void this.stop();
    return this.done;
  }

  /** SIGTERM/SIGINT: stop the guest, unless it is paused for a kexec (then leave it as it is). */
  async stop(): Promise<void> {
    this.stopRequested = true;
    if (this.phase === "starting" || this.phase === "resuming" || this.phase === "saving") return; // acted on when that ends
    if (this.phase === "ready") {
      this.say("stopping after READY: the guest stays paused and preserved for the kexec");
      return this.finish(EXIT.OK);
    }
    if (this.phase === "stopping") return;
    this.phase = "stopping";
    this.notify("STOPPING=1");
    this.say(`stopping: system_powerdown, then quit after ${this.o.shutdownTimeoutMs / 1000} s`);
    const qemu = this.qemu!;
    await this.qmp?.execute("system_powerdown").catch(() => {});
    if (!(await exitsWithin(qemu, this.o.shutdownTimeoutMs))) {
      this.say("the guest did not power off in time: quit");
      await this.qmp?.execute("quit").catch(() => {});
      if (!(await exitsWithin(qemu, 5000))) qemu.kill("SIGKILL");
    }
    await qemu.exited;
    await this.leaveLuod();
    this.say("stopped");
    this.finish(EXIT.OK);
  }

  // ---- start ----------------------------------------------------------------------------------

  /**
   * The cold start's checks, with the lines and exit codes luo-qemu has always refused them with:
   * the probe (a usable QEMU, MIN_QEMU or newer) and --machine resolved against it. Sets the spec;
   * returns the exit code of a refusal (its line said), or null.
   */
  private async checkColdStart(): Promise<number | null> {
    const r = this.request;
    let qemu: QemuProbe;
    try {
      qemu = await probeQemu(r.qemuPath);
    } catch (e) {
      this.o.log(`luo-qemu: ${escapeControl((e as Error).message)}`);
      return EXIT.FAILED;
    }
    const machine = resolveMachine(r.machine, qemu.machines);
    if ("error" in machine) {
      this.o.log(`luo-qemu: refusing this VM: ${escapeControl(machine.error)}`);
      return EXIT.USAGE;
    }
    this.current = { id: r.id, memoryBytes: r.memoryBytes, machine, qemu, args: r.args, sandbox: r.sandbox };
    return null;
  }

  private async startFresh(): Promise<void> {
    this.ramFd = createMemfd(`luo-qemu:${this.request.id}:ram`, this.spec.memoryBytes);
    await this.prepare();
    await this.startQemu(false);
    this.phase = "running";
    const mib = Math.floor(this.spec.memoryBytes / 2 ** 20);
    this.say(`running (QEMU ${this.spec.qemu.version}, machine ${this.spec.machine.type}, ${mib} MiB preserved ahead)`);
    this.notify(`READY=1\nSTATUS=running, ${mib} MiB of RAM preserved ahead`);
  }

  /** PREPARE a session and preserve the RAM in it (the pinning happens here, not in the barrier). */
  private async prepare(): Promise<void> {
    if (this.sessionFd !== null) closeFd(this.sessionFd); // a memfd is in one session at a time
    this.sessionFd = null;
    const p = await this.client!.prepare();
    this.sessionFd = p.sessionFd;
    this.attempt = 0;
    this.sessionStateBytes = 0;
    const t0 = performance.now();
    preserveMemfd(p.sessionFd, this.ramFd, RAM_TOKEN);
    this.say(`RAM preserved in ${escapeControl(p.session)} (${Math.round(performance.now() - t0)} ms)`);
  }

  private async startQemu(incoming: boolean, stateFd?: number): Promise<void> {
    const qmpSocket = join(this.o.runDir, "qmp.sock");
    rmSync(qmpSocket, { force: true });
    const argv = qemuArgv({
      qemu: this.spec.qemu.path, id: this.request.id, memoryBytes: this.spec.memoryBytes,
      machine: this.spec.machine.type, machineProps: this.spec.machine.props,
      qmpSocket, sandbox: this.spec.sandbox, incoming, userArgs: this.spec.args,
    });
    const qemu = spawnQemu(argv, this.ramFd, stateFd);
    this.qemu = qemu;
    writeFileSync(join(this.o.runDir, "qemu.pid"), `${qemu.pid}\n`); // for operators (and the VM tests)
    this.qemuStartTime = processStartTime(qemu.pid);
    this.saveState(false);
    this.qmp = await Qmp.connect(qmpSocket, 30_000, () => !qemu.hasExited());
  }

  /** qemu.json: what a luo-qemu started again needs to take this QEMU over (run-dir.ts). */
  private saveState(pausedForUpdate: boolean): void {
    if (!this.qemu || this.qemuStartTime === null) return;
    const s = this.spec;
    try {
      writeQemuState(this.o.runDir, {
        format: "luo-qemu-state", version: 1, id: s.id, pid: this.qemu.pid, start_time: this.qemuStartTime,
        qemu: { path: s.qemu.path, version: s.qemu.version, ...(s.qemu.binary ? { binary: s.qemu.binary } : {}) }, machine: s.machine, memory_bytes: s.memoryBytes,
        args: s.args, sandbox: s.sandbox, paused_for_update: pausedForUpdate,
      });
    } catch (e) {
      this.say(`cannot write ${this.o.runDir}/qemu.json: ${errText(e)} (a restarted luo-qemu could not take this QEMU over)`);
    }
  }

  /**
   * A luo-qemu before this one died and left its QEMU running: take it over (its QMP socket, its
   * RAM memfd through /proc/PID/fd/3), prepare the RAM again, and continue a guest it had paused
   * for an update (that update is over: SUBSCRIBE is refused while one runs).
   */
  private async adopt(state: QemuState): Promise<void> {
    const { pid, start_time } = state;
    this.adopted = true;
    // QEMU runs already: not probed. What qemu.json says of its binary goes into the next start record.
    this.current = {
      id: this.request.id, memoryBytes: state.memory_bytes, machine: state.machine, args: state.args, sandbox: state.sandbox,
      qemu: { path: state.qemu.path, version: state.qemu.version, ...(state.qemu.binary ? { binary: state.qemu.binary } : {}) },
    };
    const alive = () => processStartTime(pid) === start_time;
    this.qmp = await Qmp.connect(join(this.o.runDir, "qmp.sock"), 10_000, alive);
    this.qemu = adoptedQemu(pid, this.qmp, alive);
    this.qemuStartTime = start_time;
    // a reopen of QEMU's memfd: the same inode, which LUO preserves as that memfd (docs/kernel.md#what-can-be-preserved)
    this.ramFd = openFile(`/proc/${pid}/fd/${RAM_FD}`, O_RDWR | O_CLOEXEC);
    if (fileSize(this.ramFd) !== state.memory_bytes)
      throw new Error(`QEMU ${pid}'s fd ${RAM_FD} is ${fileSize(this.ramFd)} bytes, not the guest's ${state.memory_bytes}`);
    await this.prepare();
    const { status } = await this.qmp.execute<{ status: string }>("query-status");
    this.say(`took over QEMU ${pid} (left running by a luo-qemu before this one; the guest is ${escapeControl(status)})`);
    this.phase = "running";
    if (state.paused_for_update && (status === "paused" || status === "postmigrate"))
      await this.continueGuest("the update it was paused for is over");
    else this.saveState(false);
    this.notify(`READY=1\nSTATUS=running (took over QEMU ${pid})`);
  }

  private killQemu(): void {
    this.qmp?.close();
    this.qemu?.kill("SIGKILL");
  }

  // ---- after a live update ----------------------------------------------------------------------

  /**
   * A session came back and a QEMU of this VM runs: a luo-qemu before this one died while it
   * resumed the guest. A guest that runs (it got `cont`) is taken over and its session finished;
   * one that never ran is stopped and resumed again. Never two QEMUs on the same RAM.
   */
  private async resumeOrTakeOver(state: QemuState): Promise<void> {
    const alive = () => processStartTime(state.pid) === state.start_time;
    let status = "unknown";
    try {
      const qmp = await Qmp.connect(join(this.o.runDir, "qmp.sock"), 10_000, alive);
      status = (await qmp.execute<{ status: string }>("query-status")).status;
      qmp.close();
    } catch (e) {
      this.say(`QEMU ${state.pid} does not answer on its monitor: ${errText(e)}`);
    }
    if (status === "running") {
      this.say(`QEMU ${state.pid} had resumed the guest already: finishing its session, taking QEMU over`);
      // FINISH first: the RAM in QEMU is the restored memfd, preserved again only after it
      const { sessionFd } = await this.client!.claim(this.request.id);
      try {
        finishSession(sessionFd);
      } finally {
        closeFd(sessionFd);
      }
      await this.client!.finished(this.request.id);
      await this.adopt(state);
      return;
    }
    this.say(`QEMU ${state.pid} never resumed the guest (it is ${escapeControl(status)}): stopping it and resuming again`);
    process.kill(state.pid, "SIGKILL");
    for (let i = 0; i < 200 && alive(); i++) await Bun.sleep(50);
    if (alive()) throw new Error(`QEMU ${state.pid} did not exit after SIGKILL`);
    await this.resume();
  }

  private async resume(): Promise<void> {
    this.phase = "resuming";
    const id = this.request.id;
    const startedAt = Math.round(performance.timeOrigin); // this process's start: luod joined since (QEMU is probed, if at all, after CLAIM)
    const bootAt = Date.now() - uptimeMs();
    let claimed: { session: string; sessionFd: number };
    const claimAt = Date.now();
    try {
      claimed = await this.client!.claim(id);
    } catch (e) {
      throw new CannotResume(`CLAIM failed: ${errText(e)}`);
    }
    const claimedAt = Date.now();
    const committedAt = await this.commitTime();
    const session = escapeControl(claimed.session);
    let sessionOpen = true;
    const closeSession = () => {
      if (sessionOpen) closeFd(claimed.sessionFd);
      sessionOpen = false;
    };
    const fds: number[] = []; // the state's fds: closed whatever happens
    let record: StartRecord;
    let times: { qemuAt: number; loadedAt: number; contAt: number };
    try {
      const found = newestRecord(claimed.sessionFd);
      if (!found) throw new CannotResume(`${session} holds no start record`);
      let read: StartRecord | { error: string };
      try {
        read = readRecord(found.fd);
      } finally {
        closeFd(found.fd);
      }
      if ("error" in read) throw new CannotResume(read.error);
      record = read;
      if (record.id !== id) throw new CannotResume(`the start record is for ${escapeControl(record.id)}, not ${id}`);
      const ram = retrieve(claimed.sessionFd, RAM_TOKEN, "the RAM");
      this.ramFd = ram;
      const state = retrieve(claimed.sessionFd, stateToken(found.attempt), "the device state");
      fds.push(state);
      // QEMU reads the state from the file offset, which a second RETRIEVE_FD (a resume tried
      // before) shares (docs/kernel.md#retrieve-once): QEMU gets its own open of it, at offset 0
      const stateForQemu = openFile(`/proc/self/fd/${state}`, O_RDONLY | O_CLOEXEC);
      fds.push(stateForQemu);
      if (fileSize(ram) !== record.memory_bytes)
        throw new CannotResume(`the preserved RAM is ${fileSize(ram)} bytes, the start record says ${record.memory_bytes}`);
      this.say(
        `${session} brought the RAM (${fileSize(ram)} bytes, token ${RAM_TOKEN}), the device state (${fileSize(state)} bytes, ` +
          `token ${stateToken(found.attempt)}) and the start record (token ${recordToken(found.attempt)}) of attempt ${found.attempt}`,
      );
      const qemu = await this.qemuForResume(record);
      if (JSON.stringify(record.args) !== JSON.stringify(this.request.args) || record.memory_bytes !== this.request.memoryBytes)
        this.say("the command line differs from the one the guest was saved with: resuming with the saved one (the new one applies at the next cold start)");
      // the device state only loads into the configuration it was saved from
      this.current = { id, memoryBytes: record.memory_bytes, machine: record.machine, qemu, args: record.args, sandbox: record.sandbox };
      const qemuAt = Date.now();
      try {
        await this.startQemu(true, stateForQemu);
        await loadDeviceState(this.qmp!, this.spec.qemu.version);
      } catch (e) {
        // QEMU exits when it cannot load a state ("load of migration failed"): say that, not the broken socket
        const code = this.qemu ? await Promise.race([this.qemu.exited, Bun.sleep(2000).then(() => null)]) : null;
        const why = code === null ? errText(e) : `QEMU exited with ${code} while loading it (QEMU's own message is in its output)`;
        throw new CannotResume(`QEMU could not load the saved device state: ${why}`);
      }
      const loadedAt = Date.now();
      await this.qmp!.execute("cont");
      const { status } = await this.qmp!.execute<{ status: string }>("query-status");
      if (status !== "running") throw new CannotResume(`after cont the guest is ${escapeControl(status)}, not running`);
      times = { qemuAt, loadedAt, contAt: Date.now() };
    } catch (e) {
      closeSession();
      if (this.ramFd >= 0) closeFd(this.ramFd);
      this.ramFd = -1;
      throw e;
    } finally {
      for (const fd of fds) closeFd(fd);
    }
    // The guest runs: from here nothing stops it. A failure below is said, and retried when luod
    // is reachable again (FINISHED, PREPARE); the session stays with luod until FINISHED.
    this.phase = "running";
    this.notify(`READY=1\nSTATUS=running, resumed after a live update`);
    {
      const { qemuAt, loadedAt, contAt } = times;
      const s = (a: number, b: number) => `${((b - a) / 1000).toFixed(2)} s`;
      const jump = committedAt === null
        ? `barrier + kernel jump ${s(record.saved_at, bootAt)}`
        : `barrier (READY → luod's commit) ${s(record.saved_at, committedAt)}, kernel jump (commit → new kernel) ${s(committedAt, bootAt)}`;
      this.say(
        `resumed: blackout ${s(record.paused_at, contAt)} = pause + state save ${s(record.paused_at, record.saved_at)}, ` +
          `${jump}, kernel start → luo-qemu start ${s(bootAt, startedAt)}, ` +
          `luo-qemu start → CLAIMED ${s(startedAt, claimedAt)} (of it connect + SUBSCRIBE ${s(0, this.subscribeMs)}, CLAIM ${s(claimAt, claimedAt)}), → QEMU start ${s(claimedAt, qemuAt)}, QEMU start → incoming done ${s(qemuAt, loadedAt)}, → cont ${s(loadedAt, contAt)} ` +
          `(device state ${record.state_bytes} bytes; RAM moved by the migration ${record.ram_transferred_bytes} of ${record.memory_bytes} bytes)`,
      );
    }
    try {
      finishSession(claimed.sessionFd);
    } catch (e) {
      this.say(`FINISH of ${session}: ${errText(e)} (closing it finishes it too)`);
    }
    closeSession();
    try {
      await this.client!.finished(id);
    } catch (e) {
      this.pendingFinished = true;
      this.say(`FINISHED: ${errText(e)}; sent again once luod is reachable`);
    }
    await this.prepare().catch((e) =>
      this.say(`cannot prepare the RAM for the next update yet: ${errText(e)}; luo-qemu prepares again when luod is reachable and no update runs`),
    );
  }

  /**
   * The QEMU to resume with: the one that saved the guest, when the binary at the path is still
   * that file (its version and the record's machine type, which it resolved, hold); otherwise the
   * one there now, probed, which must have the record's machine type.
   */
  private async qemuForResume(record: StartRecord): Promise<QemuInfo> {
    const path = this.request.qemuPath;
    const why = whyProbeAgain(record.qemu, path, binaryIdentity(path));
    if (why === null) {
      this.say(`QEMU binary unchanged since the save (${escapeControl(path)}, QEMU ${escapeControl(record.qemu.version)}): not probed again`);
      return record.qemu;
    }
    this.say(`probing QEMU: ${why}`);
    let qemu: QemuProbe;
    try {
      qemu = await probeQemu(path);
    } catch (e) {
      throw new CannotResume(errText(e));
    }
    if (qemu.machines.get(record.machine.type) !== record.machine.type)
      throw new CannotResume(`QEMU ${qemu.version} (${escapeControl(path)}) has no machine type ${escapeControl(record.machine.type)}, which the guest was saved with by QEMU ${escapeControl(record.qemu.version)}`);
    if (record.qemu.version !== qemu.version)
      this.say(`the guest was saved by QEMU ${escapeControl(record.qemu.version)}; resuming it with QEMU ${qemu.version}`);
    return qemu;
  }

  /** When the previous kernel's luod committed the update (its manifest's time), or null. */
  private async commitTime(): Promise<number | null> {
    try {
      // created_at, or createdAt from a luod before it (docs/protocol.md#compatibility)
      const at = previousUpdateCreatedAt((await this.client!.status()).previous_update);
      const t = at === null ? NaN : Date.parse(at);
      return Number.isFinite(t) ? t : null;
    } catch {
      return null; // only the blackout's wording depends on it
    }
  }

  // ---- updates --------------------------------------------------------------------------------

  private async updateLoop(): Promise<void> {
    for (;;) {
      try {
        for (;;) {
          let session: Preservation;
          try {
            session = await this.client!.waitForSession();
          } catch (e) {
            if (e instanceof LuoError && e.code === "ECANCELED") {
              this.updateEnded(e.reply?.update); // aborted before it reached us
              continue;
            }
            throw e;
          }
          if (this.exitCode !== null) return;
          const over = session.update !== null && this.endedUpdates.has(session.update);
          if (over || this.phase === "stopping") {
            // a START_PRESERVATION of an update already aborted, or one while the VM powers off
            if (!session.prepared) closeFd(session.sessionFd);
            if (!over) await this.client!.fail(`luo-qemu ${this.request.id}: the VM is stopping`).catch(() => {});
            continue;
          }
          await this.saveForUpdate(session);
          if (this.exitCode !== null || this.stopRequested) return;
        }
      } catch (e) {
        if (this.exitCode !== null || this.phase === "stopping") return;
        if (!(e instanceof LuoConnectionClosed)) this.say(`luod connection: ${errText(e)}`);
        await this.reconnect();
        if (this.exitCode !== null) return;
      }
    }
  }

  private updateEnded(update: unknown): void {
    if (typeof update === "number") this.endedUpdates.add(update);
  }

  private async saveForUpdate(session: Preservation): Promise<void> {
    const client = this.client!;
    this.phase = "saving";
    const pausedAt = Date.now();
    // No prepared session (PREPARE failed, e.g. an update ran when luo-qemu resumed the guest):
    // this session is for this update only, and the RAM goes into it too.
    const oneOff = !session.prepared;
    const n = oneOff ? 0 : this.attempt;
    let saved: { bytes: number; ramTransferred: number };
    try {
      if (n >= MAX_ATTEMPTS) throw new Error(`the prepared session holds ${n} attempts already`);
      await this.qmp!.execute("stop");
      this.saveState(true);
      this.notify("STATUS=paused for a live update, saving the device state");
      if (oneOff) preserveMemfd(session.sessionFd, this.ramFd, RAM_TOKEN);
      const state = await saveDeviceState(this.qmp!, join(this.o.runDir, "migrate.sock"), `luo-qemu:${this.request.id}:state-${n}`);
      try {
        preserveMemfd(session.sessionFd, state.fd, stateToken(n));
      } finally {
        closeFd(state.fd);
      }
      saved = state;
      if (!oneOff) {
        this.attempt = n + 1; // something is preserved under n: never reuse it
        this.sessionStateBytes += state.bytes;
      }
      // binary: the file at `path` that said `version` (stat'ed before the probe); exe: the file
      // this QEMU runs, recorded only when it is `path` itself (recordableIdentity). Only if both
      // are the same files after the boot are version and machine types known without a probe.
      const { path, version, binary } = this.spec.qemu;
      const exe = binary ? runningExe(this.qemu!.pid) : null;
      const record: StartRecord = {
        format: RECORD_FORMAT, version: RECORD_VERSION, id: this.request.id, attempt: n,
        qemu: { path, version, ...recordableIdentity(path, binary, exe) },
        machine: this.spec.machine, memory_bytes: this.spec.memoryBytes, args: this.spec.args, sandbox: this.spec.sandbox,
        state_bytes: state.bytes, ram_transferred_bytes: state.ramTransferred, paused_at: pausedAt, saved_at: Date.now(),
      };
      const encoded = encodeRecord(record);
      const check = decodeRecord(encoded); // what the next boot reads must be readable: checked now, not then
      if ("error" in check) throw new Error(check.error);
      const recordFd = createMemfd(`luo-qemu:${this.request.id}:record-${n}`);
      try {
        writeFull(recordFd, encoded);
        addSeals(recordFd, SEALS);
        preserveMemfd(session.sessionFd, recordFd, recordToken(n));
      } finally {
        closeFd(recordFd);
      }
    } catch (e) {
      if (oneOff) closeFd(session.sessionFd);
      // before READY a lost luod ends the update: no jump can carry this guest now
      if (e instanceof LuoConnectionClosed) throw await this.continueGuest("luod went away during the save", e);
      this.say(`cannot save the guest for this update: ${errText(e)}`);
      await client.fail(`luo-qemu ${this.request.id}: ${errText(e)}`.slice(0, 256)).catch(() => {});
      await this.continueGuest("the save failed");
      return;
    }
    try {
      await client.ready();
    } catch (e) {
      if (oneOff) closeFd(session.sessionFd);
      if (e instanceof LuoConnectionClosed) {
        // luod may have counted the READY before it went: stay paused; reconnect() decides
        this.phase = "ready";
        throw e;
      }
      if (e instanceof LuoError && e.code === "EBUSY") {
        await this.continueGuest(`the update ended before READY (${errText(e)})`); // another client failed, the deadline
        return;
      }
      this.say(`READY: ${errText(e)}`);
      await client.fail(`luo-qemu ${this.request.id}: ${errText(e)}`.slice(0, 256)).catch(() => {});
      await this.continueGuest("READY failed");
      return;
    }
    this.phase = "ready";
    this.notify("STATUS=paused and preserved, waiting for the kexec");
    this.say(
      `READY: paused and saved in ${Date.now() - pausedAt} ms (device state ${saved.bytes} bytes; ` +
        `RAM moved by the migration ${saved.ramTransferred} of ${this.spec.memoryBytes} bytes)`,
    );
    if (this.stopRequested) return void this.stop();
    // Which update did luod count this READY for? Not necessarily session.update: that one may
    // have been aborted while the state was saved and another one started. The guest stays paused
    // until the ABORTED of the update that runs now (a lost connection rejects: reconnect() decides).
    const running = (await client.status()).update as { attempt?: unknown } | null | undefined;
    const current = typeof running?.attempt === "number" ? running.attempt : null;
    if (current === null) {
      if (oneOff) closeFd(session.sessionFd);
      await this.continueGuest("the update ended right after READY");
      return this.rotateIfFull();
    }
    for (;;) {
      const { msg, fds } = await client.waitFor("ABORTED");
      for (const fd of fds) closeFd(fd);
      this.updateEnded(msg.update);
      if (msg.update !== current) continue; // an earlier update's
      if (oneOff) closeFd(session.sessionFd);
      await this.continueGuest(`the update was aborted (${escapeControl(String(msg.reason ?? "no reason given"))})`);
      return this.rotateIfFull();
    }
  }

  /** After an abort: a prepared session that holds too many device states is replaced. */
  private rotateIfFull(): void {
    if (this.attempt < ROTATE_AFTER_ATTEMPTS && this.sessionStateBytes < ROTATE_AFTER_STATE_BYTES) return;
    this.say(
      `the prepared session holds ${this.attempt} device states of updates that did not jump (${this.sessionStateBytes} bytes): ` +
        "releasing it (reconnecting to luod, which keeps expecting this VM) and preparing a new one",
    );
    this.client?.close(); // the update loop sees the connection closed and reconnects
  }

  /** QMP cont after a pause that did not end in a jump. Returns `e` for the caller to rethrow. */
  private async continueGuest(why: string, e?: unknown): Promise<unknown> {
    try {
      await this.qmp!.execute("cont");
      this.saveState(false);
      this.say(`${why}: the guest continues`);
    } catch (err) {
      this.say(`${why}, and cont failed: ${errText(err)}`);
    }
    this.phase = "running";
    this.notify("STATUS=running");
    if (this.stopRequested) void this.stop();
    else if (this.sessionFd === null && e === undefined && this.client && !this.client.closed)
      // no prepared session (it failed after a resume): try again now that no update runs
      await this.prepare().catch((err) => this.say(`PREPARE: ${errText(err)}`));
    return e;
  }

  /** luod went away: connect again, SUBSCRIBE, PREPARE; a guest paused after READY continues. */
  private async reconnect(): Promise<void> {
    this.client?.close();
    this.client = null;
    const paused = this.phase === "ready";
    this.say(paused ? "lost luod after READY: the guest stays paused until luod is back or the host jumps" : "lost luod: reconnecting");
    let lastSaid = Date.now();
    for (let delay = 100; this.exitCode === null && this.phase !== "stopping"; delay = Math.min(delay * 2, 5000)) {
      try {
        this.client = (await this.subscribe(0)).client;
        try {
          if (this.pendingFinished) {
            await this.client.finished(this.request.id);
            this.pendingFinished = false;
          }
          await this.prepare();
          break;
        } catch (e) {
          this.client.close();
          this.client = null;
          throw e;
        }
      } catch (e) {
        if (Date.now() - lastSaid > 30_000) {
          this.say(`luod still unreachable: ${errText(e)}`);
          lastSaid = Date.now();
        }
        await Bun.sleep(delay);
      }
    }
    if (this.client === null) return;
    this.say("luod is back: subscribed and prepared again");
    if (paused) await this.continueGuest("the update ended without a jump (luod restarted)");
  }

  /**
   * Connects and SUBSCRIBEs, retrying for `timeoutMs` while luod is not there or is in an update
   * (EBUSY), and for up to HELD_ID_WAIT_MS while the id is held (EEXIST: a luo-qemu killed a
   * moment ago whose disconnect luod has not seen yet). Rejects with the last error.
   */
  private async subscribe(timeoutMs: number): Promise<{ client: LuoClient; restored: boolean }> {
    const until = Date.now() + timeoutMs;
    const heldUntil = Date.now() + HELD_ID_WAIT_MS;
    for (let delay = 100; ; delay = Math.min(delay * 2, 2000)) {
      const client = await this.connect(Math.max(0, until - Date.now()));
      try {
        return { client, restored: (await client.subscribe(this.request.id)).restored === true };
      } catch (e) {
        client.close();
        const code = e instanceof LuoError ? e.code : "";
        const retry = (code === "EBUSY" && Date.now() < until) || (code === "EEXIST" && Date.now() < heldUntil);
        if (!retry) throw e;
        await Bun.sleep(delay);
      }
    }
  }

  private async connect(timeoutMs: number): Promise<LuoClient> {
    const until = Date.now() + timeoutMs;
    for (let delay = 100; ; delay = Math.min(delay * 2, 2000)) {
      try {
        return await LuoClient.connect(this.o.socket);
      } catch (e) {
        if (Date.now() >= until) throw e;
        await Bun.sleep(delay);
      }
    }
  }

  /** Leaving for good: UNSUBSCRIBE (luod stops expecting this VM) and release the session. */
  private async leaveLuod(): Promise<void> {
    await this.client?.unsubscribe().catch(() => {});
    this.client?.close();
    if (this.sessionFd !== null) closeFd(this.sessionFd);
    this.sessionFd = null;
  }

  private async onQemuExit(code: number): Promise<void> {
    if (this.phase === "stopping" || this.exitCode !== null) return;
    this.qmp?.close();
    if (this.phase === "ready") {
      this.say(`QEMU exited (${code}) after READY: the guest's state is preserved for the kexec`);
      return this.finish(EXIT.OK);
    }
    this.say(code === 0 ? "the guest powered off" : `QEMU exited with ${code}`);
    this.phase = "stopping";
    await this.leaveLuod();
    this.finish(code === 0 ? EXIT.OK : EXIT.FAILED);
  }
}

/**
 * A QEMU that is not our child: no exit code to wait for. It is gone when its QMP connection
 * closed and its pid is no longer that process; a SHUTDOWN event before counts as exit 0.
 */
function adoptedQemu(pid: number, qmp: Qmp, alive: () => boolean): RunningQemu {
  let shutdown = false;
  let done = false;
  qmp.onEvent((e) => {
    if (e.event === "SHUTDOWN") shutdown = true;
  });
  const exited = qmp.closed.then(async () => {
    for (let i = 0; i < 100 && alive(); i++) await Bun.sleep(50);
    done = true;
    return shutdown ? 0 : 1;
  });
  return {
    pid,
    exited,
    hasExited: () => done,
    kill: (signal = "SIGTERM") => {
      if (alive()) process.kill(pid, signal);
    },
  };
}

/** The newest attempt whose start record the session holds (tokens: docs/vmm.md). */
function newestRecord(sessionFd: number): { attempt: number; fd: number } | null {
  let found: { attempt: number; fd: number } | null = null;
  for (let n = 0; n < MAX_ATTEMPTS; n++) {
    let record: number | null = null;
    let state: number | null;
    try {
      record = tryRetrieve(sessionFd, recordToken(n));
      state = tryRetrieve(sessionFd, stateToken(n));
    } catch (e) {
      if (record !== null) closeFd(record);
      if (found) closeFd(found.fd);
      throw e;
    }
    if (state !== null) closeFd(state);
    if (record === null && state === null) break; // attempts only leave gaps where nothing was preserved
    if (record !== null) {
      if (found) closeFd(found.fd);
      found = { attempt: n, fd: record };
    }
  }
  return found;
}

function tryRetrieve(sessionFd: number, token: bigint): number | null {
  try {
    return retrieveMemfd(sessionFd, token);
  } catch (e) {
    if (e instanceof SysError && e.code === "ENOENT") return null;
    throw new CannotResume(`RETRIEVE_FD of token ${token}: ${errText(e)}`);
  }
}

function retrieve(sessionFd: number, token: bigint, what: string): number {
  const fd = tryRetrieve(sessionFd, token);
  if (fd === null) throw new CannotResume(`the session holds no ${what} (token ${token})`);
  return fd;
}

function readRecord(fd: number): StartRecord | { error: string } {
  const size = fileSize(fd);
  if (size > 1024 * 1024) return { error: `the start record is ${size} bytes` };
  const buf = new Uint8Array(size);
  readFull(fd, buf, 0);
  return decodeRecord(buf);
}

function uptimeMs(): number {
  try {
    return Math.round(Number(readFileSync("/proc/uptime", "utf8").split(" ")[0]) * 1000);
  } catch {
    return 0;
  }
}

async function exitsWithin(qemu: RunningQemu, ms: number): Promise<boolean> {
  return Promise.race([qemu.exited.then(() => true), Bun.sleep(ms).then(() => false)]);
}

/** One line for an error: its message, and the errno name when the message does not say it. */
function errText(e: unknown): string {
  const message = e instanceof Error ? e.message : String(e);
  const code = e instanceof LuoError || e instanceof SysError ? e.code : null;
  return escapeControl(code && !message.includes(code) ? `${message} (${code})` : message);
}

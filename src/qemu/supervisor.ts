// luo-qemu's supervisor: one VM, its QEMU and its place among luod's clients (docs/vmm.md,
// "luo-qemu"). The guest's RAM is a memfd this process owns and preserves at start (PREPARE), so
// an update only pauses the guest and saves its device state:
//
//   start        SUBSCRIBE; restored? → resume() : memfd + PREPARE + PRESERVE_FD(RAM) → QEMU
//   START_PRES.  QMP stop → device state (x-ignore-shared) into a memfd → PRESERVE_FD state and
//                start record → READY            (any failure: FAIL, then cont)
//   ABORTED      QMP cont: the guest runs on in the old kernel
//   after boot   CLAIM → RETRIEVE_FD record, RAM, state → QEMU -incoming defer → load → cont →
//                FINISH → FINISHED → PREPARE again
//
// It never boots a guest fresh when luod holds a session for it: a resume that cannot be done
// leaves the session with luod (claimed, not finished) and exits EXIT.CANNOT_RESUME.
import { readFileSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  LuoClient, LuoConnectionClosed, LuoError, type Preservation,
  preserveMemfd, retrieveMemfd, finishSession, createMemfd, closeFd, fileSize, readFull, writeFull, addSeals,
  F_SEAL_SEAL, F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_WRITE, SysError,
} from "../client";
import { sdNotify } from "../kernel/sdnotify";
import { escapeControl } from "../wire/escape";
import { Qmp } from "./qmp";
import { loadDeviceState, saveDeviceState } from "./migration";
import { spawnQemu, type QemuProbe, type RunningQemu } from "./qemu-process";
import { RAM_TOKEN, decodeRecord, encodeRecord, recordToken, stateToken, MAX_ATTEMPTS, RECORD_FORMAT, RECORD_VERSION, type StartRecord } from "./record";
import { qemuArgv } from "./vm-config";

export const EXIT = {
  /** The guest powered off, luo-qemu was stopped, or it left the guest paused for the kexec. */
  OK: 0,
  /** QEMU failed or exited with an error; luo-qemu could not do its job. */
  FAILED: 1,
  /** A usage error, or a VM luo-qemu refuses to run (it could not carry it). */
  USAGE: 2,
  /** luod could not be reached at start: luo-qemu will not guess whether a session waits. */
  NO_LUOD: 3,
  /** A preserved guest could not be resumed: its session stays with luod, the guest is kept. */
  CANNOT_RESUME: 4,
} as const;

export interface VmSpec {
  id: string;
  memoryBytes: number;
  machine: { type: string; props: string[] };
  qemu: QemuProbe;
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
  private finished!: (code: number) => void;
  private readonly done = new Promise<number>((r) => (this.finished = r));
  private exitCode: number | null = null;

  constructor(private spec: VmSpec, private readonly o: SupervisorOptions) {}

  private say(line: string): void {
    this.o.log(`luo-qemu[${this.spec.id}]: ${line}`);
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
    const id = this.spec.id;
    mkdirSync(this.o.runDir, { recursive: true, mode: 0o700 });
    let restored: boolean;
    try {
      this.client = await this.connect(this.o.connectTimeoutMs);
      restored = (await this.client.subscribe(id)).restored === true;
    } catch (e) {
      this.say(`cannot reach luod at ${this.o.socket}: ${errText(e)}; not starting the guest (after a live update its memory may be waiting there)`);
      return EXIT.NO_LUOD;
    }
    this.client.on("close", () => {}); // reconnects are driven by the update loop
    try {
      if (restored) await this.resume();
      else await this.startFresh();
    } catch (e) {
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

  private async startFresh(): Promise<void> {
    this.ramFd = createMemfd(`luo-qemu:${this.spec.id}:ram`, this.spec.memoryBytes);
    await this.prepare();
    await this.startQemu(false);
    this.phase = "running";
    this.say(`running (QEMU ${this.spec.qemu.version}, machine ${this.spec.machine.type}, ${this.spec.memoryBytes >> 20} MiB preserved ahead)`);
    this.notify(`READY=1\nSTATUS=running, ${this.spec.memoryBytes >> 20} MiB of RAM preserved ahead`);
  }

  /** PREPARE a session and preserve the RAM in it (the pinning happens here, not in the barrier). */
  private async prepare(): Promise<void> {
    if (this.sessionFd !== null) closeFd(this.sessionFd); // a memfd is in one session at a time
    this.sessionFd = null;
    const p = await this.client!.prepare();
    this.sessionFd = p.sessionFd;
    this.attempt = 0;
    const t0 = performance.now();
    preserveMemfd(p.sessionFd, this.ramFd, RAM_TOKEN);
    this.say(`RAM preserved in ${p.session} (${Math.round(performance.now() - t0)} ms)`);
  }

  private async startQemu(incoming: boolean, stateFd?: number): Promise<void> {
    const qmpSocket = join(this.o.runDir, "qmp.sock");
    rmSync(qmpSocket, { force: true });
    const argv = qemuArgv({
      qemu: this.spec.qemu.path, id: this.spec.id, memoryBytes: this.spec.memoryBytes,
      machine: this.spec.machine.type, machineProps: this.spec.machine.props,
      qmpSocket, sandbox: this.spec.sandbox, incoming, userArgs: this.spec.args,
    });
    const qemu = spawnQemu(argv, this.ramFd, stateFd);
    this.qemu = qemu;
    writeFileSync(join(this.o.runDir, "qemu.pid"), `${qemu.pid}\n`); // for operators (and the VM tests)
    this.qmp = await Qmp.connect(qmpSocket, 30_000, () => !qemu.hasExited());
  }

  private killQemu(): void {
    this.qmp?.close();
    this.qemu?.kill("SIGKILL");
  }

  // ---- after a live update ----------------------------------------------------------------------

  private async resume(): Promise<void> {
    this.phase = "resuming";
    const id = this.spec.id;
    const startedAt = Date.now();
    const bootAt = startedAt - uptimeMs();
    let claimed: { session: string; sessionFd: number };
    try {
      claimed = await this.client!.claim(id);
    } catch (e) {
      throw new CannotResume(`CLAIM failed: ${errText(e)}`);
    }
    const claimedAt = Date.now();
    const fds: number[] = [];
    try {
      const found = newestRecord(claimed.sessionFd);
      if (!found) throw new CannotResume(`${claimed.session} holds no start record`);
      const record = readRecord(found.fd);
      closeFd(found.fd);
      if ("error" in record) throw new CannotResume(record.error);
      if (record.id !== id) throw new CannotResume(`the start record is for ${escapeControl(record.id)}, not ${id}`);
      const ram = retrieve(claimed.sessionFd, RAM_TOKEN, "the RAM");
      fds.push(ram);
      const state = retrieve(claimed.sessionFd, stateToken(found.attempt), "the device state");
      fds.push(state);
      if (fileSize(ram) !== record.memory_bytes)
        throw new CannotResume(`the preserved RAM is ${fileSize(ram)} bytes, the start record says ${record.memory_bytes}`);
      const machines = this.spec.qemu.machines;
      if (machines.get(record.machine.type) !== record.machine.type)
        throw new CannotResume(`QEMU ${this.spec.qemu.version} (${this.spec.qemu.path}) has no machine type ${escapeControl(record.machine.type)}, which the guest was saved with by QEMU ${escapeControl(record.qemu.version)}`);
      if (record.qemu.version !== this.spec.qemu.version)
        this.say(`the guest was saved by QEMU ${escapeControl(record.qemu.version)}; resuming it with QEMU ${this.spec.qemu.version}`);
      if (JSON.stringify(record.args) !== JSON.stringify(this.spec.args) || record.memory_bytes !== this.spec.memoryBytes)
        this.say("the command line differs from the one the guest was saved with: resuming with the saved one (the new one applies at the next cold start)");
      // the device state only loads into the configuration it was saved from
      this.spec = { ...this.spec, memoryBytes: record.memory_bytes, machine: record.machine, args: record.args, sandbox: record.sandbox };
      this.ramFd = ram;
      const qemuAt = Date.now();
      try {
        await this.startQemu(true, state);
        await loadDeviceState(this.qmp!, this.spec.qemu.version);
      } catch (e) {
        throw new CannotResume(`QEMU could not load the saved device state: ${errText(e)}`);
      }
      const loadedAt = Date.now();
      await this.qmp!.execute("cont");
      const { status } = await this.qmp!.execute<{ status: string }>("query-status");
      if (status !== "running") throw new CannotResume(`after cont the guest is ${escapeControl(status)}, not running`);
      const contAt = Date.now();
      closeFd(state);
      fds.length = 0;
      finishSession(claimed.sessionFd);
      closeFd(claimed.sessionFd);
      await this.client!.finished(id);
      const s = (a: number, b: number) => `${((b - a) / 1000).toFixed(2)} s`;
      this.say(
        `resumed: blackout ${s(record.paused_at, contAt)} = pause + state save ${s(record.paused_at, record.saved_at)}, ` +
          `barrier + kernel jump ${s(record.saved_at, bootAt)}, kernel start → luo-qemu start ${s(bootAt, startedAt)}, ` +
          `luo-qemu start → CLAIMED ${s(startedAt, claimedAt)}, → QEMU start ${s(claimedAt, qemuAt)}, QEMU start → incoming done ${s(qemuAt, loadedAt)}, → cont ${s(loadedAt, contAt)} ` +
          `(device state ${record.state_bytes} bytes; RAM moved by the migration ${record.ram_transferred_bytes} of ${record.memory_bytes} bytes)`,
      );
    } catch (e) {
      closeFd(claimed.sessionFd);
      for (const fd of fds) closeFd(fd);
      this.ramFd = -1;
      throw e;
    }
    await this.prepare();
    this.phase = "running";
    this.notify(`READY=1\nSTATUS=running, resumed after a live update`);
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
            if (e instanceof LuoError && e.code === "ECANCELED") continue; // aborted before it reached us
            throw e;
          }
          if (this.exitCode !== null) return;
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

  private async saveForUpdate(session: Preservation): Promise<void> {
    const client = this.client!;
    this.phase = "saving";
    const pausedAt = Date.now();
    const oneOff = !session.prepared; // PREPARE failed earlier: this session is for this update only
    const n = oneOff ? 0 : this.attempt;
    try {
      await this.qmp!.execute("stop");
      this.notify("STATUS=paused for a live update, saving the device state");
      if (oneOff) preserveMemfd(session.sessionFd, this.ramFd, RAM_TOKEN);
      const saved = await saveDeviceState(this.qmp!, join(this.o.runDir, "migrate.sock"), `luo-qemu:${this.spec.id}:state-${n}`);
      try {
        preserveMemfd(session.sessionFd, saved.fd, stateToken(n));
      } finally {
        closeFd(saved.fd);
      }
      if (!oneOff) this.attempt = n + 1; // something is preserved under n: never reuse it
      const record: StartRecord = {
        format: RECORD_FORMAT, version: RECORD_VERSION, id: this.spec.id, attempt: n,
        qemu: { path: this.spec.qemu.path, version: this.spec.qemu.version },
        machine: this.spec.machine, memory_bytes: this.spec.memoryBytes, args: this.spec.args, sandbox: this.spec.sandbox,
        state_bytes: saved.bytes, ram_transferred_bytes: saved.ramTransferred, paused_at: pausedAt, saved_at: Date.now(),
      };
      const recordFd = createMemfd(`luo-qemu:${this.spec.id}:record-${n}`);
      try {
        writeFull(recordFd, encodeRecord(record));
        addSeals(recordFd, SEALS);
        preserveMemfd(session.sessionFd, recordFd, recordToken(n));
      } finally {
        closeFd(recordFd);
      }
      await client.ready();
      this.phase = "ready";
      this.notify("STATUS=paused and preserved, waiting for the kexec");
      this.say(
        `READY: paused and saved in ${Date.now() - pausedAt} ms (device state ${saved.bytes} bytes; ` +
          `RAM moved by the migration ${saved.ramTransferred} of ${this.spec.memoryBytes} bytes)`,
      );
    } catch (e) {
      if (e instanceof LuoConnectionClosed) throw await this.continueGuest("luod went away during the save", e);
      if (e instanceof LuoError && e.code === "EBUSY") {
        // READY refused: the update ended (another client failed, the deadline) while we saved
        if (oneOff) closeFd(session.sessionFd);
        await this.continueGuest(`the update ended before READY (${errText(e)})`);
        return;
      }
      this.say(`cannot save the guest for this update: ${errText(e)}`);
      await client.fail(`luo-qemu ${this.spec.id}: ${errText(e)}`.slice(0, 256)).catch(() => {});
      if (oneOff) closeFd(session.sessionFd);
      await this.continueGuest("the save failed");
      return;
    }
    if (this.stopRequested) return void this.stop();
    // a lost connection rejects here: reconnect() continues the guest once luod is back
    const { msg, fds } = await client.waitFor("ABORTED");
    for (const fd of fds) closeFd(fd);
    if (oneOff) closeFd(session.sessionFd);
    await this.continueGuest(`the update was aborted (${escapeControl(String(msg.reason ?? "no reason given"))})`);
  }

  /** QMP cont after a pause that did not end in a jump. Returns `e` for the caller to rethrow. */
  private async continueGuest(why: string, e?: unknown): Promise<unknown> {
    try {
      await this.qmp!.execute("cont");
      this.say(`${why}: the guest continues`);
    } catch (err) {
      this.say(`${why}, and cont failed: ${errText(err)}`);
    }
    this.phase = "running";
    this.notify("STATUS=running");
    if (this.stopRequested) void this.stop();
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
        const client = await this.connect(0);
        try {
          await client.subscribe(this.spec.id);
          this.client = client;
          await this.prepare();
          break;
        } catch (e) {
          client.close();
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

/** The newest attempt whose start record the session holds (tokens: docs/vmm.md). */
function newestRecord(sessionFd: number): { attempt: number; fd: number } | null {
  let found: { attempt: number; fd: number } | null = null;
  for (let n = 0; n < MAX_ATTEMPTS; n++) {
    const record = tryRetrieve(sessionFd, recordToken(n));
    const state = tryRetrieve(sessionFd, stateToken(n));
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

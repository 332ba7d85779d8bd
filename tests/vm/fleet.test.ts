// Fleet rollout with Ansible (docs/fleet.md): two systemd VMs, each with luod from the package and
// a client service holding a memfd of known content, managed over ssh on ports forwarded to
// 127.0.0.1 (QEMU user networking, restrict=on: nothing leaves the machine) by ansible-playbook
// deploy/ansible/rollout.yml, run from Debian sid's Ansible (scripts/vm/ansible/controller.sh).
//   1. the rollout: both hosts, one per wave, come back on kernel B with their data verified
//   2. the same hosts again, towards kernel A, with host1's client refusing: host1's update aborts
//      with the client's reason, host1 keeps running its kernel and its data, and host2 is never
//      touched. Job: jobs/fleet-host.sh.
import { afterAll, describe, expect, test } from "bun:test";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { finishJob, kernelVariant, logLines, type RunningJob } from "./vm";
import { startSystemdJob, systemdVmAvailable } from "./systemd-vm";

const REPO = resolve(import.meta.dir, "../..");
const CONTROLLER = join(REPO, "scripts/vm/ansible/run.sh");
const ANSIBLE_DIR = join(REPO, "deploy/ansible");
const HOSTS = ["host1", "host2"] as const;
type Host = (typeof HOSTS)[number];
const tenant = (h: Host) => `${h}-tenant`;
const MIB = 8;
const REFUSAL = "fleet test: host1's tenant refuses this update";

interface FleetHost { name: Host; port: number; job: RunningJob; }
const fleet: FleetHost[] = [];
let work = "";

/** A free TCP port on 127.0.0.1 not given out before (bound and released: QEMU binds it a moment later). */
function freePort(): number {
  for (;;) {
    const s = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const port = s.port;
    s.stop(true);
    if (!fleet.some((h) => h.port === port)) return port;
  }
}

/** Runs CMD with the controller's tools, the work dir visible (killed after 2 min); stdout+stderr together. */
function controller(cmd: string[]): { rc: number; out: string } {
  const r = Bun.spawnSync([CONTROLLER, "--bind", work, ...cmd], { cwd: REPO, stdin: "ignore", stdout: "pipe", stderr: "pipe", timeout: 120_000 });
  const out = r.stdout.toString() + r.stderr.toString();
  return { rc: r.exitCode ?? -1, out };
}

function ssh(h: FleetHost, command: string): string {
  const r = controller(["ssh", "-i", join(work, "fleet_key"), "-p", String(h.port), "-o", "StrictHostKeyChecking=no", "-o", "ConnectTimeout=30",
    "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "root@127.0.0.1", command]);
  if (r.rc !== 0) throw new Error(`ssh ${h.name} ${command}: exit ${r.rc}: ${r.out}`);
  return r.out.trim();
}

/** Runs each named command on h in one ssh session (each ssh costs seconds under TCG); their outputs by name. */
function sshEach<K extends string>(h: FleetHost, commands: Record<K, string>): Record<K, string> {
  const names = Object.keys(commands) as K[];
  const out = ssh(h, names.map((n) => `echo '@@${n}'; ${commands[n]}`).join("; "));
  const found = {} as Record<K, string>;
  for (const part of out.split(/^@@/m).slice(1)) {
    const nl = part.indexOf("\n");
    const name = (nl < 0 ? part : part.slice(0, nl)) as K;
    found[name] = nl < 0 ? "" : part.slice(nl + 1).trim();
  }
  for (const n of names) if (!(n in found)) throw new Error(`ssh ${h.name}: no output for ${n}: ${out}`);
  return found;
}

const serial = (h: FleetHost) => (existsSync(join(h.job.workDir, "serial.log")) ? readFileSync(join(h.job.workDir, "serial.log"), "utf8") : "");
const readyLines = (h: FleetHost) => logLines(serial(h), `JOB: fleet host ${h.name} ready:`);

/** Waits until host h printed its `boot`-th ready line (or its VM ended). */
async function waitReady(h: FleetHost, boot: number, timeoutMs: number): Promise<string> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const line = readyLines(h).find((l) => l.includes(`ready: boot ${boot},`));
    if (line) return line;
    if (h.job.proc.exitCode !== null) throw new Error(`${h.name}'s VM ended (exit ${h.job.proc.exitCode}) before boot ${boot} was ready`);
    if (Date.now() > until) throw new Error(`${h.name}: not ready for boot ${boot} after ${timeoutMs / 1000}s`);
    await Bun.sleep(1000);
  }
}

/**
 * ansible-playbook rollout.yml over both hosts, towards `kernel` (as the controller sees it), with
 * the role's defaults but for the package and the kernel; `seconds`: how long the play took.
 * Killed after 30 min (asynchronous, so that bun's test timeout can fire too).
 */
async function rollout(kernel: string, release: string): Promise<{ rc: number; out: string; seconds: number }> {
  writeFileSync(join(work, "vars.yml"), [
    `luo_agent_package_deb: ${JSON.stringify(packagePath())}`,
    `luo_agent_kernel: ${JSON.stringify(kernel)}`,
    `luo_agent_kernel_release: ${JSON.stringify(release)}`,
    "",
  ].join("\n"));
  const t0 = Date.now();
  const proc = Bun.spawn([CONTROLLER, "--bind", work, "ansible-playbook", "-i", join(work, "inventory.yml"), "-e", `@${join(work, "vars.yml")}`, "rollout.yml"], {
    cwd: ANSIBLE_DIR, stdin: "ignore", stdout: "pipe", stderr: "pipe",
  });
  const killer = setTimeout(() => proc.kill(), 30 * 60_000);
  const [out, err, rc] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(killer);
  const seconds = (Date.now() - t0) / 1000;
  console.error(`---- ansible-playbook (exit ${rc}, ${seconds.toFixed(0)} s) ----\n${out}${err}`);
  return { rc, out: out + err, seconds };
}

function packagePath(): string {
  const version = JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")).version as string;
  const deb = [...new Bun.Glob(`luo-agent_${version}-*_*.deb`).scanSync(join(REPO, "dist"))][0];
  if (!deb) throw new Error("no dist/luo-agent_*.deb: npm run package");
  return join(REPO, "dist", deb);
}

/** The id of the boot a ready line names. */
const bootId = (line: string) => /boot_id (\S+)/.exec(line)![1]!;

/** Asks every host's job to end (the VM powers off), then kills what is still running. */
async function stopFleet(): Promise<void> {
  for (const h of fleet) {
    try {
      writeFileSync(join(h.job.workDir, "share/stop"), "");
    } catch {
      // no share yet (the VM never started): the kill below
    }
  }
  await Promise.race([Promise.all(fleet.map((h) => h.job.proc.exited)), Bun.sleep(60_000)]);
  for (const h of fleet) if (h.job.proc.exitCode === null) h.job.proc.kill();
}

afterAll(async () => {
  await stopFleet();
  // the hosts' key is of no use after the run
  if (work) for (const f of ["fleet_key", "fleet_key.pub", "payload/fleet_key.pub"]) rmSync(join(work, f), { force: true });
});

describe.skipIf(!systemdVmAvailable())("fleet rollout with Ansible (deploy/ansible/rollout.yml)", () => {
  const a = kernelVariantOrNull("a");
  const b = kernelVariantOrNull("b");

  test("two hosts live-updated one per wave both come back on the new kernel with their data", async () => {
    // the controller (first time: debootstrap) and a key for the hosts
    mkdirSync(join(REPO, ".vm"), { recursive: true });
    work = mkdtempSync(join(REPO, ".vm", "fleet-"));
    expect(controller(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "luo-agent fleet test", "-f", join(work, "fleet_key")]).rc).toBe(0);
    // the hosts' kernels where the controller reads them
    for (const k of [a!, b!]) copyFileSync(k.image, join(work, `vmlinuz-${k.abi.KERNEL_RELEASE}`));
    for (const name of HOSTS) {
      const port = freePort();
      const job = startSystemdJob(join(import.meta.dir, "jobs/fleet-host.sh"), {
        env: { FLEET_HOST: name, CLIENTS: tenant(name), MIB: String(MIB) },
        files: [keyPayload()],
        memory: "1G",
        timeoutSec: 2400,
        sshPort: port,
      });
      fleet.push({ name, port, job });
    }
    for (const h of fleet) await waitReady(h, 1, 900_000);
    writeFileSync(join(work, "inventory.yml"), inventory());

    const first = await rollout(join(work, `vmlinuz-${b!.abi.KERNEL_RELEASE}`), b!.abi.KERNEL_RELEASE!);
    expect(first.rc).toBe(0);
    // the role's own verdict: a live-update boot, and the one session luod carried finished
    for (const h of HOSTS) {
      expect(first.out).toContain(`${h} runs ${b!.abi.KERNEL_RELEASE} (live-updated from ${a!.abi.KERNEL_RELEASE}, `);
      expect(first.out).toMatch(new RegExp(String.raw`${h} runs \S+ \(live-updated from [^)]*, live-update boot\): 1 restored session\(s\) finished`));
    }
    // one host per wave: host1's wave ended before host2's began
    expect(first.out.lastIndexOf("[host1]")).toBeLessThan(first.out.indexOf("[host2]"));
    expect(first.out).toMatch(/host1\s*:.*failed=0/);
    expect(first.out).toMatch(/host2\s*:.*failed=0/);
    for (const h of fleet) {
      const back = await waitReady(h, 2, 300_000);
      expect(back).toContain(`kernel ${b!.abi.KERNEL_RELEASE},`);
      // the client claimed its session and compared every byte (jobs/fleet-host.sh)
      expect(logLines(serial(h), `JOB: fleet host ${h.name}: client ${tenant(h.name)}: VERIFIED ${tenant(h.name)} ${MIB << 20} bytes`)).toHaveLength(1);
      expect(logLines(serial(h), "kexec_core: Starting new kernel")).toHaveLength(1);
      expect(ssh(h, "uname -r")).toBe(b!.abi.KERNEL_RELEASE!);
    }
  }, 45 * 60_000);

  test("a client that refuses aborts its host's update at once; the host keeps its kernel and data, the next host is never touched", async () => {
    expect(fleet).toHaveLength(2);
    const [h1, h2] = fleet as [FleetHost, FleetHost];
    const before = { h1: bootId(await waitReady(h1, 2, 1000)), h2: bootId(await waitReady(h2, 2, 1000)) };
    const clientUnit = `luo-test-client@${tenant("host1")}.service`;
    // the same process before and after: the client neither crashed nor was restarted
    const clientProcess = `systemctl show -p MainPID -p InvocationID --value ${clientUnit}`;
    const clientBefore = sshEach(h1, {
      process: clientProcess,
      refuse: `mkdir -p /var/lib/luo-test && echo ${JSON.stringify(REFUSAL)} > /var/lib/luo-test/refuse-${tenant("host1")}`,
    }).process;

    const second = await rollout(join(work, `vmlinuz-${a!.abi.KERNEL_RELEASE}`), a!.abi.KERNEL_RELEASE!);
    expect(second.rc).not.toBe(0);
    // at once: well before the role's boot timeout (600 s) could have run out
    expect(second.seconds).toBeLessThan(400);
    // host1 failed with the client's own reason, and the play stopped before host2
    expect(second.out).toContain(REFUSAL);
    expect(second.out).toContain(`luoctl kexec failed on host1, which keeps running ${b!.abi.KERNEL_RELEASE}`);
    expect(second.out).toContain(`luoctl said: luoctl: update aborted: client ${tenant("host1")} sent FAIL: ${REFUSAL} (ECANCELED)"`);
    expect(second.out).toMatch(/host1\s*:.*failed=1/);
    expect(second.out).not.toContain("host2");
    // host1: the same boot, the old kernel, the client still running with its memfd intact
    const after1 = sshEach(h1, {
      bootId: "cat /proc/sys/kernel/random/boot_id",
      release: "uname -r",
      client: `journalctl -b -o cat -u ${clientUnit}`,
      active: `systemctl is-active ${clientUnit}`,
      process: clientProcess,
      loaded: "cat /sys/kernel/kexec_loaded",
    });
    expect(after1.bootId).toBe(before.h1);
    expect(after1.release).toBe(b!.abi.KERNEL_RELEASE!);
    // the client preserved its memfd, refused, and read the memfd back after the abort
    expect(after1.client).toContain(`REFUSED ${tenant("host1")}: ${REFUSAL}`);
    expect(after1.client).toContain(`INTACT ${tenant("host1")} ${MIB << 20} bytes after the aborted update`);
    expect(after1.active).toBe("active");
    expect(after1.process).toBe(clientBefore);
    expect(after1.loaded).toBe("0");
    // host2: the same boot, and luod saw no update in it
    const after2 = sshEach(h2, {
      bootId: "cat /proc/sys/kernel/random/boot_id",
      updates: "journalctl -b -o cat MESSAGE_ID=3001fb2e8c534e3dab9b621f4968c96f",
      loaded: "cat /sys/kernel/kexec_loaded",
    });
    expect(after2.bootId).toBe(before.h2);
    expect(after2.updates).toBe("");
    expect(after2.loaded).toBe("0");

    await stopFleet();
    for (const h of fleet) expect((await finishJob(h.job)).rc).toBe(0);
  }, 20 * 60_000);
});

function kernelVariantOrNull(v: "a" | "b") {
  return systemdVmAvailable() ? kernelVariant(v) : null;
}

/** The public key as payload file fleet_key.pub (the job installs it as authorized_keys). */
function keyPayload(): string {
  const dir = join(work, "payload");
  mkdirSync(dir, { recursive: true });
  copyFileSync(join(work, "fleet_key.pub"), join(dir, "fleet_key.pub"));
  return join(dir, "fleet_key.pub");
}

function inventory(): string {
  const hosts = fleet.map((h) => `    ${h.name}:\n      ansible_host: 127.0.0.1\n      ansible_port: ${h.port}\n`).join("");
  return [
    "luo_hosts:",
    "  hosts:",
    hosts.trimEnd(),
    "  vars:",
    "    ansible_user: root",
    `    ansible_ssh_private_key_file: ${JSON.stringify(join(work, "fleet_key"))}`,
    '    ansible_ssh_common_args: "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"',
    "    ansible_python_interpreter: /usr/bin/python3",
    "",
  ].join("\n");
}

// What luo-qemu accepts of a VM and how it builds QEMU's command line (docs/vmm.md, "luo-qemu").
// Pure: no process is started here, so every rule is unit-tested (tests/unit/qemu-vm-config.test.ts).
//
// luo-qemu owns three things of the command line and refuses a VM that sets them itself: the
// guest's RAM (one memfd, inherited as fd 3, mapped share=on), the machine type (a versioned one:
// the device state must load into the QEMU found after the boot), and the QMP monitor it drives.
// Everything it cannot carry across a kexec is refused at start, never found out at the update.

/** The fd QEMU inherits the guest's RAM memfd on, and the one a saved device state comes in on. */
export const RAM_FD = 3;
export const STATE_FD = 4;
/** QEMU object id of ours (a user's -object with the same id would clash: QEMU says so). */
export const RAM_BACKEND_ID = "luo-ram";
/** Oldest QEMU with -machine memory-backend= (5.0); x-ignore-shared exists since 4.0. */
export const MIN_QEMU: readonly [number, number] = [5, 0];

const MIB = 1024 * 1024;

/** "512M", "2G", "16MiB", "1024" (MiB) → bytes; null unless a whole, positive number of MiB. */
export function parseMemorySize(text: string): number | null {
  const m = /^\s*(\d+)\s*(m|mi?b?|g|gi?b?|t|ti?b?)?\s*$/i.exec(text);
  if (!m) return null;
  const unit = (m[2] ?? "m")[0]!.toLowerCase();
  const bytes = Number(m[1]) * MIB * (unit === "g" ? 1024 : unit === "t" ? 1024 * 1024 : 1);
  return Number.isSafeInteger(bytes) && bytes > 0 ? bytes : null;
}

/** QEMU spells options with one dash or two. */
function optionName(arg: string): string | null {
  if (!arg.startsWith("-") || arg === "-" || arg === "--") return null;
  return arg.replace(/^--?/, "");
}

/** Options whose value luo-qemu sets itself, and what to use instead. */
const OWNED: Record<string, string> = {
  m: "give the guest's memory with --memory",
  machine: "give the machine type with --machine",
  M: "give the machine type with --machine",
  "mem-path": "guest RAM is luo-qemu's memfd",
  "mem-prealloc": "guest RAM is luo-qemu's memfd (preserving it pins every page anyway)",
  numa: "NUMA memory backends are not carried (one RAM memfd only)",
  incoming: "luo-qemu starts the incoming migration itself after a live update",
  loadvm: "the guest resumes from its preserved state, not a snapshot",
  daemonize: "luo-qemu supervises QEMU in the foreground",
  snapshot: "-snapshot throws away disk writes when QEMU restarts after the update",
  readconfig: "a configuration file luo-qemu cannot check (put the options on the command line)",
};

/** Device drivers whose state lives outside QEMU and cannot be carried across a kexec. */
const DEVICE_REFUSALS: readonly [RegExp, string][] = [
  [/^vfio/, "VFIO devices and their DMA mappings are not carried"],
  [/^vhost-/, "vhost devices keep state in the host kernel or another process"],
  [/^virtio-balloon/, "a balloon cannot shrink preserved (pinned) guest memory"],
  [/^virtio-mem/, "memory hot-plug devices are not carried (one RAM memfd only)"],
  [/^(pc-dimm|nvdimm|virtio-pmem)/, "extra memory devices are not carried (one RAM memfd only)"],
  [/^ivshmem/, "shared memory with another process is not carried"],
];

/** Network backends that are host-kernel devices or other processes. */
const NETDEV_REFUSALS = /^(tap|bridge|vhost-user|vhost-vdpa|vde|l2tpv3|af-xdp|vmnet-\w+)$/;

/** QEMU's spellings of a true boolean property. */
const TRUE = new Set(["on", "yes", "true", "y"]);

/** The implicit key of an option's first value (`-device virtio-net,…` is `driver=virtio-net`). */
const IMPLICIT_KEY: Record<string, string> = { device: "driver", netdev: "type", nic: "type", net: "type", object: "qom-type" };

/**
 * An option's value as QEMU reads it: `a,b=c,d=e` (",," is a literal comma; the first field may
 * be the implicit key's value) or a JSON object (`-device {"driver":…}`, `-object {…}`).
 */
export function optionProperties(option: string, value: string): Map<string, string> {
  const props = new Map<string, string>();
  if (value.trimStart().startsWith("{")) {
    try {
      const o: unknown = JSON.parse(value);
      if (typeof o === "object" && o !== null)
        for (const [k, v] of Object.entries(o)) props.set(k, typeof v === "string" ? v : JSON.stringify(v));
    } catch {
      /* QEMU refuses it too */
    }
    return props;
  }
  const fields = value.replace(/,,/g, "\u0000").split(",").map((f) => f.replace(/\u0000/g, ","));
  fields.forEach((f, i) => {
    const eq = f.indexOf("=");
    if (eq >= 0) props.set(f.slice(0, eq), f.slice(eq + 1));
    else if (i === 0 && IMPLICIT_KEY[option]) props.set(IMPLICIT_KEY[option]!, f);
    else props.set(f, "on"); // a bare flag
  });
  return props;
}

/**
 * Why luo-qemu refuses these QEMU arguments (the user's, after `--`), or [] when it can carry
 * the VM. Each problem is one line naming the argument.
 */
export function refusals(args: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const name = optionName(args[i]!);
    if (name === null) continue;
    const value = args[i + 1] ?? "";
    const props = optionProperties(name, value);
    const on = (key: string) => TRUE.has((props.get(key) ?? "").toLowerCase());
    if (name in OWNED) {
      out.push(`-${name}: ${OWNED[name]}`);
    } else if (name === "set") {
      out.push("-set: it can change any property, past the checks above (put the property on its own option)");
    } else if (name === "object" && /^memory-backend-/.test(props.get("qom-type") ?? "")) {
      out.push(`-object ${props.get("qom-type")}: guest RAM is luo-qemu's memfd (one RAM memfd only)`);
    } else if (name === "device") {
      const driver = props.get("driver") ?? "";
      for (const [re, why] of DEVICE_REFUSALS) if (re.test(driver)) out.push(`-device ${driver}: ${why}`);
    } else if (name === "netdev" || name === "nic" || name === "net") {
      const type = props.get("type") ?? "";
      if (NETDEV_REFUSALS.test(type) || on("vhost") || on("vhostforce"))
        out.push(`-${name} ${type}: tap, bridge and vhost networking are host devices that are not carried (use -netdev user, or reconnect the network after the update)`);
    } else if (name === "drive" && on("snapshot")) {
      out.push(`-drive snapshot=on: disk writes would be thrown away when QEMU restarts after the update`);
    }
  }
  return [...new Set(out)];
}

/** Whether the user already gave an option (`-sandbox`, `-name`). */
export function hasOption(args: readonly string[], name: string): boolean {
  return args.some((a) => optionName(a) === name);
}

/** The machine types of `qemu -machine help`: name → the versioned type it is an alias of, or itself. */
export function parseMachineHelp(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split("\n")) {
    const m = /^(\S+)\s+(.*)$/.exec(line);
    if (!m || line.startsWith("Supported machines")) continue;
    const alias = /\(alias of ([^)\s]+)\)/.exec(m[2]!);
    out.set(m[1]!, alias ? alias[1]! : m[1]!);
  }
  return out;
}

/** What is wrong with --machine TYPE[,PROPS] before any QEMU is asked (null: nothing). */
export function machineOptionProblem(spec: string): string | null {
  const [given, ...props] = spec.split(",");
  if (!given) return "--machine needs a machine type";
  if (props.some((p) => /^memory-backend=/.test(p))) return "--machine: memory-backend is luo-qemu's";
  return null;
}

/**
 * `--machine TYPE[,PROPS]` resolved against what this QEMU offers: the versioned type (an alias
 * such as `pc` becomes `pc-i440fx-7.2`) and the properties. A type with no version (`isapc`,
 * `microvm`) is refused: its migration format is not promised to stay loadable.
 */
export function resolveMachine(spec: string, machines: Map<string, string>): { type: string; props: string[] } | { error: string } {
  const problem = machineOptionProblem(spec);
  if (problem) return { error: problem };
  const [given = "", ...props] = spec.split(",");
  const type = machines.get(given);
  if (type === undefined) return { error: `this QEMU has no machine type ${given}` };
  if (!/-\d+\.\d+$/.test(type))
    return { error: `machine type ${type} has no version: its device state may not load in another QEMU (use a versioned type such as pc-i440fx-7.2 or pc-q35-7.2)` };
  return { type, props };
}

/** "QEMU emulator version 7.2.22 (Debian …)" → "7.2.22", or null. */
export function parseQemuVersion(text: string): string | null {
  return /QEMU emulator version (\d+\.\d+(?:\.\d+)?)/.exec(text)?.[1] ?? null;
}

export function versionAtLeast(version: string, min: readonly [number, number]): boolean {
  const [a = 0, b = 0] = version.split(".").map(Number);
  return a > min[0] || (a === min[0] && b >= min[1]);
}

/**
 * The `migrate-incoming` URI that reads a saved device state from the memfd QEMU inherited on
 * STATE_FD. `fd:N` of a plain file (a memfd is one) is refused since QEMU 11.0 ("fd: migration to
 * a file is not supported. Use file: instead."); `file:` exists since 8.2, and opening
 * /proc/self/fd/N reopens the memfd from its start. QEMU before 8.2 takes `fd:N`.
 */
export function incomingStateUri(qemuVersion: string): string {
  return versionAtLeast(qemuVersion, [8, 2]) ? `file:/proc/self/fd/${STATE_FD}` : `fd:${STATE_FD}`;
}

export interface QemuCommand {
  qemu: string;
  id: string;
  memoryBytes: number;
  machine: string;
  machineProps: readonly string[];
  qmpSocket: string;
  /** -sandbox on,… unless the user gave -sandbox or the kernel has no seccomp. */
  sandbox: boolean;
  /** Start waiting for an incoming migration (the device state) on STATE_FD. */
  incoming: boolean;
  userArgs: readonly string[];
}

/** QEMU's argv: luo-qemu's options first, then the user's. */
export function qemuArgv(c: QemuCommand): string[] {
  const argv = [c.qemu];
  if (!hasOption(c.userArgs, "name")) argv.push("-name", c.id);
  argv.push(
    "-machine", [c.machine, ...c.machineProps, `memory-backend=${RAM_BACKEND_ID}`].join(","),
    "-m", `${c.memoryBytes / MIB}M`,
    "-object", `memory-backend-file,id=${RAM_BACKEND_ID},size=${c.memoryBytes},mem-path=/proc/self/fd/${RAM_FD},share=on`,
    // -qmp, not -chardev + -mon: QEMU 11.1 deprecates -mon (not the short -qmp); 7.2 takes both
    "-qmp", `unix:${c.qmpSocket},server=on,wait=off`,
  );
  // spawn=deny: the migration goes to a socket of ours, QEMU never needs to exec
  if (c.sandbox && !hasOption(c.userArgs, "sandbox"))
    argv.push("-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny");
  if (c.incoming) argv.push("-incoming", "defer");
  argv.push(...c.userArgs);
  return argv;
}

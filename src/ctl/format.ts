// Human output of luoctl: pure functions from replies (as luod sends them) to text.
// Every reader is tolerant: a field luod does not send (yet) is shown as "-", never a crash,
// because protocol v1 lets luod add fields and luoctl may be older or newer than luod.
// Every string from a reply goes through str() or esc(): escapeControl makes control characters
// visible (\x1b), so a client's id or FAIL reason cannot act on the operator's terminal.
import { escapeControl } from "../wire/escape";
import { previousUpdateCreatedAt } from "../wire/replies";

type Obj = Record<string, unknown>;

export interface Style {
  /** Colour/bold for terminals; plain text otherwise. */
  color: boolean;
}

const PLAIN: Style = { color: false };

function isObj(x: unknown): x is Obj {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}
/** A value from a reply as text, control characters escaped; `dflt` when absent or empty. */
function str(x: unknown, dflt = "-"): string {
  if (x === undefined || x === null || x === "") return dflt;
  return escapeControl(typeof x === "string" ? x : typeof x === "object" ? JSON.stringify(x) : String(x));
}
/** A key (or other string) from a reply, control characters escaped. */
const esc = escapeControl;
function num(x: unknown): number | undefined {
  return typeof x === "number" && Number.isFinite(x) ? x : undefined;
}

// ---- units --------------------------------------------------------------------------------------

/** 500ms, 12s, 1m05s, 2h03m, 3d04h. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return "-";
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, "0")}s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h${String(m % 60).padStart(2, "0")}m`;
  return `${Math.floor(h / 24)}d${String(h % 24).padStart(2, "0")}h`;
}

/** Seconds left, rounded up: "12s left" must not show "0s" while time remains. */
export function formatRemaining(ms: number): string {
  if (!Number.isFinite(ms)) return "-";
  if (ms <= 0) return "0s";
  return ms < 1000 ? `${Math.ceil(ms)}ms` : formatDuration(Math.ceil(ms / 1000) * 1000);
}

export function formatBytes(n: number): string {
  if (!Number.isFinite(n) || n < 0) return "-";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`;
}

/** Age of an ISO timestamp relative to now ("3m12s"); "-" when unparsable. */
export function ageOf(iso: unknown, now: number): string {
  if (typeof iso !== "string") return "-";
  const t = Date.parse(iso);
  return Number.isNaN(t) ? "-" : formatDuration(Math.max(0, now - t));
}

// ---- tables -------------------------------------------------------------------------------------

/** Left-aligned columns separated by two spaces; trailing spaces trimmed. */
export function table(header: string[], rows: string[][], opts: { highlight?: (row: number) => boolean; style?: Style } = {}): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join("  ").trimEnd();
  const out = [line(header)];
  rows.forEach((r, i) => {
    const text = line(r);
    out.push(opts.highlight?.(i) && opts.style?.color ? `\x1b[1;33m${text}\x1b[0m` : text);
  });
  return out.join("\n");
}

/** "key:  value" lines with the values aligned. */
function fields(pairs: [string, string][]): string {
  const w = Math.max(...pairs.map(([k]) => k.length)) + 1;
  return pairs.map(([k, v]) => `${(k + ":").padEnd(w)}  ${v}`).join("\n");
}

// ---- progress -----------------------------------------------------------------------------------

const MAX_WAITING_SHOWN = 8;

/** `ready 3/5, waiting: vm-1 vm-7 (12s left)` from a PROGRESS event (or STATUS's `update`). */
export function formatProgress(p: Obj): string {
  const ready = num(p.ready) ?? 0;
  const total = num(p.total) ?? 0;
  const waiting = Array.isArray(p.waiting) ? p.waiting.map((w) => str(w)) : [];
  let text = `ready ${ready}/${total}`;
  if (waiting.length) {
    const shown = waiting.slice(0, MAX_WAITING_SHOWN).join(" ");
    text += `, waiting: ${shown}${waiting.length > MAX_WAITING_SHOWN ? ` (+${waiting.length - MAX_WAITING_SHOWN} more)` : ""}`;
  }
  const remaining = num(p.remaining_ms);
  if (remaining !== undefined) text += ` (${formatRemaining(remaining)} left)`;
  const phase = typeof p.phase === "string" && p.phase !== "preparing" ? ` [${str(p.phase)}]` : "";
  return text + phase;
}

// ---- commands -----------------------------------------------------------------------------------

/** `luoctl status`. Reads: phase, update, device, boot, kexec_mode, kernel, clients, restored[], previous_update, luod. */
export function formatStatus(r: Obj, now = Date.now(), style: Style = PLAIN): string {
  const pairs: [string, string][] = [];
  pairs.push(["phase", str(r.phase)]);
  if (isObj(r.update)) {
    const u = r.update;
    pairs.push(["update", `#${str(u.attempt)}${u.dry_run ? " (dry run)" : ""}: ${formatProgress(u)}`]);
  }
  if (r.device !== undefined) pairs.push(["device", describeDevice(r.device)]);
  if (r.boot !== undefined) pairs.push(["boot", describeBoot(r.boot)]);
  if (isObj(r.kexec_mode)) pairs.push(["kexec mode", `${str(r.kexec_mode.mode)} (${str(r.kexec_mode.why)})`]);
  if (isObj(r.previous_update)) {
    const p = r.previous_update;
    pairs.push(["last update", `#${str(p.attempt)} from ${str(p.from)} at ${str(previousUpdateCreatedAt(p))}`]);
    // the barrier's timings, as luod recorded them before the jump (ms since the KEXEC request)
    if (isObj(p.timings)) {
      const t = Object.entries(p.timings).map(([k, v]) => `${esc(k.replace(/_ms$/, ""))} ${str(v)} ms`);
      if (t.length) pairs.push(["  timings", t.join(", ")]);
    }
  }
  const k = r.kernel;
  if (isObj(k)) {
    if (k.loaded === false) {
      pairs.push(["kernel", "none loaded (luoctl load)"]);
    } else {
      const bits = [str(k.version)];
      const extra: string[] = [];
      if (typeof k.sha256 === "string") extra.push(`sha256 ${esc(k.sha256.slice(0, 12))}…`);
      if (num(k.size) !== undefined) extra.push(formatBytes(k.size as number));
      if (typeof k.loaded_at === "string") extra.push(`loaded ${ageOf(k.loaded_at, now)} ago`);
      pairs.push(["kernel", bits.join(" ") + (extra.length ? ` (${extra.join(", ")})` : "")]);
      if (k.cmdline !== undefined) pairs.push(["cmdline", str(k.cmdline, "(empty)")]);
      if (isObj(k.abi)) pairs.push(["  ABI", abiLine(k.abi)]);
      if (k.reloadable === false) pairs.push(["  note", "loaded before luod restarted: `luoctl load` it again before `luoctl kexec`"]);
    }
  } else if (k !== undefined) {
    pairs.push(["kernel", str(k)]);
  }
  if (isObj(r.running_abi)) pairs.push(["running ABI", abiLine(r.running_abi)]);
  pairs.push(["clients", describeClients(r.clients)]);
  if (isObj(r.luod)) {
    const l = r.luod;
    pairs.push(["luod", `${str(l.version)}, pid ${str(l.pid)}, ${str(l.connections)} connection(s)`]);
  }
  const restored = Array.isArray(r.restored) ? r.restored.filter(isObj) : [];
  const unclaimed = restored.filter((s) => s.state === "unclaimed");
  pairs.push(["restored", restored.length ? `${restored.length} session(s), ${unclaimed.length} unclaimed` : "none"]);
  let out = fields(pairs);
  if (restored.length) {
    const rows = restored.map((s) => [
      s.state === "unclaimed" ? `*${str(s.id)}` : ` ${str(s.id)}`,
      str(s.state),
      num(s.age_s) !== undefined ? formatDuration((s.age_s as number) * 1000) : ageOf(s.restoredAt ?? s.since, now),
      str(s.uid),
      str(s.unit),
      str(s.session),
    ]);
    out += "\n\n" + table([" ID", "STATE", "AGE", "UID", "UNIT", "SESSION"], rows, {
      style,
      highlight: (i) => restored[i]!.state === "unclaimed",
    }).split("\n").map((l) => "  " + l).join("\n");
    if (unclaimed.length) {
      out += "\n  * unclaimed: its memory stays reserved until the owner claims it or `luoctl discard ID`";
    }
  }
  return out;
}

function describeDevice(d: unknown): string {
  if (typeof d === "boolean") return d ? "/dev/liveupdate present" : "/dev/liveupdate missing";
  if (typeof d === "string" && /^[a-z-]+$/.test(d)) return `/dev/liveupdate ${d}`; // "present" / "absent"
  if (isObj(d)) {
    const path = str(d.path, "/dev/liveupdate");
    const present = d.present ?? d.exists ?? d.ok;
    const rest = Object.entries(d).filter(([key]) => !["path", "present", "exists", "ok"].includes(key));
    let text = present === undefined ? path : `${path} ${present ? "present" : "missing"}`;
    if (rest.length) text += ` (${rest.map(([key, v]) => `${esc(key)} ${str(v)}`).join(", ")})`;
    return text;
  }
  return str(d);
}

function describeBoot(b: unknown): string {
  if (isObj(b) && typeof b.kind === "string") {
    const rest = Object.entries(b).filter(([k]) => k !== "kind");
    return rest.length ? `${esc(b.kind)} (${rest.map(([k, v]) => `${esc(k.replaceAll("_", " "))}: ${str(v)}`).join("; ")})` : esc(b.kind);
  }
  return describeGeneric(b);
}

function describeGeneric(x: unknown): string {
  if (isObj(x)) return Object.entries(x).map(([k, v]) => `${esc(k)}=${str(v)}`).join(" ");
  return str(x);
}

function describeClients(c: unknown): string {
  if (isObj(c)) {
    const total = c.subscribed ?? c.total;
    const prepared = typeof c.prepared === "number" && c.prepared > 0 ? `, ${c.prepared} prepared` : "";
    // expected back, not connected: luoctl kexec refuses to leave them behind
    const away = typeof c.disconnected === "number" && c.disconnected > 0 ? ` (${c.disconnected} not connected)` : "";
    return `${str(total, "0")} subscribed${away}${prepared}, ${str(c.ready, "0")} ready`;
  }
  if (Array.isArray(c)) return `${c.length} subscribed`;
  return str(c, "0");
}

/** `luoctl list`. Reads clients[]: id, state, pid, uid, gid, unit, connected, since, session. */
export function formatList(r: Obj, now = Date.now()): string {
  const clients = Array.isArray(r.clients) ? r.clients.filter(isObj) : [];
  if (!clients.length) return "no clients subscribed";
  const rows = clients.map((c) => [
    str(c.id),
    str(c.state),
    str(c.pid),
    str(c.uid),
    str(c.gid),
    str(c.unit),
    c.connected === false ? "no" : c.connected === true ? "yes" : "-",
    ageOf(c.since, now),
    str(c.session),
  ]);
  return table(["ID", "STATE", "PID", "UID", "GID", "UNIT", "CONN", "AGE", "SESSION"], rows) +
    `\n\n${clients.length} client(s), ${clients.filter((c) => c.state === "ready").length} ready`;
}

/** `luoctl load`. Reads kernel{version,size,sha256}, initrd{size}|null, cmdline, warnings[]? */
export function formatLoad(r: Obj): string {
  const k = isObj(r.kernel) ? r.kernel : {};
  const extra: string[] = [];
  if (num(k.size) !== undefined) extra.push(formatBytes(k.size as number));
  if (typeof k.sha256 === "string") extra.push(`sha256 ${esc(k.sha256)}`);
  const pairs: [string, string][] = [["kernel", `${str(k.version)}${extra.length ? ` (${extra.join(", ")})` : ""}`]];
  const i = r.initrd;
  pairs.push(["initrd", isObj(i) ? (num(i.size) !== undefined ? formatBytes(i.size as number) : "yes") : "none"]);
  pairs.push(["cmdline", str(r.cmdline, "(empty)")]);
  let out = "loaded\n" + fields(pairs).split("\n").map((l) => "  " + l).join("\n");
  const warnings = Array.isArray(r.warnings) ? r.warnings : [];
  for (const w of warnings) out += `\nwarning: ${str(w)}`;
  return out;
}

/** `luoctl check`. Reads ready, checks[]: name, ok, detail, warning? (ok, but worth a look: "warn"). */
export function formatCheck(r: Obj): string {
  const checks = Array.isArray(r.checks) ? r.checks.filter(isObj) : [];
  const mark = (c: Obj) => (c.ok === false ? "FAIL" : c.ok === true ? (c.warning === true ? "warn" : "ok") : "?");
  const rows = checks.map((c) => [mark(c), str(c.name), str(c.detail, "")]);
  const body = rows.length ? table(["", "CHECK", "DETAIL"], rows).split("\n").slice(1).join("\n") : "(no checks reported)";
  return `${body}\n${r.ready === true ? "ready for a live update" : "NOT ready for a live update"}`;
}

/** "luo-v5 memfd-v2 kho-v4" from an ABI object (an unknown string shows as "luo-?"). */
function abiLine(a: Obj): string {
  return ["luo", "memfd", "kho"].map((k) => (typeof a[k] === "string" ? esc(a[k] as string) : `${k}-?`)).join(" ");
}

/** The final line of `luoctl kexec` for a successful reply or a REBOOTING event. */
export function formatKexecDone(r: Obj): string {
  const timings = isObj(r.timings) ? r.timings : {};
  const ready = num(timings.all_ready_ms);
  if (r.event === "REBOOTING") {
    return `all clients ready${ready !== undefined ? ` after ${formatDuration(ready)}` : ""}; rebooting into the loaded kernel`;
  }
  if (r.dry_run === true) {
    return `dry run complete: all clients ready${ready !== undefined ? ` after ${formatDuration(ready)}` : ""}; the update was aborted as planned`;
  }
  return "done";
}

export function formatTimings(t: unknown): string {
  if (!isObj(t)) return "";
  return Object.entries(t)
    .filter(([, v]) => typeof v === "number")
    .map(([k, v]) => `${esc(k.replace(/_ms$/, ""))} ${formatDuration(v as number)}`)
    .join(", ");
}

// A fuzz peer meant to run as another uid (setpriv), for tests/fuzz/roles-fuzz.test.ts:
//   setpriv --reuid=N --regid=N --groups=… bun tests/fuzz/role-peer.ts SOCKET SEED ROLE LINES
// ROLE: stranger | client | admin (admin: in both groups). Sends LINES random lines (valid,
// mutated, random; seeded) one at a time on a few connections, with fds of every kind on some of
// them (luod's own socket included), reads each reply and checks the role's rule on the valid
// requests: a stranger gets EPERM for everything, a client-group member for every admin request
// and for no client request, an admin never. Prints one JSON line: {lines, replies, problems[], codes}.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { closeFd } from "../../src/kernel/fd";
import { RawPeer } from "../integration/raw-peer";
import { COMMANDS, FD_KINDS, Rng, randomLine, validRequest } from "./generate";
import { fdPlace, makeFd } from "./support";

const [socket, seedText, role, linesText] = process.argv.slice(2) as [string, string, "stranger" | "client" | "admin", string];
const rng = new Rng(Number(seedText) >>> 0);
const LINES = Number(linesText);
const ADMIN_CMDS = new Set(["LIST", "LOAD", "UNLOAD", "CHECK", "KEXEC", "ABORT", "DISCARD", "EVICT"]);
const CLIENT_CMDS = new Set(["SUBSCRIBE", "PREPARE", "READY", "FAIL", "UNSUBSCRIBE", "CLAIM", "FINISHED"]);
const place = fdPlace(socket, mkdtempSync(join(tmpdir(), "luo-role-peer-")));
const problems: string[] = [];
const codes: Record<string, number> = {};
let replies = 0;
let sent = 0;
// EVICT too: a stranger or client is refused; an admin's finds nobody (its reason goes to the log)
const commands = [...COMMANDS, "EVICT"];
const uid = process.getuid?.() ?? -1;

while (sent < LINES) {
  const peer = RawPeer.connect(socket);
  for (let i = rng.int(5, 40); i > 0 && sent < LINES; i--, sent++) {
    const tag = 1_000_000 + sent;
    let line: { bytes: Uint8Array; valid: string | null };
    if (rng.chance(0.5)) {
      const cmd = rng.pick(commands);
      const m = validRequest(rng, cmd, tag);
      // ids of this peer's own (other peers keep theirs); EVICT names ids nobody subscribes (an
      // admin evicting the id of its own connection would be dropped, without a reply)
      if ("id" in m && typeof m.id === "string") m.id = `${cmd === "EVICT" ? "gone" : "vm"}-${uid}-${rng.int(1, 5)}`;
      m.tag = tag;
      line = { bytes: new TextEncoder().encode(JSON.stringify(m)), valid: cmd };
    } else {
      line = { bytes: randomLine(rng, commands, tag).bytes, valid: null };
      // a random line must not evict another peer's id: only valid ones name ids here
      if (new TextDecoder().decode(line.bytes).includes("EVICT")) line = { bytes: new TextEncoder().encode('{"cmd":"STATUS"}'), valid: null };
    }
    const kinds = rng.chance(0.15) ? Array.from({ length: rng.int(1, 3) }, () => rng.pick(FD_KINDS)) : [];
    const fds = kinds.map((k) => makeFd(k, place));
    // LOAD says it carries fds: without them the line is refused (EBADMSG) before any permission check
    const wanted = line.valid !== null && fds.length === 0 && line.valid !== "LOAD";
    const bytes = new Uint8Array([...line.bytes, 0x0a]);
    let reply: Record<string, unknown> | null = null;
    try {
      if (!(await peer.sendAll(bytes, fds, 5000))) break;
    } finally {
      for (const fd of fds) closeFd(fd);
    }
    if (new TextDecoder("utf-8", { fatal: false }).decode(line.bytes).trim() === "") continue;
    reply = await peer.next(5000);
    // events (an update another peer started) are not replies: skip them
    while (reply && !("reply" in reply)) reply = await peer.next(5000);
    if (!reply) {
      if (line.valid === "KEXEC") break; // an admin's KEXEC answers when its update ends
      problems.push(`no reply to ${new TextDecoder().decode(line.bytes).slice(0, 120)}`);
      break;
    }
    replies++;
    const code = reply.ok ? "ok" : String((reply.error as { code?: string })?.code);
    codes[code] = (codes[code] ?? 0) + 1;
    // the first-request timeout (1 s in the test) closes a connection no request was accepted on:
    // a stranger's connection always ends so
    if (code === "ETIMEDOUT" && reply.reply === null) break;
    if (!wanted) continue;
    const cmd = line.valid!;
    const eperm = code === "EPERM";
    const mustBe = role === "stranger" ? true : role === "client" ? ADMIN_CMDS.has(cmd) : false;
    if (role === "client" && !ADMIN_CMDS.has(cmd) && !CLIENT_CMDS.has(cmd) && cmd !== "STATUS") continue;
    if (eperm !== mustBe) problems.push(`${role} uid ${uid}: ${cmd} got ${code}, expected ${mustBe ? "EPERM" : "not EPERM"}: ${JSON.stringify(reply).slice(0, 200)}`);
  }
  // end of the connection: leave nothing subscribed behind
  await peer.sendAll('{"cmd":"UNSUBSCRIBE"}\n', [], 2000);
  await peer.next(1000);
  peer.close();
}
rmSync(place.dir, { recursive: true, force: true });
console.log(JSON.stringify({ lines: sent, replies, problems, codes }));

// luo-test-client: a luod client written as a systemd service (luo-test-client@<id>.service),
// compiled by tests/vm/guest/build-systemd-client.sh with `bun build --compile` into its own binary.
//
//   luo-test-client --id ID [--mib N] [--socket PATH] [--silent]
//
// At start: SUBSCRIBE. If luod says a session of ours came back from the previous kernel
// (`restored`), CLAIM it, RETRIEVE_FD token 1, compare every byte with the id's pattern, FINISH,
// FINISHED, and print "VERIFIED <id> <bytes> bytes from <session>" (or "MISMATCH ..."/"CLAIM
// FAILED ..."; exit 1). Then READY=1 to systemd, and for every update: a memfd of N MiB with the
// id's pattern goes into the session luod hands out (token 1), then READY to luod. STATUS= says
// where it is. When luod goes away after READY (a kexec's shutdown, or luod killed), its session
// lives on in luod's fd store: the client just waits to be stopped. Before READY it exits 1.
// --silent: never preserves nor answers (the READY deadline must abort the update).
// A file /var/lib/luo-test/hold-after-claim-<id> (on the root disk, so it outlives the kexec)
// makes the next CLAIM hold: the client takes the file away, says "HOLDING <id>" and waits with
// the session, unverified and unfinished, until it is killed (the double-fault test). The client
// systemd starts again finds no file and claims as usual.
// Like a tenant, the client holds its memfd from the start, not only during an update: the same
// memfd goes into every update's session, and after an aborted update the client reads it back
// and says "INTACT <id> <bytes> bytes after the aborted update" (or "MISMATCH ...").
// While a file /var/lib/luo-test/refuse-<id> exists, the client preserves its memfd and then
// answers the update with FAIL, the file's first line as the reason, and says "REFUSED <id>:
// <reason>" (the fleet test). A memfd it cannot preserve is a FAIL too, with the error.
import { existsSync, readFileSync, renameSync } from "node:fs";
import { holdsPattern, pattern, verifyAndFinish } from "./pattern";
import { LuoClient, LuoConnectionClosed, LuoError, preserveMemfd, SysError } from "../../../src/client";
import { memfdCreate } from "../../../src/kernel/memfd";
import { closeFd, writeFull } from "../../../src/kernel/fd";
import { sdNotify } from "../../../src/kernel/sdnotify";

const TOKEN = 1n;
const args = process.argv.slice(2);
const opt = (name: string, fallback: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1]! : fallback;
};
const id = opt("id", "");
const mib = Number(opt("mib", "8"));
const socket = opt("socket", "/run/luod/liveupdate.sock");
const silent = args.includes("--silent");
if (!id || !Number.isInteger(mib) || mib < 0) {
  console.error("usage: luo-test-client --id ID [--mib N] [--socket PATH]");
  process.exit(2);
}

const say = (what: string) => console.log(`client ${id}: ${what}`);
const status = (s: string) => {
  try {
    sdNotify(`STATUS=${s}`);
  } catch {
    /* not fatal */
  }
};

/** This client's own content (the same generator as tests/vm/guest/clients.ts). */
const patternOf = (bytes: number) => pattern(id, bytes);

async function claim(client: LuoClient): Promise<boolean> {
  try {
    const { session, sessionFd } = await client.claim(id);
    const hold = `/var/lib/luo-test/hold-after-claim-${id}`;
    if (existsSync(hold)) {
      renameSync(hold, `${hold}.taken`);
      say(`HOLDING ${id}: ${session} claimed, not verified nor finished`);
      await new Promise(() => {}); // until SIGKILL
    }
    const { size, same } = await verifyAndFinish(client, id, sessionFd, TOKEN, mib << 20);
    if (!same) {
      say(`MISMATCH ${id}: ${size} bytes from ${session}, expected ${mib << 20} with the id's pattern`);
      return false;
    }
    say(`VERIFIED ${id} ${size} bytes from ${session}`);
    status(`verified ${size} bytes from ${session}`);
    return true;
  } catch (e) {
    say(`CLAIM FAILED ${id}: ${(e as Error).message}`);
    return false;
  }
}

let ready = false;
let client: LuoClient;
try {
  client = await LuoClient.connect(socket);
} catch (e) {
  say(`cannot connect to luod: ${(e as Error).message}`);
  process.exit(1);
}
process.on("SIGTERM", () => {
  say(ready ? "stopped after READY (luod holds the session)" : "stopped");
  client.close();
  process.exit(0);
});

const sub = await client.subscribe(id);
say(`SUBSCRIBED (restored: ${sub.restored === true})`);
if (sub.restored === true && !(await claim(client))) process.exit(1);
sdNotify(`READY=1\nSTATUS=subscribed to luod as ${id}`);

// the tenant's memory, held for the client's whole life
const memfd = memfdCreate(`luo-test-${id}`);
writeFull(memfd, patternOf(mib << 20), 0);

/**
 * PRESERVE_FD of the tenant's memfd; null when done, else why not. EBUSY while the memfd is still
 * preserved in the previous, aborted update's session: that session goes only when its last fd
 * does, and in systemd mode one copy sits in PID 1's fd store until systemd removes it
 * asynchronously (docs/kernel.md#session-lifetimes), so retry for a few seconds.
 */
async function preserveRetrying(sessionFd: number): Promise<string | null> {
  for (let attempt = 1; ; attempt++) {
    try {
      preserveMemfd(sessionFd, memfd, TOKEN);
      return null;
    } catch (e) {
      if (!(e instanceof SysError && e.code === "EBUSY" && attempt < 50)) return `cannot preserve: ${(e as Error).message}`;
      await Bun.sleep(100);
    }
  }
}

/** The reason in /var/lib/luo-test/refuse-<id> (its first line), or null without the file. */
function refusal(): string | null {
  try {
    return readFileSync(`/var/lib/luo-test/refuse-${id}`, "utf8").split("\n")[0]!.trim() || `client ${id} refuses`;
  } catch {
    return null;
  }
}

for (;;) {
  let p;
  try {
    p = await client.waitForSession();
  } catch (e) {
    if (e instanceof LuoError && e.code === "ECANCELED") {
      say(`ABORTED: ${e.message}`);
      const { size, same } = holdsPattern(memfd, id, mib << 20);
      say(same ? `INTACT ${id} ${size} bytes after the aborted update` : `MISMATCH ${id}: ${size} bytes after the aborted update`);
      status(`subscribed; last update aborted`);
      ready = false;
      continue;
    }
    if (e instanceof LuoConnectionClosed && ready) {
      say("luod went away after READY; the session is in luod's fd store, waiting to be stopped");
      status("READY; luod went away (the session is in its fd store)");
      await new Promise(() => {}); // until SIGTERM
    }
    say(`lost luod: ${(e as Error).message}`);
    process.exit(1);
  }
  if (silent) {
    say(`got ${p.session}; staying silent`);
    status(`silent in update ${p.update}`);
    closeFd(p.sessionFd);
    continue;
  }
  // LUO takes its own reference; ours stays the tenant's memory
  const preserved = await preserveRetrying(p.sessionFd);
  closeFd(p.sessionFd); // luod holds its own copy until the jump
  // a refusing client preserves first, so the abort has a preserved memfd to give back
  const reason = preserved ?? refusal();
  if (reason !== null) {
    say(`REFUSED ${id}: ${reason}`);
    status(`refused update ${p.update}`);
    try {
      await client.fail(reason);
    } catch (e) {
      say(`FAIL not taken: ${(e as Error).message}`); // the update may have ended meanwhile
    }
    continue;
  }
  await client.ready();
  ready = true;
  say(`PRESERVED ${mib} MiB into ${p.session}; READY`);
  status(`READY for update ${p.update}: ${mib} MiB preserved in ${p.session}`);
}

// Test clients of luod, run in the VM guest with Bun from the host root:
//   hostrun $REPO/node_modules/.bin/bun $REPO/tests/vm/guest/clients.ts MODE --ids a,b,c [options]
//
// preserve: one connection per id; SUBSCRIBE, then for every START_PRESERVATION put a memfd of
//           --mib MiB with the id's own pattern into the session (token 1) and answer by --behave:
//             ready (default)  READY, then wait for the next update or the jump
//             fail             FAIL
//             silent           never answer (the deadline must abort the update)
//             exit             READY, then exit the process at once (luod must hold the session)
//           Every event is one line on stdout: "client <id>: <EVENT> ...".
// claim:    after the jump, one connection per id: CLAIM, RETRIEVE_FD token 1, verify every byte,
//           FINISH the session, FINISHED. Prints "VERIFIED <id> <bytes> bytes"; exits 1 on any error.
import { LuoClient } from "../../../src/client";
import { preserveMemfd, retrieveMemfd, finishSession } from "../../../src/client/memfd";
import { memfdCreate } from "../../../src/kernel/memfd";
import { closeFd, readFull, writeFull, fileSize } from "../../../src/kernel/fd";

const TOKEN = 1n;
const args = process.argv.slice(2);
const mode = args[0];
const opt = (name: string, fallback: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
const ids = opt("ids", "").split(",").filter(Boolean);
const mib = Number(opt("mib", "1"));
const behave = opt("behave", "ready");
const socket = opt("socket", "/run/luod/liveupdate.sock");

/** The id's own content: xorshift32 seeded from the id, so stage 2 can regenerate it. */
function pattern(id: string, bytes: number): Uint8Array {
  const out = new Uint8Array(new ArrayBuffer(bytes));
  const words = new Uint32Array(out.buffer, 0, bytes >>> 2);
  let x = 2166136261;
  for (const ch of id) x = Math.imul(x ^ ch.charCodeAt(0), 16777619) >>> 0;
  x ||= 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    words[i] = x;
  }
  return out;
}

const say = (id: string, what: string) => console.log(`client ${id}: ${what}`);

async function preserveOne(id: string): Promise<void> {
  const client = await LuoClient.connect(socket);
  await client.subscribe(id);
  say(id, "SUBSCRIBED");
  client.on("ABORTED", (msg) => say(id, `ABORTED ${JSON.stringify(msg.reason)}`));
  for (;;) {
    const { msg, fds } = await client.waitFor("START_PRESERVATION", { timeoutMs: 600_000 });
    const sessionFd = fds[0];
    const memfd = memfdCreate(`demo-${id}`);
    writeFull(memfd, pattern(id, mib << 20), 0);
    preserveMemfd(sessionFd, memfd, TOKEN);
    closeFd(memfd); // LUO holds its own reference after PRESERVE_FD
    say(id, `PRESERVED ${mib} MiB into ${msg.session}`);
    if (behave === "fail") {
      await client.fail("test client told to fail");
      say(id, "FAIL sent");
    } else if (behave === "silent") {
      say(id, "staying silent");
    } else {
      await client.ready();
      say(id, "READY");
      if (behave === "exit") {
        say(id, "exiting right after READY");
        process.exit(0);
      }
    }
    closeFd(sessionFd); // luod holds its own copy until the jump
  }
}

async function claimOne(id: string): Promise<boolean> {
  const client = await LuoClient.connect(socket);
  try {
    const { session, sessionFd } = await client.claim(id);
    const memfd = retrieveMemfd(sessionFd, TOKEN);
    const size = fileSize(memfd);
    const got = new Uint8Array(new ArrayBuffer(size));
    readFull(memfd, got, 0);
    const want = pattern(id, mib << 20);
    const same = size === want.length && Buffer.from(got.buffer).equals(Buffer.from(want.buffer));
    finishSession(sessionFd);
    closeFd(sessionFd);
    closeFd(memfd);
    await client.finished(id);
    if (!same) {
      console.log(`MISMATCH ${id}: ${size} bytes from ${session}, expected ${want.length} with the id's pattern`);
      return false;
    }
    console.log(`VERIFIED ${id} ${size} bytes from ${session}`);
    return true;
  } catch (e) {
    console.log(`CLAIM FAILED ${id}: ${(e as Error).message}`);
    return false;
  } finally {
    client.close();
  }
}

if (mode === "preserve") {
  await Promise.all(ids.map((id) => preserveOne(id).catch((e) => {
    say(id, `ERROR ${(e as Error).message}`);
    process.exit(1);
  })));
} else if (mode === "claim") {
  const results = await Promise.all(ids.map(claimOne));
  process.exit(results.every(Boolean) ? 0 : 1);
} else {
  console.error("usage: clients.ts preserve|claim --ids a,b [--mib N] [--behave ready|fail|silent|exit] [--socket P]");
  process.exit(2);
}

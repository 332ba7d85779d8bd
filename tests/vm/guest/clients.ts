// Test clients of luod, run in the VM guest with Bun from the host root:
//   hostrun $REPO/node_modules/.bin/bun $REPO/tests/vm/guest/clients.ts MODE --ids a,b,c [options]
//
// preserve: one connection per id. Each client fills a memfd of --mib MiB with the id's own
//           pattern once and keeps it, like a real application keeps its working memory. It
//           SUBSCRIBEs, and for every START_PRESERVATION preserves the memfd (token 1) into the
//           session and answers by --behave:
//             ready (default)  READY, then wait for the next update or the jump
//             fail             FAIL (--fail-when PATH: only once PATH exists, so a job can make it
//                              FAIL after another client paused)
//             silent           never answer (the deadline must abort the update)
//             exit             READY, then exit the process at once (luod must hold the session)
//           If luod goes away, the client reconnects and subscribes again.
//           --prepare: PREPARE right after SUBSCRIBE and preserve the memfd at once, filled with a
//           stale pattern; check that its size is frozen (ftruncate: EPERM). On START_PRESERVATION
//           write the real pattern into the already preserved memfd, then answer; the session is
//           kept across aborts. What comes back after the jump must be the real pattern.
//           Every event is one line on stdout: "client <id>: <EVENT> ...".
// claim:    after the jump, one connection per id: CLAIM, RETRIEVE_FD token 1, verify every byte,
//           FINISH the session, FINISHED. Prints "VERIFIED <id> <bytes> bytes"; exits 1 on any error.
//           --behave die: exit right after CLAIMED, without FINISHED (a client killed mid-claim).
import { existsSync } from "node:fs";
import { LuoClient, LuoError } from "../../../src/client";
import { pattern, verifyAndFinish } from "./pattern";
import { preserveMemfd } from "../../../src/client/memfd";
import { ftruncate, memfdCreate } from "../../../src/kernel/memfd";
import { SysError } from "../../../src/kernel/libc";
import { closeFd, writeFull } from "../../../src/kernel/fd";

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
const prepare = args.includes("--prepare");
const socket = opt("socket", "/run/luod/liveupdate.sock");

const say = (id: string, what: string) => console.log(`client ${id}: ${what}`);

/** Connects, retrying while luod is (re)starting. */
async function connect(): Promise<LuoClient> {
  for (let i = 0; ; i++) {
    try {
      return await LuoClient.connect(socket);
    } catch (e) {
      if (i >= 600) throw e;
      await Bun.sleep(100);
    }
  }
}

async function preserveOne(id: string): Promise<void> {
  const memfd = memfdCreate(`demo-${id}`);
  writeFull(memfd, pattern(prepare ? `${id}~stale` : id, mib << 20), 0);
  for (;;) {
    const client = await connect();
    let preparedFd: number | null = null;
    try {
      await client.subscribe(id);
      say(id, "SUBSCRIBED");
      client.on("ABORTED", (msg) => say(id, `ABORTED ${JSON.stringify(msg.reason)}`));
      if (prepare) preparedFd = prepareAhead(await client.prepare(), id, memfd);
      for (;;) await preserveInto(client, id, memfd);
    } catch (e) {
      say(id, `DISCONNECTED ${(e as Error).message}`);
    } finally {
      client.close();
      // the old session would keep the memfd preserved: PREPARE again would meet EBUSY
      if (preparedFd !== null) closeFd(preparedFd);
    }
    await Bun.sleep(100);
  }
}

/** PREPARE's session: preserve the memfd now, and show that its size is frozen from here on. */
function prepareAhead(p: { session: string; sessionFd: number }, id: string, memfd: number): number {
  preserveMemfd(p.sessionFd, memfd, TOKEN);
  say(id, `PREPARED ${mib} MiB into ${p.session}`);
  try {
    ftruncate(memfd, (mib << 20) * 2);
    say(id, "SIZE NOT FROZEN: ftruncate succeeded after PRESERVE_FD");
  } catch (e) {
    say(id, e instanceof SysError && e.code === "EPERM" ? "SIZE FROZEN (ftruncate: EPERM)" : `ftruncate: ${(e as Error).message}`);
  }
  return p.sessionFd;
}

async function preserveInto(client: LuoClient, id: string, memfd: number): Promise<void> {
  const { msg, fds } = await client.waitFor("START_PRESERVATION");
  if (msg.prepared === true) {
    // preserved long ago; the contents are live, so what counts is what is in RAM at the jump
    writeFull(memfd, pattern(id, mib << 20), 0);
    say(id, `WROTE ${mib} MiB into the prepared ${msg.session}`);
    await answer(client, id);
    return;
  }
  const sessionFd = fds[0];
  try {
    preserveMemfd(sessionFd, memfd, TOKEN);
    say(id, `PRESERVED ${mib} MiB into ${msg.session}`);
    await answer(client, id);
  } finally {
    // luod holds its own copy until the jump; ours would keep an aborted session alive, and the
    // memfd cannot be preserved into the next session while this one lives (EBUSY, docs/kernel.md#errnos-per-ioctl)
    closeFd(sessionFd);
  }
}

/** The answer --behave asks for. */
async function answer(client: LuoClient, id: string): Promise<void> {
  try {
    if (behave === "fail") {
      const when = opt("fail-when", "");
      for (let i = 0; when && !existsSync(when) && i < 1200; i++) await Bun.sleep(100);
      await client.fail("test client told to fail");
      say(id, "FAIL sent");
    } else if (behave === "silent") {
      say(id, "staying silent");
      const { msg: aborted } = await client.waitFor("ABORTED"); // taken here, so no listener sees it
      say(id, `ABORTED ${JSON.stringify(aborted.reason)}`);
    } else {
      await client.ready();
      say(id, "READY");
      if (behave === "exit") {
        say(id, "exiting right after READY");
        process.exit(0);
      }
    }
  } catch (e) {
    // the update ended (another client failed) while this one was still preserving: carry on
    if (!(e instanceof LuoError && e.code === "EBUSY")) throw e;
    say(id, `too late: ${e.message}`);
  }
}

async function claimOne(id: string): Promise<boolean> {
  const client = await connect();
  try {
    const { session, sessionFd } = await client.claim(id);
    if (behave === "die") {
      console.log(`CLAIMED ${id} from ${session}; dying before FINISHED`);
      process.exit(3);
    }
    const { size, same } = await verifyAndFinish(client, id, sessionFd, TOKEN, mib << 20);
    if (!same) {
      console.log(`MISMATCH ${id}: ${size} bytes from ${session}, expected ${mib << 20} with the id's pattern`);
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
  console.error("usage: clients.ts preserve|claim --ids a,b [--mib N] [--behave ready|fail|silent|exit|die] [--prepare] [--socket P]");
  process.exit(2);
}

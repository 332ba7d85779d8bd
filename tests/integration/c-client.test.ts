// The C reference client (examples/c) on this host, which has no LUO kernel: it compiles with
// gcc -Werror, subscribes to the compiled luod, and every failure is one line naming the step
// and the errno. Against a fake luod, the session fd of START_PRESERVATION and CLAIMED reaches
// its ioctl (a memfd stands in for the session, so the LUO ioctl fails with ENOTTY).
// The whole update through a real kexec: tests/vm/c-client.test.ts.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run, startDaemon, type Daemon } from "../support/binary";
import { FakeLuod } from "../../src/client/fake-luod";
import { memfdCreate } from "../../src/kernel/memfd";
import { closeQuietly, O_CLOEXEC, openFile } from "../../src/kernel/fd";
import { MessageIo } from "../../src/kernel/scm-rights";
import { acceptConnection, unixListen, waitFd } from "../../src/kernel/unix";
import { compileCClient } from "../support/c-client";

const GCC = Bun.which("gcc");
if (!GCC) console.warn("tests/integration/c-client: SKIPPING the C client tests: gcc is missing");

let dir: string;
let exe: string;
let compiled: { code: number; stderr: string };

beforeAll(() => {
  if (!GCC) return;
  dir = mkdtempSync(join(tmpdir(), "c-client-"));
  exe = join(dir, "luo_example");
  compiled = compileCClient(exe);
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Starts the C client; its stdout and stderr are collected. */
function client(args: string[]) {
  const proc = Bun.spawn([exe, ...args], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  let out = "";
  void (async () => {
    for await (const chunk of proc.stdout) out += new TextDecoder().decode(chunk);
  })();
  const stderr = new Response(proc.stderr).text();
  const timer = setTimeout(() => proc.kill("SIGKILL"), 15_000);
  return {
    proc,
    out: () => out,
    async waitOut(text: string) {
      for (let i = 0; !out.includes(text); i++) {
        if (i > 500 || proc.exitCode !== null) throw new Error(`no "${text}" from the C client: ${out} ${await stderr}`);
        await Bun.sleep(20);
      }
    },
    async done() {
      const code = await proc.exited;
      clearTimeout(timer);
      return { code, out, err: await stderr };
    },
  };
}

describe.skipIf(!GCC)("the C reference client", () => {
  test("examples/c compiles with gcc -std=c11 -Wall -Wextra -Werror", () => {
    expect(compiled.stderr).toBe("");
    expect(compiled.code).toBe(0);
  });

  describe("against the compiled luod", () => {
    let luod: Daemon;
    beforeAll(async () => {
      luod = await startDaemon(["--device", "/nonexistent/liveupdate"]);
    });
    afterAll(async () => {
      await luod?.stop();
    });

    test("SUBSCRIBE: luoctl list shows it; when luod closes the connection it exits 1 with one line", async () => {
      const c = client(["preserve", "vm-c", "1", luod.socket]);
      await c.waitOut("SUBSCRIBED vm-c\n");
      const list = await run("luoctl", ["--socket", luod.socket, "list", "--json"]);
      expect(list.code).toBe(0);
      const clients = JSON.parse(list.stdout).clients as { id: string; pid: number; connected: boolean }[];
      expect(clients).toContainEqual(expect.objectContaining({ id: "vm-c", pid: c.proc.pid, connected: true }));
      expect(await luod.stop()).toBe(0);
      const r = await c.done();
      expect(r.code).toBe(1);
      expect(r.err).toBe("luo_example: waiting for START_PRESERVATION: luod closed the connection: ECONNRESET (Connection reset by peer)\n");
    });
  });

  describe("against a luod that refuses", () => {
    let luod: Daemon;
    beforeAll(async () => {
      luod = await startDaemon(["--device", "/nonexistent/liveupdate"]);
    });
    afterAll(async () => {
      await luod?.stop();
    });

    test("CLAIM with nothing to claim: exit 1, luod's refusal in one line", async () => {
      const r = await client(["claim", "vm-none", "1", luod.socket]).done();
      expect(r.code).toBe(1);
      expect(r.out).toBe("");
      expect(r.err.split("\n")).toHaveLength(2);
      expect(r.err).toStartWith('luo_example: CLAIM: luod refused: {"reply":"CLAIM","ok":false,"error":{"code":"ENOENT"');
    });

    test("an id luod would refuse, a bad size or no socket: exit 1 with the step and the errno", async () => {
      const bad = await client(["preserve", "bad id", "1", luod.socket]).done();
      expect(bad.code).toBe(1);
      expect(bad.err).toContain("ID must be 1-48 characters of [A-Za-z0-9._@:-]: EINVAL");
      const size = await client(["preserve", "vm-c", "0", luod.socket]).done();
      expect(size.err).toContain("MIB must be 1 to 65536: EINVAL");
      const none = await client(["claim", "vm-c", "1", join(dir, "nothing.sock")]).done();
      expect(none.code).toBe(1);
      expect(none.err).toBe(`luo_example: connect ${join(dir, "nothing.sock")}: ENOENT (No such file or directory)\n`);
    });
  });

  describe("against a fake luod that hands out fds", () => {
    let fake: FakeLuod;
    beforeAll(async () => {
      fake = await FakeLuod.start();
    });
    afterAll(() => fake.close());

    test("START_PRESERVATION's fd is the one PRESERVE_FD is called on (sent behind another event)", async () => {
      fake.handle("SUBSCRIBE", (req) => ({ id: req.id }));
      const c = client(["preserve", "vm-f", "1", fake.path]);
      await c.waitOut("SUBSCRIBED vm-f\n");
      const stand_in = memfdCreate("not-a-session");
      try {
        fake.broadcast({ event: "PRESERVATION_REQUEST", update: 7, timeout_ms: 30000, deadline: "2026-01-01T00:00:00.000Z" });
        fake.broadcast({ event: "START_PRESERVATION", id: "vm-f", session: "luod:vm-f/7", update: 7, fds: 1 }, [stand_in]);
        const r = await c.done();
        expect(r.code).toBe(1);
        // the fd arrived and was used: a memfd is no session, so the LUO ioctl is not known on it
        expect(r.err).toBe("luo_example: ioctl LIVEUPDATE_SESSION_PRESERVE_FD: ENOTTY (Inappropriate ioctl for device)\n");
      } finally {
        closeQuietly(stand_in);
      }
    });

    test("START_PRESERVATION without an fd is refused, not taken as a session", async () => {
      fake.handle("SUBSCRIBE", (req) => ({ id: req.id }));
      const c = client(["preserve", "vm-g", "1", fake.path]);
      await c.waitOut("SUBSCRIBED vm-g\n");
      fake.broadcast({ event: "START_PRESERVATION", id: "vm-g", session: "luod:vm-g/8", update: 8 });
      const r = await c.done();
      expect(r.code).toBe(1);
      expect(r.err).toBe("luo_example: START_PRESERVATION came without a session fd: EBADMSG (Bad message)\n");
    });

    test("CLAIMED's fd is the one RETRIEVE_FD is called on", async () => {
      const stand_in = memfdCreate("not-a-session");
      try {
        fake.handle("CLAIM", (req, _fds, peer) => {
          peer.send({ event: "CLAIMED", reply: "CLAIM", ok: true, id: req.id, session: `luod:${req.id}/9`, fds: 1 }, [stand_in]);
          return null;
        });
        const r = await client(["claim", "vm-h", "1", fake.path]).done();
        expect(r.code).toBe(1);
        expect(r.err).toBe("luo_example: ioctl LIVEUPDATE_SESSION_RETRIEVE_FD: ENOTTY (Inappropriate ioctl for device)\n");
      } finally {
        closeQuietly(stand_in);
      }
    });
  });
  test("fds ride FIFO: START_PRESERVATION gets its own fd, though it came with earlier lines split over two reads", async () => {
    // One sendmsg carries the SUBSCRIBE reply, an event this client does not know that claims
    // one fd (an O_PATH fd: any ioctl on it is EBADF), and half a line, with both fds; the rest,
    // START_PRESERVATION claiming the second fd (a memfd: ENOTTY), comes 100 ms later.
    const path = join(dir, "raw.sock");
    const listen = unixListen(path);
    const opath = openFile("/", 0o10000000 | O_CLOEXEC); // O_PATH
    const memfd = memfdCreate("not-a-session");
    const c = client(["preserve", "vm-r", "1", path]);
    try {
      expect(waitFd(listen, "read", 5000)).toBe(true);
      const conn = acceptConnection(listen)!;
      const io = new MessageIo();
      expect(waitFd(conn, "read", 5000)).toBe(true);
      for (let got = ""; !got.includes("\n"); ) {
        const n = io.receive(conn, []);
        if (n > 0) got += new TextDecoder().decode(io.buffer.subarray(0, n));
        else if (!waitFd(conn, "read", 5000)) throw new Error("no SUBSCRIBE from the C client");
      }
      const text = new TextEncoder().encode(
        '{"reply":"SUBSCRIBE","ok":true,"id":"vm-r"}\n{"event":"SOMETHING_NEW","fds":1}\n{"event":"PRESERVATION_REQ' +
          'UEST","update":3,"timeout_ms":30000}\n{"event":"START_PRESERVATION","id":"vm-r","session":"luod:vm-r/3","update":3,"fds":1}\n',
      );
      const cut = text.indexOf(0x51 /* Q */) + 1;
      expect(io.send(conn, text.subarray(0, cut), [opath, memfd])).toBe(cut);
      await Bun.sleep(100);
      expect(io.send(conn, text.subarray(cut))).toBe(text.length - cut);
      const r = await c.done();
      expect(r.out).toBe("SUBSCRIBED vm-r\n");
      expect(r.err).toBe("luo_example: ioctl LIVEUPDATE_SESSION_PRESERVE_FD: ENOTTY (Inappropriate ioctl for device)\n");
      expect(r.code).toBe(1);
      closeQuietly(conn);
    } finally {
      c.proc.kill();
      closeQuietly([listen, opath, memfd]);
    }
  });
});

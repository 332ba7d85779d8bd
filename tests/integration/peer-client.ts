// A tiny luod client for the access tests, meant to run as another user:
//   setpriv --reuid=N --regid=N --clear-groups bun tests/integration/peer-client.ts SOCKET 'REQUESTS'
// REQUESTS is a JSON array of requests; a request with `"attach": n` is sent with n memfds (for
// LOAD: they hold a few bytes of text, never a kernel). Each request goes on a connection of its
// own; one JSON line per request is printed: {"cmd", "ok", "code"?, "message"?}.
//   … peer-client.ts SOCKET --hold N [MS]   opens N connections at once, waits (300 ms), and
//                                           prints how many luod closed: {"opened", "closed"}
import { LuoClient, LuoError } from "../../src/client";
import { RawPeer } from "./raw-peer";
import { addSeals, F_SEAL_GROW, F_SEAL_SHRINK, F_SEAL_WRITE, memfdCreate } from "../../src/kernel/memfd";
import { writeFull, closeFd } from "../../src/kernel/fd";

const [socket, raw] = process.argv.slice(2);
if (!socket || !raw) {
  console.error("usage: peer-client.ts SOCKET 'JSON array of requests'");
  process.exit(2);
}
if (raw === "--hold") {
  const peers = Array.from({ length: Number(process.argv[4]) }, () => RawPeer.connect(socket));
  await Bun.sleep(Number(process.argv[5] ?? 300));
  let closed = 0;
  for (const p of peers) {
    p.pump();
    if (p.eof) closed++;
  }
  console.log(JSON.stringify({ opened: peers.length, closed }));
  process.exit(0);
}
const requests = JSON.parse(raw) as ({ cmd: string; attach?: number } & Record<string, unknown>)[];

for (const { attach = 0, ...req } of requests) {
  const fds: number[] = [];
  for (let i = 0; i < attach; i++) {
    const fd = memfdCreate("peer-client");
    writeFull(fd, new TextEncoder().encode("not a kernel\n"), 0);
    // sealed: luod takes no image that could change under it (an unsealed one is EACCES)
    addSeals(fd, F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW);
    fds.push(fd);
  }
  let out: Record<string, unknown>;
  try {
    const client = await LuoClient.connect(socket);
    try {
      const r = await client.call(req, fds, { timeoutMs: 5000 });
      for (const fd of r.fds) closeFd(fd);
      out = { cmd: req.cmd, ok: true };
    } finally {
      client.close();
    }
  } catch (e) {
    out = { cmd: req.cmd, ok: false, code: e instanceof LuoError ? e.code : "EIO", message: (e as Error).message };
  } finally {
    for (const fd of fds) closeFd(fd);
  }
  console.log(JSON.stringify(out));
}

// A client that dies leaving its own socket in luod's hands (the audit's attack, issue 14 hole 1):
//   bun tests/integration/dead-peer.ts SOCKET ID partial   SUBSCRIBE, then half a line whose
//                                                        SCM_RIGHTS carry its own socket; exit
//   bun tests/integration/dead-peer.ts SOCKET ID stalled   SUBSCRIBE, then requests without ever
//                                                        reading the replies, every write carrying
//                                                        its own socket, until luod stops reading; exit
//   bun tests/integration/dead-peer.ts SOCKET ID handoff   SUBSCRIBE, hand the socket to a child
//                                                        (`sleep 6`, socket as its stdin); exit
// Prints one JSON line ({"subscribed": true, ...}) before it exits.
import { RawPeer } from "./raw-peer";
import { spawn } from "node:child_process";
import { Errno } from "../../src/kernel/libc";

const [socket, id, mode] = process.argv.slice(2);
if (!socket || !id || !["partial", "stalled", "handoff"].includes(mode)) {
  console.error("usage: dead-peer.ts SOCKET ID partial|stalled|handoff");
  process.exit(2);
}
const p = RawPeer.connect(socket);
const r = await p.request({ cmd: "SUBSCRIBE", id });
if (r?.ok !== true) {
  console.log(JSON.stringify({ subscribed: false, reply: r }));
  process.exit(1);
}
if (mode === "handoff") {
  const child = spawn("sleep", ["6"], { detached: true, stdio: [p.fd, "ignore", "ignore"] });
  child.unref();
  console.log(JSON.stringify({ subscribed: true, child: child.pid }));
  process.exit(0);
}
if (mode === "partial") {
  const n = p.sendOnce('{"cmd":"STATUS","fds":1', [p.fd]);
  console.log(JSON.stringify({ subscribed: true, sent: n }));
  process.exit(0);
}
// stalled: 100 STATUS lines per write, each write with our own socket, never reading a reply.
// luod stops reading once its unsent replies pile up; the writes after that (sockets included)
// wait unread in its receive queue until the socket buffer is full.
const chunk = '{"cmd":"STATUS"}\n'.repeat(100);
let writes = 0;
let blockedSince = 0;
for (;;) {
  const n = p.sendOnce(chunk, [p.fd]);
  if (n === -Errno.EAGAIN) {
    blockedSince ||= Date.now();
    if (Date.now() - blockedSince > 1000) break; // luod has stopped reading us
    await Bun.sleep(10);
    continue;
  }
  if (n < 0) {
    console.log(JSON.stringify({ subscribed: true, error: n }));
    process.exit(1);
  }
  blockedSince = 0;
  writes++;
}
console.log(JSON.stringify({ subscribed: true, writes }));
process.exit(0);

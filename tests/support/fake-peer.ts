// A broker Peer that records what luod sends it, one entry per line: an array send (several
// lines in one write) is split, and the fds are handed to the lines that say they carry them.
import type { Peer } from "../../src/daemon/broker";

let nextSerial = 1;

export class RecordingPeer implements Peer {
  readonly serial = nextSerial++;
  readonly unit = null;
  readonly cred: { pid: number; uid: number; gid: number };
  sent: { msg: Record<string, unknown>; fds: number[] }[] = [];

  constructor(cred?: { pid: number; uid: number; gid: number }) {
    this.cred = cred ?? { pid: 1000 + this.serial, uid: 1000, gid: 1000 };
  }

  send(msg: object | readonly object[], fds: number[] = []): boolean {
    const rest = [...fds];
    for (const m of Array.isArray(msg) ? msg : [msg]) {
      const n = (m as { fds?: number }).fds ?? 0;
      this.sent.push({ msg: m as Record<string, unknown>, fds: rest.splice(0, n) });
    }
    return true;
  }

  /** The events of this name, in the order they were sent. */
  events(name: string) {
    return this.sent.filter((s) => s.msg.event === name);
  }
}

// The sending side of systemd-journald's native protocol: one AF_UNIX datagram per entry to its
// socket (systemd.journal-fields(7); sd_journal_sendv in libsystemd's journal-send.c does the
// same). What goes into a datagram is built in src/daemon/journal-entry.ts; this module only
// sends it.
import { ptr } from "bun:ffi";
import { closeFd } from "./fd.ts";
import { Errno, SysError, sys } from "./libc.ts";
import { MessageIo } from "./scm-rights.ts";
import { unixDatagramSocket } from "./unix.ts";

/** Where journald listens for native entries. */
export const JOURNAL_SOCKET = "/run/systemd/journal/socket";

const SOL_SOCKET = 1;
const SO_SNDBUF = 7;
/** sd-journal's SNDBUF_SIZE: a burst of entries queues in the kernel instead of failing with EAGAIN. */
const SEND_BUFFER_BYTES = 8 * 1024 * 1024;

/**
 * One unbound, non-blocking SOCK_DGRAM socket, kept open for every entry (as sd-journal keeps
 * its own). send() never blocks: a full queue (EAGAIN), a journald that is not there (ENOENT,
 * ECONNREFUSED) or an entry too large for a datagram (EMSGSIZE) come back as -errno, and the
 * caller writes the message elsewhere.
 */
export class JournalSocket {
  private fd: number;
  private readonly io = new MessageIo({ bufferSize: 1, maxFds: 1 }); // send side only

  constructor(readonly path: string = JOURNAL_SOCKET) {
    this.fd = unixDatagramSocket();
    const size = new DataView(new ArrayBuffer(4));
    size.setInt32(0, SEND_BUFFER_BYTES, true);
    // the kernel caps it at net.core.wmem_max; a smaller buffer is no reason not to log
    sys.setsockopt(this.fd, SOL_SOCKET, SO_SNDBUF, ptr(size), 4);
  }

  /** Sends one entry; returns the bytes sent or -errno. */
  send(entry: Uint8Array): number {
    if (this.fd < 0) throw new SysError(`sendmsg ${this.path}`, Errno.EBADF, "the journal socket is closed");
    return this.io.sendTo(this.fd, this.path, entry);
  }

  close(): void {
    if (this.fd < 0) return;
    closeFd(this.fd);
    this.fd = -1;
  }
}

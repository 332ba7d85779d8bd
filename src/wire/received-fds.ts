// The fds a peer sends, from their arrival until the line that claims them takes them: the
// receive side's fd policy for one connection (docs/protocol.md, "Transport";
// docs/daemon.md, "Dead peers"). With refuseSockets a socket is closed the moment it arrives (a
// placeholder keeps the FIFO matching fds to lines); fds that wait ahead of a line that does not
// end are closed after a deadline; every fd closed without a line to take it is counted.
import { closeQuietly, isSocket } from "../kernel/fd";
import type { LineFramer } from "./framing";

/** Stands in the fd FIFO for a socket that was closed on arrival. */
export const REFUSED_FD = -1;

export class ReceivedFds {
  /** fds closed because no line took them (strays, fds of invalid lines, refused sockets). */
  strays = 0;
  /** Sockets closed on arrival (also counted in strays). */
  socketsRefused = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly framer: LineFramer,
    private readonly refuseSockets: boolean,
    /** How long fds may wait ahead of a partial line; 0: forever. */
    readonly partialLineTimeoutMs: number,
    /** Called when that deadline passes (the caller decides what it means for the line). */
    private readonly onTimeout: () => void,
  ) {}

  /** Queues received fds; with refuseSockets a socket is closed now and a placeholder queued. */
  admit(fds: number[]): void {
    if (this.refuseSockets) {
      for (let i = 0; i < fds.length; i++) {
        let sock = true; // an fd we cannot fstat is refused too
        try {
          sock = isSocket(fds[i]!);
        } catch {}
        if (!sock) continue;
        closeQuietly(fds[i]!);
        fds[i] = REFUSED_FD;
        this.socketsRefused++;
        this.strays++;
      }
    }
    this.framer.pushFds(fds);
  }

  /** Closes fds taken from the FIFO (placeholders are closed already); returns how many. */
  close(fds: number[]): number {
    const real = fds.filter((fd) => fd !== REFUSED_FD);
    closeQuietly(real);
    return real.length;
  }

  /** Closes fds no line will take, and counts them as strays. */
  closeStrays(fds: number[]): void {
    this.strays += this.close(fds);
  }

  /** Closes and counts every fd still queued. */
  dropQueued(): void {
    this.closeStrays(this.framer.drainFds());
  }

  /** Runs the deadline while fds wait for the rest of their line (`open`: the connection is), else stops it. */
  updateTimer(open: boolean): void {
    const waiting = open && this.framer.queuedFds > 0 && this.framer.hasPartialLine;
    if (!waiting || this.partialLineTimeoutMs <= 0) {
      this.stopTimer();
      return;
    }
    if (this.timer) return; // the deadline counts from the first fd that waits
    this.timer = setTimeout(() => {
      this.timer = null;
      this.onTimeout();
    }, this.partialLineTimeoutMs);
    this.timer.unref?.();
  }

  stopTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}

// The load generator, bench/c/swarm.c (N luod clients in one C process, one epoll loop), as a
// child process of the bench: one command per line on its stdin, one JSON line back for each.
// The commands and what they answer are listed at the top of bench/c/swarm.c.
import type { Subprocess } from "bun";

export type SwarmReply = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export class SwarmProcess {
  private buffered = "";
  private readonly reader: { read(): Promise<{ value?: Uint8Array; done: boolean }> };
  private readonly decoder = new TextDecoder();

  private constructor(private readonly proc: Subprocess<"pipe", "pipe", "inherit">) {
    this.reader = proc.stdout.getReader();
  }

  /**
   * Starts `luo-swarm` (compiled by buildGenerators) for the socket, with memfds of `bytes`.
   * luo: false when luod runs with the fake kernel (bench/profile.ts): no LUO ioctls then.
   */
  static start(bin: string, socket: string, bytes: number, luo = true): SwarmProcess {
    const proc = Bun.spawn([bin, socket, String(bytes), ...(luo ? [] : ["--no-luo"])], { stdin: "pipe", stdout: "pipe", stderr: "inherit" });
    return new SwarmProcess(proc);
  }

  /** Sends one command, resolves with its answer; throws when the generator ended without one. */
  async command(line: string): Promise<SwarmReply> {
    this.proc.stdin.write(`${line}\n`);
    this.proc.stdin.flush();
    for (;;) {
      const nl = this.buffered.indexOf("\n");
      if (nl >= 0) {
        const reply = this.buffered.slice(0, nl);
        this.buffered = this.buffered.slice(nl + 1);
        return JSON.parse(reply) as SwarmReply;
      }
      const { value, done } = await this.reader.read();
      if (done) throw new Error(`luo-swarm ended (exit ${await this.proc.exited}) before it answered "${line}"; its stderr says why`);
      this.buffered += this.decoder.decode(value!, { stream: true });
    }
  }

  /**
   * UNSUBSCRIBEs and closes every client, then ends the generator. A subscription outlives its
   * connection (luod expects it back and refuses the next KEXEC without it), so the next sweep
   * must not find this one's ids expected.
   */
  async close(): Promise<void> {
    await this.command("close");
    this.proc.stdin.end();
    await this.proc.exited;
  }
}

// What luoctl touches outside itself (terminal, environment, /proc/cmdline, luod's socket, SIGINT,
// the clock), as one interface: tests replace parts of it.
import { readFileSync } from "node:fs";
import type { LuoClient } from "../client/client";
import { isTerminal, writeText } from "../kernel/fd";
import { OneShotClient } from "../client/oneshot";
import type { LuoRequests } from "../client/requests";

export interface CtlIo {
  stdout(text: string): void;
  stderr(text: string): void;
  stdoutIsTTY: boolean;
  stderrIsTTY: boolean;
  env: Record<string, string | undefined>;
  readProcCmdline(): string;
  /** A connection with an event loop (kexec: progress events). */
  connect(path: string): Promise<LuoClient>;
  /** A blocking one-request connection for the quick commands (default: connect). */
  connectOnce?(path: string): Promise<LuoRequests>;
  /** Installs a SIGINT handler for the duration of `kexec`; returns its remover. */
  onInterrupt(handler: () => void): () => void;
  now(): number;
}

export function defaultIo(): CtlIo {
  return {
    // synchronous writes: main.ts calls process.exit() right after, which must not lose output
    stdout: (t) => writeText(1, t),
    stderr: (t) => writeText(2, t),
    // not process.stdout.isTTY: loading Bun's tty streams costs ~2 ms of every start
    stdoutIsTTY: isTerminal(1),
    stderrIsTTY: isTerminal(2),
    env: process.env,
    readProcCmdline: () => readFileSync("/proc/cmdline", "utf8"),
    // loaded on demand: the event loop and the schemas are for kexec only, not the quick commands
    connect: async (path) => (await import("../client/client")).LuoClient.connect(path),
    connectOnce: (path) => OneShotClient.connect(path),
    onInterrupt(handler) {
      process.on("SIGINT", handler);
      return () => process.off("SIGINT", handler);
    },
    now: () => Date.now(),
  };
}

// The subscribed clients: found by id and by connection, their states, and luod's own copy of each
// one's session fd (an outgoing session dies with its last fd, docs/kernel.md#session-lifetimes).
import type { KernelPort } from "./kernel-port";
import type { Logger } from "./log";
import { ProtocolError } from "../wire/errors";

/** One connection, as the broker sees it. */
export interface Peer {
  readonly serial: number;
  readonly cred: { pid: number; uid: number; gid: number };
  readonly unit: string | null;
  /** An array goes out in one write, its lines' fds (in order) with its first byte. */
  send(msg: object | readonly object[], fds?: number[]): boolean;
  /** Closes the connection (EVICT); what was queued is flushed first where possible. */
  close?(reason: string): void;
}

export type ClientState = "subscribed" | "prepared" | "preserving" | "ready";
export interface Client {
  id: string;
  /**
   * null: not connected. Its subscription is expected back (it outlives the connection and a luod
   * restart, until UNSUBSCRIBE or EVICT); during an update after READY luod holds its session alone.
   */
  peer: Peer | null;
  /** Captured at SUBSCRIBE: it must outlive the connection, it goes into the manifest. */
  owner: { uid: number; gid: number; pid: number; unit: string | null };
  state: ClientState;
  subscribedAt: Date;
  readyAt: Date | null;
  session: { name: string; fd: number } | null;
  /** The session came from PREPARE: it is not created by the update and survives its abort. */
  prepared: boolean;
}

export class Subscribers {
  private readonly clients = new Map<string, Client>();
  /** The same clients by connection: every request finds its client in O(1). */
  private readonly byPeer = new Map<Peer, Client>();

  constructor(
    private readonly kernel: KernelPort,
    private readonly log: Logger,
  ) {}

  /** Every client, in the order they subscribed. */
  all(): Client[] {
    return [...this.clients.values()];
  }

  get(id: string): Client | undefined {
    return this.clients.get(id);
  }

  clientOf(peer: Peer): Client | undefined {
    return this.byPeer.get(peer);
  }

  /** The client of this connection; `id`, when a request names one, must be its id. */
  requireClient(peer: Peer, id?: string): Client {
    const c = this.clientOf(peer);
    if (!c) throw new ProtocolError("ENOENT", "this connection has not subscribed (send SUBSCRIBE first)");
    if (id !== undefined && id !== c.id) throw new ProtocolError("EINVAL", `this connection is subscribed as ${c.id}, not ${id}`);
    return c;
  }

  add(client: Client): void {
    this.clients.set(client.id, client);
    if (client.peer) this.byPeer.set(client.peer, client);
  }

  /** The client's connection went away: it stays expected (after READY, luod holds its session alone). */
  detach(c: Client): void {
    if (c.peer) this.byPeer.delete(c.peer);
    c.peer = null;
  }

  /** An expected client is back on a new connection. */
  attach(c: Client, peer: Peer): void {
    this.detach(c);
    c.peer = peer;
    this.byPeer.set(peer, c);
  }

  /** Expected clients that are not connected, in the order they subscribed. */
  disconnected(): Client[] {
    return this.all().filter((c) => c.peer === null);
  }

  /** The client leaves the broker; luod's copy of its session (prepared, or held after READY) goes. */
  forget(c: Client): void {
    this.dropSession(c);
    this.clients.delete(c.id);
    if (c.peer) this.byPeer.delete(c.peer);
  }

  dropSession(c: Client): void {
    if (c.session) closeQuietly(this.kernel, this.log, c.session.fd);
    c.session = null;
    c.prepared = false;
  }
}

/** Closes an fd luod holds; a failure is only logged. */
export function closeQuietly(kernel: KernelPort, log: Logger, fd: number): void {
  try {
    kernel.close(fd);
  } catch (e) {
    log.warning(`close(${fd}): ${(e as Error).message}`);
  }
}

/** Ids for a message: the first 20, then how many more. */
export function names(clients: readonly { id: string }[]): string {
  const shown = clients.slice(0, 20).map((c) => c.id).join(", ");
  return clients.length > 20 ? `${shown} and ${clients.length - 20} more` : shown;
}

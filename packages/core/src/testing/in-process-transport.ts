import type { NodeId } from '../log-entry.ts';
import { abortable } from '../runtime/abortable.ts';
import type { PeerHandler, PeerRequest, PeerResponse, Transport } from '../transport.ts';

/** Options of {@link InProcessNetwork}. */
export interface InProcessNetworkOptions {
  /**
   * Delay, on real timers, before a request reaches its peer and again before the answer comes
   * back. Default 0: each hop waits for the next turn of the event loop (`setImmediate`).
   */
  readonly latencyMs?: number;
  /**
   * Structurally clone every request and answer, so that no object or `Uint8Array` is shared
   * between nodes (a node that mutated what it sent or received would be caught). Default true.
   * Benchmarks turn it off: the contracts already make messages and entries immutable.
   */
  readonly copy?: boolean;
}

/** The error a request rejects with when the network does not deliver it. */
export class UnreachableError extends Error {
  override name = 'UnreachableError';
}

/**
 * A network inside one process, for tests of the node runtime on real timers: every node gets a
 * {@link Transport} from {@link InProcessNetwork.transport}, and requests travel between them
 * asynchronously, structurally cloned by default (no `Uint8Array` is shared between nodes).
 *
 * Faults: {@link partition} cuts a node off from every other one, {@link drop} cuts the link
 * between two nodes; both act on requests and on answers still in flight. A request that is
 * not delivered rejects with {@link UnreachableError}, as a refused connection would.
 */
export class InProcessNetwork {
  readonly #latencyMs: number;
  readonly #copy: <T>(value: T) => T;
  readonly #nodes = new Map<NodeId, InProcessTransport>();
  readonly #isolated = new Set<NodeId>();
  readonly #droppedLinks = new Set<string>();

  constructor(options: InProcessNetworkOptions = {}) {
    this.#latencyMs = options.latencyMs ?? 0;
    this.#copy = options.copy === false ? (value) => value : structuredClone;
  }

  /**
   * The transport of node `id`. A node started again gets a new transport for the same id; it
   * replaces the old one, whose requests then fail.
   */
  transport(id: NodeId): InProcessTransport {
    const transport = new InProcessTransport(id, {
      deliver: (from, to, request, signal) => this.#deliver(from, to, request, signal),
      detach: (closing) => {
        if (this.#nodes.get(id) === closing) this.#nodes.delete(id);
      },
      latencyMs: this.#latencyMs,
    });
    this.#nodes.set(id, transport);
    return transport;
  }

  /** Cuts each of `ids` off from every other node until {@link heal}. */
  partition(...ids: NodeId[]): void {
    for (const id of ids) this.#isolated.add(id);
  }

  /** Reconnects `ids` (every node when none is given) and restores every dropped link of theirs. */
  heal(...ids: NodeId[]): void {
    if (ids.length === 0) {
      this.#isolated.clear();
      this.#droppedLinks.clear();
      return;
    }
    for (const id of ids) {
      this.#isolated.delete(id);
      for (const link of [...this.#droppedLinks]) {
        if (link.split('\u0000').includes(id)) this.#droppedLinks.delete(link);
      }
    }
  }

  /** Drops every request and answer between `a` and `b`, both ways, until {@link restore}. */
  drop(a: NodeId, b: NodeId): void {
    this.#droppedLinks.add(linkKey(a, b));
  }

  /** Restores the link between `a` and `b`. */
  restore(a: NodeId, b: NodeId): void {
    this.#droppedLinks.delete(linkKey(a, b));
  }

  /** Whether a request from `from` reaches `to` now (both attached, no fault between them). */
  canReach(from: NodeId, to: NodeId): boolean {
    return (
      this.#nodes.has(to) &&
      !this.#isolated.has(from) &&
      !this.#isolated.has(to) &&
      !this.#droppedLinks.has(linkKey(from, to))
    );
  }

  async #deliver(
    from: NodeId,
    to: NodeId,
    request: PeerRequest,
    signal: AbortSignal,
  ): Promise<PeerResponse> {
    const handler = this.canReach(from, to) ? this.#nodes.get(to)?.handler : undefined;
    if (handler === undefined) throw new UnreachableError(`${to} is unreachable from ${from}`);
    const response = await handler(from, this.#copy(request), { signal });
    if (!this.canReach(to, from))
      throw new UnreachableError(`the answer of ${to} to ${from} was lost`);
    return this.#copy(response);
  }
}

interface NetworkPort {
  deliver(
    from: NodeId,
    to: NodeId,
    request: PeerRequest,
    signal: AbortSignal,
  ): Promise<PeerResponse>;
  detach(transport: InProcessTransport): void;
  latencyMs: number;
}

/** One node's end of an {@link InProcessNetwork}. */
export class InProcessTransport implements Transport {
  readonly id: NodeId;
  readonly #port: NetworkPort;
  #handler: PeerHandler | undefined;
  #closed = false;

  constructor(id: NodeId, port: NetworkPort) {
    this.id = id;
    this.#port = port;
  }

  /** The installed handler, while the transport is open. */
  get handler(): PeerHandler | undefined {
    return this.#closed ? undefined : this.#handler;
  }

  async request(
    to: NodeId,
    request: PeerRequest,
    options: { signal: AbortSignal },
  ): Promise<PeerResponse> {
    const { signal } = options;
    signal.throwIfAborted();
    if (this.#closed) throw new UnreachableError(`the transport of ${this.id} is closed`);
    await hop(this.#port.latencyMs, signal);
    const response = await abortable(this.#port.deliver(this.id, to, request, signal), signal);
    await hop(this.#port.latencyMs, signal);
    if (this.#closed) throw new UnreachableError(`the transport of ${this.id} is closed`);
    return response;
  }

  listen(handler: PeerHandler): void {
    this.#handler = handler;
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#port.detach(this);
  }
}

function linkKey(a: NodeId, b: NodeId): string {
  return a < b ? `${a}\u0000${b}` : `${b}\u0000${a}`;
}

function hop(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = (): void => {
      if (ms > 0) clearTimeout(timer as ReturnType<typeof setTimeout>);
      else clearImmediate(timer as ReturnType<typeof setImmediate>);
      reject(signal.reason);
    };
    const done = (): void => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    };
    const timer = ms > 0 ? setTimeout(done, ms) : setImmediate(done);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

import type { NodeId } from '../../log-entry.ts';
import type { InstallSnapshot, Message } from '../../message.ts';
import type { PeerHandler, PeerRequest, PeerResponse, Transport } from '../../transport.ts';
import type { SimNetwork } from './sim-network.ts';
import type { SimProcess } from './sim-process.ts';
import type { VirtualTime } from './virtual-time.ts';

/** Who listens at each address of the simulated network. */
export class SimSwitchboard {
  readonly time: VirtualTime;
  readonly network: SimNetwork;
  /** Hears of every Raft message a live process puts on the network, as it sends it. */
  readonly sent: (from: NodeId, messages: readonly Message[]) => void;
  /** Hears of a follower answering that it holds the whole of the snapshot `message` sent. */
  readonly snapshotHeld: (from: NodeId, message: InstallSnapshot) => void;
  readonly #listeners = new Map<NodeId, { process: SimProcess; handler: PeerHandler }>();

  constructor(
    time: VirtualTime,
    network: SimNetwork,
    hooks: {
      sent?: (from: NodeId, messages: readonly Message[]) => void;
      snapshotHeld?: (from: NodeId, message: InstallSnapshot) => void;
    } = {},
  ) {
    this.time = time;
    this.network = network;
    this.sent = hooks.sent ?? (() => {});
    this.snapshotHeld = hooks.snapshotHeld ?? (() => {});
  }

  listen(id: NodeId, process: SimProcess, handler: PeerHandler): void {
    this.#listeners.set(id, { process, handler });
  }

  /** Stops `process` listening at `id` (another process may listen there since). */
  unlisten(id: NodeId, process: SimProcess): void {
    if (this.#listeners.get(id)?.process === process) this.#listeners.delete(id);
  }

  /** The live listener at `id`, if any. */
  listener(id: NodeId): { process: SimProcess; handler: PeerHandler } | undefined {
    const listener = this.#listeners.get(id);
    return listener?.process.alive === true ? listener : undefined;
  }
}

/**
 * The transport of one process: a request crosses the {@link SimNetwork} (which may lose, delay,
 * duplicate or block it), the listener at the other end handles it, and its response crosses
 * back the same way. A lost request or response shows as no answer: the request settles only
 * when its signal aborts (its deadline), as over TCP. A process that died sends nothing and
 * hears nothing back. A rejection of the handler reaches the requester as its own.
 */
export class SimTransport implements Transport {
  readonly #id: NodeId;
  readonly #process: SimProcess;
  readonly #switchboard: SimSwitchboard;

  constructor(id: NodeId, process: SimProcess, switchboard: SimSwitchboard) {
    this.#id = id;
    this.#process = process;
    this.#switchboard = switchboard;
  }

  listen(handler: PeerHandler): void {
    this.#switchboard.listen(this.#id, this.#process, handler);
  }

  async close(): Promise<void> {
    this.#switchboard.unlisten(this.#id, this.#process);
  }

  request(
    to: NodeId,
    request: PeerRequest,
    options: { signal: AbortSignal },
  ): Promise<PeerResponse> {
    const { signal } = options;
    if (signal.aborted) return Promise.reject(signal.reason);
    if (!this.#process.alive) return new Promise(() => {});
    const board = this.#switchboard;
    const from = this.#id;
    if (request.type === 'raft') board.sent(from, request.messages);
    return new Promise<PeerResponse>((resolve, reject) => {
      let settled = false;
      const onAbort = (): void => {
        if (settled) return;
        settled = true;
        reject(signal.reason);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      const answer = (settle: () => void): void => {
        // The answer crosses back to the requester, on its clock: a dead requester hears nothing.
        const [delay] = board.network.deliveries(to, from);
        if (delay === undefined) return;
        this.#process.clock.setTimer(() => {
          if (settled) return;
          settled = true;
          signal.removeEventListener('abort', onAbort);
          settle();
        }, delay);
      };
      for (const delay of board.network.deliveries(from, to)) {
        // A request in flight outlives its sender: it runs on the network's time.
        board.time.at(delay, () => {
          const listener = board.listener(to);
          if (listener === undefined) return;
          // The receiver gets its own copy of a snapshot's piece, as off a wire.
          const received = request.type === 'snapshot' ? structuredClone(request) : request;
          listener.handler(from, received, { signal }).then(
            (response) => {
              if (!listener.process.alive) return;
              if (response.type === 'raft') board.sent(to, response.messages);
              if (
                request.type === 'snapshot' &&
                response.type === 'snapshot-progress' &&
                response.received === request.chunk.size
              ) {
                board.snapshotHeld(to, request.message);
              }
              answer(() => resolve(response));
            },
            (error: unknown) => {
              if (listener.process.alive) answer(() => reject(error));
            },
          );
        });
      }
    });
  }
}

import type { NodeId } from '../log-entry.ts';
import { type RandomSource, seededRandom } from '../random.ts';
import type { PeerRequest, PeerResponse, Transport } from '../transport.ts';
import { delay } from './delay.ts';
import { UnreachableError } from './in-process-transport.ts';

/**
 * Injects network faults into real transports, for tests of a cluster over its real wire: wrap
 * each node's transport with {@link wrap}, then drop, delay, partition and heal at will. Faults act
 * on requests, by sender and receiver:
 * - a blocked link rejects at once with {@link UnreachableError}, like a refused connection;
 * - a dropped request is never sent: it waits for the caller's deadline (its `signal`), like a
 *   lost packet;
 * - a delay holds a request back for a random time before sending it, which also reorders.
 * Random choices come from a seeded generator, so a failing test can be replayed with its seed.
 */
export class FaultInjector {
  readonly #random: RandomSource;
  readonly #blocked = new Set<string>();
  #dropRate = 0;
  #minDelayMs = 0;
  #maxDelayMs = 0;

  constructor(options: { seed?: number } = {}) {
    this.#random = seededRandom(options.seed ?? 1);
  }

  /** Drops each request with probability `rate` (0 to 1). */
  drop(rate: number): void {
    if (!(rate >= 0 && rate <= 1)) throw new RangeError('the drop rate must be between 0 and 1');
    this.#dropRate = rate;
  }

  /** Delays each request by a random time in [minMs, maxMs]. */
  delay(minMs: number, maxMs: number): void {
    if (!(minMs >= 0 && maxMs >= minMs)) throw new RangeError('need 0 <= minMs <= maxMs');
    this.#minDelayMs = minMs;
    this.#maxDelayMs = maxMs;
  }

  /** Cuts requests from `from` to `to` (one direction; block both for a symmetric cut). */
  block(from: NodeId, to: NodeId): void {
    this.#blocked.add(`${from}>${to}`);
  }

  /** Splits the nodes into groups whose members cannot reach the other groups, both ways. */
  partition(...groups: readonly (readonly NodeId[])[]): void {
    for (const a of groups) {
      for (const b of groups) {
        if (a === b) continue;
        for (const from of a) for (const to of b) this.block(from, to);
      }
    }
  }

  /** Removes every fault: links, drops and delays. */
  heal(): void {
    this.#blocked.clear();
    this.#dropRate = 0;
    this.#minDelayMs = 0;
    this.#maxDelayMs = 0;
  }

  /** `transport`, with this injector's faults applied to the requests node `id` sends. */
  wrap(id: NodeId, transport: Transport): Transport {
    return {
      request: (to, request, options) => this.#request(id, to, request, options, transport),
      listen: (handler) => transport.listen(handler),
      close: () => transport.close?.() ?? Promise.resolve(),
    };
  }

  async #request(
    from: NodeId,
    to: NodeId,
    request: PeerRequest,
    options: { signal: AbortSignal },
    transport: Transport,
  ): Promise<PeerResponse> {
    if (this.#blocked.has(`${from}>${to}`)) {
      throw new UnreachableError(`fault injected: ${from} cannot reach ${to}`);
    }
    if (this.#random.next() < this.#dropRate) {
      await new Promise((_, reject) => {
        options.signal.throwIfAborted();
        options.signal.addEventListener('abort', () => reject(options.signal.reason), {
          once: true,
        });
      });
    }
    const span = this.#maxDelayMs - this.#minDelayMs;
    const wait = this.#minDelayMs + this.#random.next() * span;
    if (wait > 0) await delay(wait, options.signal);
    return transport.request(to, request, options);
  }
}

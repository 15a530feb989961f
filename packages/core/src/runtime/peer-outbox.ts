import type { NodeId } from '../log-entry.ts';
import type { Message } from '../message.ts';

/**
 * Raft messages waiting to go to one peer. A node keeps at most `maxRequests` requests in flight
 * per peer; messages produced meanwhile wait here and leave together in the next request, so
 * under load the number of requests stays bounded while each carries more (batching across
 * Readies). Raft tolerates loss, so when more than `maxQueued` wait, the oldest are dropped.
 */
export class PeerOutbox {
  readonly #maxRequests: number;
  readonly #maxQueued: number;
  readonly #boxes = new Map<NodeId, { queue: Message[]; inFlight: number }>();

  constructor(options: { maxRequests: number; maxQueued: number }) {
    this.#maxRequests = options.maxRequests;
    this.#maxQueued = options.maxQueued;
  }

  /** Queues `messages` for `peer`. */
  push(peer: NodeId, messages: readonly Message[]): void {
    const box = this.#box(peer);
    box.queue.push(...messages);
    if (box.queue.length > this.#maxQueued) box.queue.splice(0, box.queue.length - this.#maxQueued);
  }

  /**
   * Takes the next batch for `peer` if a request may start now, and counts it in flight; the
   * caller must call {@link done} when that request settles.
   */
  take(peer: NodeId): Message[] | undefined {
    const box = this.#box(peer);
    if (box.inFlight >= this.#maxRequests || box.queue.length === 0) return undefined;
    box.inFlight++;
    return box.queue.splice(0);
  }

  done(peer: NodeId): void {
    const box = this.#box(peer);
    box.inFlight = Math.max(0, box.inFlight - 1);
  }

  #box(peer: NodeId): { queue: Message[]; inFlight: number } {
    let box = this.#boxes.get(peer);
    if (box === undefined) {
      box = { queue: [], inFlight: 0 };
      this.#boxes.set(peer, box);
    }
    return box;
  }
}

import type { NodeId } from '../../log-entry.ts';
import { type RandomSource, randomInt } from '../../random.ts';

/** Per-message fault probabilities and delays of a simulated network. */
export interface NetworkFaults {
  /** Probability that a message is lost. */
  readonly drop: number;
  /** Probability that a message is delivered twice. */
  readonly duplicate: number;
  /** Delivery delay range in virtual ms; random delays reorder messages. */
  readonly minDelayMs: number;
  readonly maxDelayMs: number;
  /** Probability that a message is held back ten times longer than usual. */
  readonly longDelay: number;
}

export const CALM_NETWORK: NetworkFaults = Object.freeze({
  drop: 0,
  duplicate: 0,
  minDelayMs: 1,
  maxDelayMs: 3,
  longDelay: 0,
});

/**
 * A simulated network: per-link blocking (partitions, also asymmetric) and random loss,
 * duplication, delay and reordering, all drawn from the simulation's seeded generator.
 */
export class SimNetwork {
  readonly #random: RandomSource;
  #faults: NetworkFaults;
  readonly #blocked = new Set<string>();

  constructor(random: RandomSource, faults: NetworkFaults) {
    this.#random = random;
    this.#faults = faults;
  }

  set faults(faults: NetworkFaults) {
    this.#faults = faults;
  }

  /** Cuts the link from `from` to `to` (one direction only). */
  block(from: NodeId, to: NodeId): void {
    this.#blocked.add(`${from}>${to}`);
  }

  /** Splits the nodes into groups that cannot talk to each other, both ways. */
  partition(groups: readonly (readonly NodeId[])[]): void {
    for (const a of groups) {
      for (const b of groups) {
        if (a === b) continue;
        for (const from of a) for (const to of b) this.block(from, to);
      }
    }
  }

  heal(): void {
    this.#blocked.clear();
  }

  isBlocked(from: NodeId, to: NodeId): boolean {
    return this.#blocked.has(`${from}>${to}`);
  }

  get partitioned(): boolean {
    return this.#blocked.size > 0;
  }

  /** Delays of the copies of one message to deliver: none (lost or blocked), one, or two. */
  deliveries(from: NodeId, to: NodeId): number[] {
    if (this.isBlocked(from, to)) return [];
    const f = this.#faults;
    if (this.#random.next() < f.drop) return [];
    const copies = this.#random.next() < f.duplicate ? 2 : 1;
    const delays: number[] = [];
    for (let i = 0; i < copies; i++) {
      let delay = randomInt(this.#random, f.minDelayMs, f.maxDelayMs + 1);
      if (this.#random.next() < f.longDelay) delay *= 10;
      delays.push(delay);
    }
    return delays;
  }
}

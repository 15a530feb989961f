/**
 * A leader's lease (thesis 6.4.1), in ticks. Every heartbeat round the leader broadcasts is
 * recorded with the tick it left at; once a quorum acknowledged a round, no other leader can be
 * elected until an election timeout after those voters received it (with CheckQuorum they refuse
 * votes that long), and they received it no earlier than it left. So the lease runs
 * `leaseTicks` from the round's departure, `leaseTicks` being an election timeout shortened for
 * clock drift and tick granularity (see `EngineTuning.leaseReads`).
 */
export class LeaderLease {
  readonly #leaseTicks: number;
  /**
   * Round -> the tick it was broadcast at, for rounds not yet superseded by a confirmed one. Rounds
   * are recorded in ascending order with ticks that never go back, so the Map's insertion order is
   * oldest first and pruning stops at the first entry it keeps: each round costs O(1) amortized,
   * however many rounds a lease spans (thousands per second under ReadIndex load).
   */
  #sentAt = new Map<number, number>();

  constructor(options: { electionTicks: number; maxClockDrift: number }) {
    const { electionTicks, maxClockDrift } = options;
    this.#leaseTicks = Math.floor((electionTicks - 1) / (1 + maxClockDrift)) - 1;
  }

  /** Ticks a lease lasts from the departure of the round that a quorum acknowledged. */
  get leaseTicks(): number {
    return this.#leaseTicks;
  }

  /** Records that `round` left at `tick`; rounds too old to give a lease any more are dropped. */
  roundSent(round: number, tick: number): void {
    for (const [old, sent] of this.#sentAt) {
      if (tick - sent <= this.#leaseTicks) break;
      this.#sentAt.delete(old);
    }
    this.#sentAt.set(round, tick);
  }

  /** Whether the lease that `confirmedRound` gives still holds at tick `now`. */
  holds(confirmedRound: number, now: number): boolean {
    for (const round of this.#sentAt.keys()) {
      if (round >= confirmedRound) break;
      this.#sentAt.delete(round);
    }
    const sent = this.#sentAt.get(confirmedRound);
    return sent !== undefined && now - sent <= this.#leaseTicks;
  }

  /** A new term of leadership: no round of an earlier one gives a lease. */
  reset(): void {
    this.#sentAt.clear();
  }
}

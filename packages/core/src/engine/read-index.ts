import type { ClusterConfig } from '../configuration.ts';
import type { NodeId } from '../log-entry.ts';
import { hasQuorum, quorumIndex } from './quorum.ts';

/** A linearizable read waiting on the leader for its heartbeat round to be confirmed. */
export interface PendingRead {
  readonly id: string;
  /** Node that asked: the leader itself, or a follower that forwarded the read. */
  readonly origin: NodeId;
  /** The leader's commit index when the read arrived: the read index (thesis 6.4). */
  readonly index: number;
  readonly round: number;
}

/**
 * ReadIndex bookkeeping on a leader (thesis 6.4). Reads are grouped into heartbeat rounds: every
 * read that arrives before the next heartbeat broadcast joins the same round. A round is
 * confirmed once a quorum has answered a heartbeat of that round or a later one, which proves
 * that no other leader could have committed anything at the time the read arrived.
 */
export class ReadIndexTracker {
  #sentRound = 0;
  #reads: PendingRead[] = [];
  readonly #acked = new Map<NodeId, number>();

  /** The latest heartbeat round broadcast in this term (0: none yet). */
  get sentRound(): number {
    return this.#sentRound;
  }

  /** Queues a read; it waits for the next round to be broadcast. */
  add(id: string, origin: NodeId, index: number): void {
    this.#reads.push({ id, origin, index, round: this.#sentRound + 1 });
  }

  /** Whether reads wait for a round that has not been broadcast yet. */
  get hasRoundToSend(): boolean {
    const last = this.#reads.at(-1);
    return last !== undefined && last.round > this.#sentRound;
  }

  /** The round to broadcast now, if reads wait for one; marks it sent. */
  takeRoundToSend(): number | undefined {
    const last = this.#reads.at(-1);
    if (last === undefined || last.round <= this.#sentRound) return undefined;
    this.#sentRound = last.round;
    return this.#sentRound;
  }

  /**
   * The round a periodic heartbeat carries: a new one, marked sent. Any heartbeat sent after a
   * read arrived may confirm it, so a later round lets a quorum confirm reads whose first
   * broadcast (or its answers) was lost, instead of leaving them to time out; and every
   * broadcast having its own round tells a lease when a quorum last heard from the leader.
   */
  nextRound(): number {
    this.#sentRound++;
    return this.#sentRound;
  }

  /** The latest round that a quorum (with `self`) has acknowledged; 0 when none. */
  confirmedRound(config: ClusterConfig, self: NodeId): number {
    const round = quorumIndex(config, (id) =>
      id === self ? this.#sentRound : (this.#acked.get(id) ?? 0),
    );
    return Math.min(round, this.#sentRound);
  }

  /** Records that `from` answered a heartbeat of `round` in the current term. */
  acknowledge(from: NodeId, round: number): void {
    if (round > (this.#acked.get(from) ?? 0)) this.#acked.set(from, round);
  }

  /** Removes and returns the reads whose round a quorum (with `self`) has confirmed, in order. */
  takeConfirmed(config: ClusterConfig, self: NodeId): PendingRead[] {
    let n = 0;
    while (n < this.#reads.length) {
      const round = this.#reads[n]?.round ?? 0;
      const confirmed = hasQuorum(
        config,
        (id) => id === self || (this.#acked.get(id) ?? 0) >= round,
      );
      if (!confirmed) break;
      n++;
    }
    return this.#reads.splice(0, n);
  }

  /** Removes every pending read (leadership lost): the caller must fail them. */
  takeAll(): PendingRead[] {
    const reads = this.#reads;
    this.#reads = [];
    this.#acked.clear();
    return reads;
  }
}

import { linkedSignal } from './abortable.ts';
import type { Clock } from './clock.ts';
import { ConditionWaiters } from './condition-waiters.ts';

/** What waiting for a leader needs from the node it serves. */
export interface LeaderWaitOptions {
  /** Whether this node knows a leader of its current term (itself included). */
  readonly leaderKnown: () => boolean;
  /** How long a call waits for a leader to be known (`RaftNodeOptions.leaderWaitMs`). */
  readonly leaderWaitMs: number;
  /** Aborted when the node stops: ends every wait. */
  readonly lifetime: AbortSignal;
  /** Measures the wait. */
  readonly clock: Clock;
}

/**
 * Calls that need a leader and find this node knowing none (right after it started, during an
 * election) wait here for one to become known, up to `leaderWaitMs`: a leader normally appears
 * within an election timeout or two, and a client that does not move to another node by itself
 * would otherwise fail at once. The node calls {@link observe} at every tick and whenever the
 * leader it knows may have changed.
 */
export class LeaderWait {
  readonly #o: LeaderWaitOptions;
  readonly #waiters = new ConditionWaiters();

  constructor(options: LeaderWaitOptions) {
    this.#o = options;
  }

  /**
   * Resolves with true once a leader is known (at once if one is), with false once
   * `leaderWaitMs` passed without one. Rejects with the reason of `signal`, or of the node's
   * lifetime, when either aborts first.
   */
  async known(signal: AbortSignal | undefined): Promise<boolean> {
    const o = this.#o;
    if (o.leaderKnown()) return true;
    signal?.throwIfAborted();
    if (o.leaderWaitMs <= 0) return false;
    using wait = linkedSignal({
      parents: [signal, o.lifetime],
      clock: o.clock,
      timeoutMs: o.leaderWaitMs,
    });
    try {
      return await this.#waiters.until(wait.signal, () => (o.leaderKnown() ? true : undefined));
    } catch (error) {
      if (wait.timedOut) return false;
      throw error;
    }
  }

  /** Ends the waits that a leader now known satisfies. */
  observe(): void {
    this.#waiters.observe();
  }
}

import type { RaftEngine } from '../engine/raft-engine.ts';
import { LeadershipTransferError, NotLeaderError } from '../errors.ts';
import type { NodeId } from '../log-entry.ts';
import type { Logger } from '../logger.ts';
import { linkedSignal } from './abortable.ts';
import type { Clock } from './clock.ts';
import { ConditionWaiters } from './condition-waiters.ts';

/** Options of `RaftNode.transferLeadership`. */
export interface TransferLeadershipOptions {
  /** Stops waiting (rejecting with the signal's reason); the transfer runs on to its timeout. */
  readonly signal?: AbortSignal;
  /**
   * How long the target has to take over before the leader resumes and the call fails with
   * {@link LeadershipTransferError}. Default: one election timeout (`electionTicks` ticks).
   */
  readonly timeoutMs?: number;
}

/** What leadership transfers need from the node they serve. */
export interface LeadershipTransfersOptions {
  readonly engine: RaftEngine;
  readonly id: NodeId;
  readonly logger: Logger;
  readonly tickMs: number;
  readonly electionTicks: number;
  /** Aborted when the node stops. */
  readonly lifetime: AbortSignal;
  /** Measures deadlines. */
  readonly clock: Clock;
  readonly kick: () => void;
  readonly throwIfStopped: () => void;
}

/**
 * Leadership transfers on behalf of a {@link RaftNode} (thesis 3.10). The node calls
 * {@link observe} after every tick and every Ready it carries out.
 */
export class LeadershipTransfers {
  readonly #o: LeadershipTransfersOptions;
  readonly #waiters = new ConditionWaiters();

  constructor(options: LeadershipTransfersOptions) {
    this.#o = options;
  }

  /**
   * Hands leadership over to `to` (or to the most up-to-date voter) and resolves with the new
   * leader's id once this node knows it. Rejects with {@link NotLeaderError} on a follower,
   * {@link LeadershipTransferError} when the target did not take over in time (this node leads
   * on), when another transfer is under way, or when there is no other voter; a `TypeError` for
   * a target that cannot lead.
   */
  async transfer(to: NodeId | undefined, options: TransferLeadershipOptions = {}): Promise<NodeId> {
    const o = this.#o;
    o.throwIfStopped();
    options.signal?.throwIfAborted();
    const timeoutTicks =
      options.timeoutMs === undefined
        ? o.electionTicks
        : Math.max(1, Math.ceil(options.timeoutMs / o.tickMs));
    const before = o.engine.status();
    const result = o.engine.transferLeadership({
      ...(to === undefined ? {} : { to }),
      timeoutTicks,
    });
    if (!result.ok) {
      switch (result.reason) {
        case 'not-leader':
          throw new NotLeaderError(result.leaderHint);
        case 'transferring':
          throw new LeadershipTransferError(
            `a leadership transfer to ${before.leadTransferee} is under way`,
          );
        case 'no-target':
          throw new LeadershipTransferError('there is no other voter to hand leadership over to', {
            retryable: false,
          });
      }
    }
    o.logger.info({ target: result.target, term: before.term }, 'leadership transfer started');
    o.kick();
    // Past the engine's own timeout, an election may still be running: allow one more election
    // timeout for this node to learn who won.
    using deadline = linkedSignal({
      parents: [options.signal, o.lifetime],
      clock: o.clock,
      timeoutMs: (timeoutTicks + 2 * o.electionTicks) * o.tickMs,
    });
    const signal = deadline.signal;
    try {
      return await this.#waiters.until(signal, () => {
        const s = o.engine.status();
        if (s.role === 'leader' && s.term === before.term) {
          if (s.leadTransferee !== null) return undefined;
          throw new LeadershipTransferError(
            `${result.target} did not take over within ${timeoutTicks * o.tickMs} ms; ${o.id} leads on`,
          );
        }
        return s.leaderId === null || s.leaderId === o.id ? undefined : s.leaderId;
      });
    } catch (error) {
      options.signal?.throwIfAborted();
      o.throwIfStopped();
      if (deadline.timedOut) {
        throw new LeadershipTransferError(
          `${o.id} stepped down for ${result.target}, but learned of no new leader in time`,
          { cause: error },
        );
      }
      throw error;
    }
  }

  /** A tick passed or a Ready was carried out: settles the transfers that ended. */
  observe(): void {
    this.#waiters.observe();
  }
}

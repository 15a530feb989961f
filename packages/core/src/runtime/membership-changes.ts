import { type ClusterConfig, isJoint, members } from '../configuration.ts';
import type { ChangeMode, MembershipChange } from '../engine/membership-change.ts';
import type { RaftEngine } from '../engine/raft-engine.ts';
import {
  ConfigChangeInProgressError,
  MembershipChangeTimeoutError,
  NotLeaderError,
} from '../errors.ts';
import type { NodeId } from '../log-entry.ts';
import type { Logger } from '../logger.ts';
import type { Transport } from '../transport.ts';
import { linkedSignal } from './abortable.ts';
import type { Clock } from './clock.ts';
import { ConditionWaiters } from './condition-waiters.ts';
import { ProposalTracker } from './proposal-tracker.ts';

/** Options of the membership calls of `RaftNode`. */
export interface MembershipCallOptions {
  /** Abandons the wait (rejecting with the signal's reason); the change may still take effect. */
  readonly signal?: AbortSignal;
  /**
   * Deadline of the whole call: past it the call rejects with
   * {@link MembershipChangeTimeoutError} (the change may still take effect). Default 10,000 ms.
   */
  readonly timeoutMs?: number;
}

/** Options of `RaftNode.changeMembership`. */
export interface ChangeMembershipOptions extends MembershipCallOptions {
  /** `auto` (default): one step for a change of at most one voter, joint consensus otherwise. */
  readonly mode?: ChangeMode;
}

/** Options of `RaftNode.addLearner`. */
export interface AddLearnerOptions extends MembershipCallOptions {
  /**
   * Make it a voter, by a membership change of the leader's own, once its log is within
   * `EngineTuning.promotionLagEntries` of the leader's. Default false.
   */
  readonly promote?: boolean;
  /**
   * The URL the new member listens at, carried in the configuration so that every member's
   * transport learns it (`Transport.updatePeers`).
   */
  readonly url?: string;
}

/** What membership changes need from the node they serve. */
export interface MembershipChangesOptions {
  readonly engine: RaftEngine;
  readonly transport: Transport;
  readonly logger: Logger;
  /** Aborted when the node stops. */
  readonly lifetime: AbortSignal;
  /** Measures deadlines. */
  readonly clock: Clock;
  readonly kick: () => void;
  readonly throwIfStopped: () => void;
  /** Tells the node's listeners that the configuration in effect changed. */
  readonly configChanged: (config: ClusterConfig, index: number) => void;
  /**
   * A committed configuration leaves this node out: it receives no entries any more, so what it
   * waits for beyond `commitIndex` will never be settled here.
   */
  readonly removed: (commitIndex: number) => void;
}

const DEFAULT_TIMEOUT_MS = 10_000;
/** The outcome the tracker gives a configuration entry once it is applied. */
const APPLIED = { status: 'ok', value: undefined } as const;

/**
 * Membership changes on behalf of a {@link RaftNode} (Raft paper 6, thesis 4): asks the engine
 * for them, resolves each call once its change is committed (for a joint change: once C_new
 * is), and follows the configuration in effect, telling the transport the members' addresses.
 * The node calls {@link observe} after every Ready it carries out and every apply batch.
 */
export class MembershipChanges {
  readonly #o: MembershipChangesOptions;
  /** Configuration entries this node appended as leader, until applied or overwritten. */
  readonly #entries = new ProposalTracker<undefined>();
  readonly #waiters = new ConditionWaiters();
  #seenConfigIndex = -1;
  #seenConfig: ClusterConfig | undefined;
  /** This node was a member of a configuration it used. */
  #wasMember = false;
  #removedAt = -1;

  constructor(options: MembershipChangesOptions) {
    this.#o = options;
  }

  /**
   * Changes the membership to `change` and resolves with the configuration once it is committed
   * (C_new, for a joint change). Rejects with {@link NotLeaderError} on a follower,
   * {@link ConfigChangeInProgressError} while another change is under way,
   * `ProposalDroppedError` when a new leader overwrote the entry (retry),
   * {@link MembershipChangeTimeoutError} past the deadline; a `TypeError` for an invalid change.
   */
  async change(
    change: MembershipChange,
    options: ChangeMembershipOptions = {},
  ): Promise<ClusterConfig> {
    this.#o.throwIfStopped();
    options.signal?.throwIfAborted();
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    using deadline = linkedSignal({
      parents: [options.signal, this.#o.lifetime],
      clock: this.#o.clock,
      timeoutMs,
    });
    try {
      return await this.#change(change, options.mode ?? 'auto', deadline.signal);
    } catch (error) {
      options.signal?.throwIfAborted();
      this.#o.throwIfStopped();
      if (deadline.timedOut) {
        throw new MembershipChangeTimeoutError(
          `the membership change did not complete within ${timeoutMs} ms; it may still take effect (status() shows the configuration)`,
          { cause: error },
        );
      }
      throw error;
    }
  }

  /** The change to add `id` as a learner of the leader's configuration. */
  addLearnerChange(id: NodeId, options: AddLearnerOptions): MembershipChange {
    if (options.url !== undefined && !URL.canParse(options.url)) {
      throw new TypeError(`the url of ${id} is not a URL: ${options.url}`);
    }
    const config = this.#leaderConfig();
    if (config.voters.includes(id)) throw new TypeError(`${id} is a voter already`);
    const learners = (config.learners ?? []).filter((l) => l !== id);
    const autoPromote = (config.autoPromote ?? []).filter((l) => l !== id);
    return {
      voters: config.voters,
      learners: [...learners, id],
      autoPromote: options.promote === true ? [...autoPromote, id] : autoPromote,
      ...(options.url === undefined ? {} : { addresses: { [id]: options.url } }),
    };
  }

  /** The change that removes `id` (a voter or a learner) from the leader's configuration. */
  removeChange(id: NodeId): MembershipChange {
    const config = this.#leaderConfig();
    if (!members(config).includes(id)) throw new TypeError(`${id} is not a member of the cluster`);
    const without = (ids: readonly NodeId[] = []) => ids.filter((other) => other !== id);
    return {
      voters: without(config.voters),
      learners: without(config.learners),
      autoPromote: without(config.autoPromote),
    };
  }

  /** The node carried out a Ready or applied entries: settles what waits, follows the config. */
  observe(): void {
    const { id, config, configIndex, commitIndex } = this.#o.engine.status();
    if (configIndex !== this.#seenConfigIndex || config !== this.#seenConfig) {
      this.#seenConfigIndex = configIndex;
      this.#seenConfig = config;
      this.#o.transport.updatePeers?.(config.addresses ?? {});
      this.#o.configChanged(config, configIndex);
    }
    const member = members(config).includes(id);
    if (member) this.#wasMember = true;
    if (this.#wasMember && !member && configIndex <= commitIndex) {
      if (this.#removedAt !== configIndex) {
        this.#removedAt = configIndex;
        this.#o.logger.warn(
          { configIndex, config },
          'this node was removed from the cluster: it takes part no more; stop it, or add it back (as a learner)',
        );
        this.#o.removed(commitIndex);
      }
    } else {
      this.#removedAt = -1;
    }
    this.#waiters.observe();
  }

  /** A configuration entry was applied. */
  applied(index: number, term: number): void {
    this.#entries.applied(index, term, APPLIED);
  }

  /** The log was cut at `from` (a new leader overwrote it). */
  truncatedFrom(from: number): void {
    this.#entries.truncatedFrom(from);
  }

  /** A snapshot from the leader replaced the log up to `upTo`. */
  replacedBySnapshot(upTo: number): void {
    this.#entries.replacedBySnapshot(upTo);
  }

  failAll(error: unknown): void {
    this.#entries.failAll(error);
  }

  async #change(
    change: MembershipChange,
    mode: ChangeMode,
    signal: AbortSignal,
  ): Promise<ClusterConfig> {
    const engine = this.#o.engine;
    for (;;) {
      const result = engine.proposeConfigChange(change, { mode });
      if (result.ok) {
        this.#o.logger.info(
          { index: result.index, term: result.term, joint: result.joint, change },
          'membership change proposed',
        );
        const applied = this.#entries.add(result.index, result.term, signal);
        this.#o.kick();
        await applied;
        if (!result.joint) return this.#configAt(result.index);
        // C_old,new is committed: the leader (this one or the next) appends C_new by itself.
        await this.#until(signal, () => {
          const s = engine.status();
          return (
            s.configIndex > result.index && !isJoint(s.config) && s.configIndex <= s.commitIndex
          );
        });
        return engine.status().config;
      }
      switch (result.reason) {
        case 'not-leader':
          throw new NotLeaderError(result.leaderHint);
        case 'transferring':
          throw new NotLeaderError(result.target, {
            cause: new Error(`leadership is being handed over to ${result.target}`),
          });
        case 'change-in-progress':
          throw new ConfigChangeInProgressError();
        case 'leader-not-ready': {
          // Thesis 4.1: wait until this leader has committed an entry of its term (its no-op),
          // then ask again.
          const { term } = engine.status();
          await this.#until(signal, () => {
            const s = engine.status();
            return s.term !== term || engine.entry(s.commitIndex)?.term === term;
          });
        }
      }
    }
  }

  /** The configuration as of `index`, or the latest if the log no longer reaches back there. */
  #configAt(index: number): ClusterConfig {
    const engine = this.#o.engine;
    return index >= engine.status().firstIndex - 1
      ? engine.configAt(index)
      : engine.status().config;
  }

  #leaderConfig(): ClusterConfig {
    const s = this.#o.engine.status();
    if (s.role !== 'leader') throw new NotLeaderError(s.leaderId);
    return s.config;
  }

  /** Resolves once `condition` holds at an observation; `signal` abandons the wait. */
  async #until(signal: AbortSignal, condition: () => boolean): Promise<void> {
    await this.#waiters.until(signal, () => (condition() ? true : undefined));
  }
}

import type { ClusterConfig } from '../configuration.ts';
import type { HardState } from '../hard-state.ts';
import type { LogEntry, LogPosition, NodeId } from '../log-entry.ts';
import type { Logger } from '../logger.ts';
import type { RandomSource } from '../random.ts';

/** Tunables of the Raft engine. Every field has a default ({@link DEFAULT_ENGINE_TUNING}). */
export interface EngineTuning {
  /**
   * Ticks without hearing from a leader before a follower starts an election. The actual timeout
   * is drawn at random from [electionTicks, 2 * electionTicks) on every reset (Raft paper 5.2).
   * Default 10 (with the node's default 100 ms tick: 1,000-2,000 ms).
   */
  readonly electionTicks: number;
  /** Ticks between a leader's heartbeats. Default 3. Must be less than `electionTicks`. */
  readonly heartbeatTicks: number;
  /** Run a pre-vote before a real election (thesis 9.6). Default true. */
  readonly preVote: boolean;
  /**
   * A leader that has not heard from a quorum within an election timeout steps down, and a
   * follower that heard from a leader within one ignores vote requests (thesis 4.2.3, 6.2).
   * Default true.
   */
  readonly checkQuorum: boolean;
  /** AppendEntries in flight per follower before the leader waits for acks. Default 256. */
  readonly maxInflightMessages: number;
  /** Bytes in flight per follower before the leader waits for acks. Default 32 MiB. */
  readonly maxInflightBytes: number;
  /** Entries per AppendEntries message. Default 1024. */
  readonly maxEntriesPerMessage: number;
  /** Bytes of entries per AppendEntries message (at least one entry is always sent). Default 1 MiB. */
  readonly maxBytesPerMessage: number;
  /** Uncommitted bytes a leader accepts before proposals fail with backpressure. Default 64 MiB. */
  readonly maxUncommittedBytes: number;
  /** Bytes of committed entries handed out to apply per batch. Default 4 MiB. */
  readonly maxApplyBytes: number;
  /**
   * A learner listed in `autoPromote` becomes a voter once it acknowledged entries (or a
   * snapshot) up to at most this many entries behind the leader's last index: one that
   * acknowledged nothing yet is not promoted, however short the leader's log. Default 64.
   */
  readonly promotionLagEntries: number;
  /**
   * Lease reads (thesis 6.4.1): a leader answers a lease read at once, without a heartbeat round,
   * while a quorum acknowledged a heartbeat it sent less than `leaseTicks` ticks ago, where
   * `leaseTicks = floor((electionTicks - 1) / (1 + maxClockDrift)) - 1`. Needs `checkQuorum`:
   * voters then refuse any vote for an election timeout after hearing from the leader, so no
   * other leader can be elected during the lease. Default false.
   *
   * Safe only under these assumptions, which the engine cannot check:
   * - every voter runs the same `electionTicks`, with the same tick length;
   * - ticks follow real time: the driver delivers the ticks it missed (a blocked event loop, a
   *   paused process) before it asks for a lease read;
   * - no clock runs more than `maxClockDrift` faster than another (0.1: at most 10%).
   * When a clock drifts further, a lease read can miss a write that another leader committed.
   */
  readonly leaseReads: boolean;
  /** The bound on clock drift that lease reads assume (see `leaseReads`). Default 0.1. */
  readonly maxClockDrift: number;
}

export const DEFAULT_ENGINE_TUNING: EngineTuning = Object.freeze({
  electionTicks: 10,
  heartbeatTicks: 3,
  preVote: true,
  checkQuorum: true,
  maxInflightMessages: 256,
  maxInflightBytes: 32 * 1024 * 1024,
  maxEntriesPerMessage: 1024,
  maxBytesPerMessage: 1024 * 1024,
  maxUncommittedBytes: 64 * 1024 * 1024,
  maxApplyBytes: 4 * 1024 * 1024,
  promotionLagEntries: 64,
  leaseReads: false,
  maxClockDrift: 0.1,
});

/** What an engine starts from: its identity, and the durable state a node restarts with. */
export interface EngineOptions {
  readonly id: NodeId;
  /** Configuration as of the snapshot, or the bootstrap configuration of a new cluster. */
  readonly config: ClusterConfig;
  readonly hardState: HardState;
  /** Position of the last snapshot (0/0 when none). */
  readonly snapshot: LogPosition;
  /** Every durable entry after the snapshot, in order. */
  readonly entries: readonly LogEntry[];
  /** Index up to which the state machine has applied (it survives restarts). */
  readonly applied: number;
  /** Randomness for election timeouts; seed it for a reproducible run. */
  readonly random: RandomSource;
  readonly tuning?: Partial<EngineTuning>;
  readonly logger?: Logger;
  /**
   * Called when a follower's log turns out shorter than what it acknowledged to this leader in
   * this term (its answer to a heartbeat sent after the acknowledgement): it lost entries it had said were durable (storage that does not
   * keep what it acknowledges, or a database restored from an older backup). Safety then rests
   * on the other members; the engine also logs it at `error`. Called at most once per follower
   * and term.
   */
  readonly onFollowerLostEntries?: (event: FollowerLostEntries) => void;
}

/** What {@link EngineOptions.onFollowerLostEntries} reports. */
export interface FollowerLostEntries {
  readonly follower: NodeId;
  readonly term: number;
  /** The highest index the follower had acknowledged (its match index). */
  readonly acknowledged: number;
  /** The follower's last index now, below `acknowledged`. */
  readonly lastIndex: number;
}

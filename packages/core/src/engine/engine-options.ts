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
   * Default 10 (with the node's default 15 ms tick: 150-300 ms).
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
}

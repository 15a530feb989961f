import type { ClusterConfig } from '../configuration.ts';
import type { EngineTuning } from '../engine/engine-options.ts';
import type { NodeId } from '../log-entry.ts';
import type { LogStore } from '../log-store.ts';
import type { Logger } from '../logger.ts';
import type { RandomSource } from '../random.ts';
import type { SnapshotStore } from '../snapshot-store.ts';
import type { StateMachine } from '../state-machine.ts';
import type { Transport } from '../transport.ts';
import type { Clock } from './clock.ts';
import type { CommandCodec } from './command-codec.ts';

/** Options of {@link RaftNode.start}. */
export interface RaftNodeOptions<Command, Result> {
  /** This node's identity; stable across restarts. */
  readonly id: NodeId;
  /**
   * The bootstrap configuration of a new cluster. A node that restarts from a snapshot takes
   * the configuration recorded with the snapshot instead.
   */
  readonly config: ClusterConfig;
  /**
   * The id of the cluster this node belongs to, checked in every peer request so that a node
   * never takes part in another cluster (core README, "Node identity"). Give every member of a
   * new cluster the same one when bootstrapping it (any unique string, e.g. a UUID made once);
   * it is stored with the node's identity the first time the node starts. Default: none; a node
   * without one learns it from a peer that has one (a joiner from the leader), and a cluster
   * where no node has one is not checked by cluster. A node whose storage holds another cluster id
   * refuses to start.
   */
  readonly clusterId?: string;
  /** Durable Raft log, hard state and node identity. */
  readonly logStore: LogStore;
  /** The application's replicated state. */
  readonly stateMachine: StateMachine<Command, Result>;
  /**
   * Durable snapshots: to take them, to send them to lagging followers and to receive them
   * crash-safely. Required: any node may have to receive a snapshot once the leader compacted
   * the entries it lacks, and a received snapshot must be durable before the log store records
   * it (else a crash in between leaves a state machine ahead of the log).
   */
  readonly snapshotStore: SnapshotStore;
  /**
   * Moves requests between nodes. The node installs its handler with `listen` and, on
   * `close()`, calls the transport's `close()`: once started, the node owns the transport.
   */
  readonly transport: Transport;
  /** Encodes command envelopes and results. Default: {@link jsonCodec}. */
  readonly codec?: CommandCodec<Command, Result>;
  /**
   * Milliseconds per engine tick. Default 100: with the default tuning, a heartbeat every 300 ms
   * and an election timeout of 1,000-2,000 ms, long enough that a leader's event loop stalled by a
   * loaded machine does not cost an election (core README, "Timing").
   */
  readonly tickMs?: number;
  /** Engine tunables; see {@link EngineTuning} for each default. */
  readonly tuning?: Partial<EngineTuning>;
  /** Where the node logs. Default: discards everything. */
  readonly logger?: Logger;
  /**
   * A follower forwards proposals to the leader it knows and returns the leader's answer.
   * When false, a follower rejects proposals with `NotLeaderError`. Default true.
   */
  readonly forwardProposals?: boolean;
  /** Randomness for election timeouts. Default: a generator seeded from `crypto`. */
  readonly random?: RandomSource;
  /**
   * Requests carrying Raft messages in flight to one peer at a time; messages produced meanwhile
   * leave together in the next request. Default 2.
   */
  readonly maxRequestsPerPeer?: number;
  /** Deadline of one request carrying Raft messages to a peer. Default 1,000 ms. */
  readonly requestTimeoutMs?: number;
  /**
   * Bytes per piece of a snapshot sent to a follower (chunked InstallSnapshot: memory stays at a
   * few pieces on both sides whatever the snapshot's size). Each piece is one request: it must
   * fit the transport's limit of a request body (the tRPC transport's `maxBodyBytes`, 64 MiB by
   * default). Default 4 MiB: fewer requests cost the leader and the follower about a quarter less
   * CPU per byte than pieces of 1 MiB (see the log-compaction README, "Benchmark").
   * A positive whole number.
   */
  readonly snapshotChunkBytes?: number;
  /** Deadline of one piece of a snapshot sent to a follower. Default 30,000 ms. */
  readonly snapshotTimeoutMs?: number;
  /**
   * Deadline of the last piece of a snapshot sent to a follower, which it answers once it has
   * installed the snapshot (a large state takes a while to restore). Default 300,000 ms.
   */
  readonly snapshotInstallTimeoutMs?: number;
  /**
   * Check the latest stored snapshot against its checksum in the background after the start, so
   * that a damaged one is replaced before a follower needs it (it is read whole). Default true.
   */
  readonly verifySnapshotOnStart?: boolean;
  /**
   * How long a linearizable read waits for its read index before failing with
   * `ReadUnavailableError` (a forwarded read index request may be lost). Default 5,000 ms.
   */
  readonly readTimeoutMs?: number;
  /**
   * Deadline of a proposal a follower forwards to the leader. When it passes, the proposal
   * fails with a retryable `RaftError` whose outcome is unknown (a retry with the same client
   * session is safe). Default 10,000 ms.
   */
  readonly forwardTimeoutMs?: number;
  /**
   * How long a linearizable (or lease) read, or a proposal, waits for this node to learn of a
   * leader when it knows none (right after it started, during an election; for a read whose
   * leader was lost while it waited for its read index: another leader) before it fails with
   * the retryable `ReadUnavailableError` or `NotLeaderError` (no leader hint). A read waits
   * within its `readTimeoutMs`, and any call within its signal: a proposal whose signal aborts
   * while it waits fails with `NotLeaderError` too (no hint; the signal's reason as `cause`),
   * since nothing was proposed. A read's wait is checked at every tick, so it may end up to one
   * `tickMs` late. Default: three times the engine's base election timeout,
   * `3 * tuning.electionTicks * tickMs` (3,000 ms with the defaults): the longest randomized
   * election timeout (twice the base) and one more for the vote and the new leader's first
   * message. 0: fail at once (for clients that move to another node by themselves; see the core
   * README, "Linearizable reads"). At most 2^31 - 1 ms (what a timer can wait).
   */
  readonly leaderWaitMs?: number;
  /**
   * Time and scheduling: ticks, deadlines, the wall-clock timestamps of commands, and the turn of
   * the event loop a Ready waits for. Default: the process's clock ({@link realClock}). The
   * simulator gives nodes a virtual one.
   */
  readonly clock?: Clock;
  /** Aborts start-up (loading the stores). It does not stop a node once started. */
  readonly signal?: AbortSignal;
}

/** The longest a timer can wait (2^31 - 1 ms, about 24.8 days); Node fires a longer one after 1 ms. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Refuses, with a `TypeError` naming the option, the values of {@link RaftNodeOptions} a node
 * cannot run with: a `tickMs` that is not positive; a `leaderWaitMs` that is negative, not finite
 * or longer than a timer can wait (Node would end the wait after 1 ms); a `snapshotChunkBytes`
 * that is not a positive safe integer (0 would send empty pieces forever, a fraction pieces that
 * overlap and never complete the snapshot).
 */
export function checkNodeOptions(
  options: Pick<
    RaftNodeOptions<unknown, unknown>,
    'tickMs' | 'leaderWaitMs' | 'snapshotChunkBytes'
  >,
): void {
  const { tickMs, leaderWaitMs, snapshotChunkBytes } = options;
  if (tickMs !== undefined && !(tickMs > 0)) throw new TypeError('tickMs must be positive');
  if (leaderWaitMs !== undefined && !(leaderWaitMs >= 0 && leaderWaitMs <= MAX_TIMER_MS)) {
    throw new TypeError(
      `leaderWaitMs must be a finite number >= 0 and at most ${MAX_TIMER_MS} ms (what a timer can wait), got ${leaderWaitMs}`,
    );
  }
  if (
    snapshotChunkBytes !== undefined &&
    !(Number.isSafeInteger(snapshotChunkBytes) && snapshotChunkBytes > 0)
  ) {
    throw new TypeError(
      `snapshotChunkBytes must be a positive whole number of bytes, got ${snapshotChunkBytes}`,
    );
  }
}

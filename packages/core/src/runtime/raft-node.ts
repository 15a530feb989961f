import {
  type ClusterConfig,
  decodeConfig,
  isJoint,
  sameMembership,
  validateConfig,
} from '../configuration.ts';
import { DEFAULT_ENGINE_TUNING, type FollowerLostEntries } from '../engine/engine-options.ts';
import type { MembershipChange } from '../engine/membership-change.ts';
import { RaftEngine } from '../engine/raft-engine.ts';
import type { Ready, Role, SoftState } from '../engine/ready.ts';
import {
  BackpressureError,
  CommandError,
  InvariantViolationError,
  NodeClosedError,
  NotLeaderError,
  ProposalDroppedError,
  ReadUnavailableError,
} from '../errors.ts';
import { entrySize, type LogEntry, type NodeId } from '../log-entry.ts';
import type { LogStore } from '../log-store.ts';
import { bindLogger, type Logger, noopLogger } from '../logger.ts';
import type { Message } from '../message.ts';
import { type NodeIdentity, newIncarnation } from '../node-identity.ts';
import { type RandomSource, seededRandom } from '../random.ts';
import type { SnapshotStore, StoredSnapshot } from '../snapshot-store.ts';
import type { ClientSession, StateMachine } from '../state-machine.ts';
import type { PeerHandler, PeerResponse, Transport } from '../transport.ts';
import { abortable } from './abortable.ts';
import { AppliedIndexWaiters } from './applied-index-waiters.ts';
import { type CancelTimer, type Clock, realClock } from './clock.ts';
import {
  type CommandCodec,
  type CommandEnvelope,
  jsonCodec,
  toAppliedEntry,
} from './command-codec.ts';
import { identifiedTransport } from './identified-transport.ts';
import { IdentityGate } from './identity-gate.ts';
import { LeaderWait } from './leader-wait.ts';
import { LeadershipTransfers, type TransferLeadershipOptions } from './leadership-transfers.ts';
import {
  type AddLearnerOptions,
  type ChangeMembershipOptions,
  type MembershipCallOptions,
  MembershipChanges,
} from './membership-changes.ts';
import { PeerSender } from './peer-sender.ts';
import {
  type LocalProposal,
  ProposalForwarding,
  type ProposalOutcome,
} from './proposal-forwarding.ts';
import { ProposalTracker } from './proposal-tracker.ts';
import type { RaftNodeEventName, RaftNodeEvents } from './raft-node-events.ts';
import { checkNodeOptions, type RaftNodeOptions } from './raft-node-options.ts';
import { memberProgress, type RaftNodeStatus } from './raft-node-status.ts';
import { ReadBatches } from './read-batches.ts';
import { recoverNodeState, storage } from './recover-node-state.ts';
import { ReplySlots } from './reply-slots.ts';
import { SerialQueue } from './serial-queue.ts';
import { SnapshotExchange } from './snapshot-exchange.ts';
import { TypedEvents } from './typed-events.ts';

/** Options of {@link RaftNode.propose}. */
export interface ProposeOptions {
  /** Makes the command exactly-once (thesis 6.3): a retry with the same session is safe. */
  readonly session?: ClientSession;
  /**
   * Abandons the wait (rejecting with the signal's reason); the command may still apply. While
   * the node waits for a leader (it knows none, see `RaftNodeOptions.leaderWaitMs`), nothing is
   * proposed yet: the call then rejects with `NotLeaderError` without a hint, whose `cause` is
   * the signal's reason.
   */
  readonly signal?: AbortSignal;
}

/** What {@link RaftNode.proposeWithPosition} resolves with. */
export interface ProposedCommand<Result> {
  /** Index of the command's entry in the log. */
  readonly index: number;
  /** Term of the command's entry: the term of the leader that appended it. */
  readonly term: number;
  /** The state machine's result. */
  readonly result: Result;
}

/** How {@link RaftNode.read} makes sure of what it reads. */
export type ReadConsistency = 'linearizable' | 'lease' | 'local';

/** Options of {@link RaftNode.read}. */
export interface ReadOptions {
  /**
   * `linearizable` (default): the read sees every write that completed before it started
   * (ReadIndex, thesis 6.4). `lease`: the same guarantee without a heartbeat round while the
   * leader's lease holds (thesis 6.4.1; needs `tuning.leaseReads`, which rests on bounded clock
   * drift: see `EngineTuning.leaseReads`); on a follower, or when the lease lapsed, it takes the
   * ReadIndex path. `local`: reads this node's state now; fast, possibly stale.
   */
  readonly consistency?: ReadConsistency;
  readonly signal?: AbortSignal;
}

/** Options of {@link RaftNode.close}. */
export interface CloseOptions {
  /**
   * A leader first hands leadership over to the most up-to-date voter (thesis 3.10), so that the
   * cluster need not wait for an election timeout: for graceful shutdowns and rolling restarts.
   * A failed transfer is logged at `warn`, and the node closes anyway. Default false.
   */
  readonly transfer?: boolean;
}

/**
 * Milliseconds per engine tick unless `tickMs` says otherwise: with the engine's default ticks, a
 * heartbeat every 300 ms and an election timeout of 1-2 s, which outlast the event-loop stalls of
 * a loaded Node.js process (see the core README, "Timing").
 */
const DEFAULT_TICK_MS = 100;

/** Entries per `StateMachine.apply` call at most (the engine bounds batches by bytes too). */
const MAX_APPLY_BATCH = 4096;

interface RaftNodeInit<Command, Result> {
  readonly engine: RaftEngine;
  readonly options: RaftNodeOptions<Command, Result>;
  readonly logger: Logger;
  readonly applied: number;
  /** Index of the latest snapshot, and the bytes of the entries applied after it. */
  readonly snapshotIndex: number;
  readonly bytesSinceSnapshot: number;
  /** The node's durable identity, as stored. */
  readonly identity: NodeIdentity;
}

let readEngine: (node: RaftNode<unknown, unknown>) => RaftEngine;

/**
 * The engine a node drives. Internal (not exported by the package): the simulator checks Raft's
 * safety properties on it after every event; nothing may step or change it from outside.
 */
export function engineOf<Command, Result>(node: RaftNode<Command, Result>): RaftEngine {
  return readEngine(node as RaftNode<unknown, unknown>);
}

/**
 * A Raft node: drives a {@link RaftEngine} with a clock (real timers by default), a log store, a transport, a state
 * machine and a snapshot store.
 *
 * - The consensus loop carries out one engine {@link Ready} at a time, in the order its contract
 *   gives: install a received snapshot, persist, send, hand committed entries to the apply loop,
 *   settle reads, advance. A leader's AppendEntries (`Ready.earlyMessages`) leave while its own
 *   write persists (thesis 10.2.1), so its persist and its followers' overlap. Ticks, messages
 *   and proposals keep reaching the engine while a persist is in flight, so the next Ready
 *   batches them (group commit).
 * - The apply loop runs beside it: a slow state machine delays results, never heartbeats.
 * - A storage failure or a broken invariant is fatal: the node logs it at `error`, emits
 *   `fatal`, and fails every pending and later call with {@link NodeClosedError} (its `cause`
 *   says why). It never guesses its way on.
 *
 * Crash safety comes from the stores alone: a node started again on the same stores rejoins
 * with the term, vote and log it had promised (Raft paper, Figure 2).
 */
export class RaftNode<Command, Result> {
  readonly id: NodeId;
  /**
   * How long a call on this node waits for a leader when it knows none
   * (`RaftNodeOptions.leaderWaitMs`, or its default).
   */
  readonly leaderWaitMs: number;
  readonly #engine: RaftEngine;
  readonly #logStore: LogStore;
  readonly #stateMachine: StateMachine<Command, Result>;
  readonly #snapshotStore: SnapshotStore;
  readonly #transport: Transport;
  readonly #codec: CommandCodec<Command, Result>;
  readonly #logger: Logger;
  readonly #forwardProposals: boolean;
  readonly #clock: Clock;
  readonly #gate: IdentityGate;

  readonly #events: TypedEvents<RaftNodeEvents> = new TypedEvents(() => this.#logger);
  /** Aborted when the node stops: cuts outgoing requests short. */
  readonly #lifetime = new AbortController();
  readonly #peers: PeerSender;
  #readiesTaken = 0;
  #readiesDone = 0;
  #durableWaiters: { after: number; resolve: () => void; reject: (error: unknown) => void }[] = [];
  /** `persist` and `purge` are issued one at a time (LogStore contract). */
  readonly #logWrites = new SerialQueue();
  readonly #proposals = new ProposalTracker<Result>();
  readonly #appliedWaiters: AppliedIndexWaiters;
  readonly #reads: ReadBatches;
  readonly #leaderWait: LeaderWait;
  /** Answers to peers' `raft` requests, carried in their responses. */
  readonly #replies = new ReplySlots();
  readonly #forwarding: ProposalForwarding<Command, Result>;
  readonly #snapshots: SnapshotExchange<Command, Result>;
  readonly #membership: MembershipChanges;
  readonly #transfers: LeadershipTransfers;
  readonly #tickMs: number;
  /** With lease reads, ticks follow real time: missed ones are delivered late (catch-up). */
  readonly #ticksFollowRealTime: boolean;
  #ticksStartedAt = 0;
  #ticksDelivered = 0;

  #applyQueue: LogEntry[] = [];
  #applying: Promise<void> | undefined;
  #driving: Promise<void> | undefined;
  #cancelTicks: CancelTimer | undefined;
  /** Set once the node stops; every later call fails with it. */
  #stopped: NodeClosedError | undefined;
  #fatal: Error | undefined;
  #closing: Promise<void> | undefined;
  #role: Role = 'follower';
  #leaderId: NodeId | null = null;
  /** The term of the soft state: with `#leaderId`, the leader this node knows. */
  #term: number;
  /** How many times the (term, leader) of the soft state changed: read batches watch it. */
  #leaderChanges = 0;
  #commitIndex = 0;
  #lastTimestamp = 0;
  #snapshotIndex: number;
  #bytesSinceSnapshot: number;
  /** The `config` option differed from the stored configuration: told at the first tick. */
  #ignoredConfigOption: RaftNodeEvents['config-option-ignored'][0] | undefined;

  static {
    readEngine = (node) => node.#engine;
  }

  private constructor(init: RaftNodeInit<Command, Result>) {
    const { options } = init;
    this.id = options.id;
    this.#engine = init.engine;
    this.#logStore = options.logStore;
    this.#stateMachine = options.stateMachine;
    this.#gate = new IdentityGate({
      id: options.id,
      identity: init.identity,
      logger: init.logger,
      applied: () => this.#appliedWaiters.applied,
      refused: (event) => this.#emit('identity-refused', event),
    });
    this.#transport = identifiedTransport(
      options.transport,
      this.#gate,
      () => this.#role === 'leader',
    );
    this.#codec = options.codec ?? jsonCodec<Command, Result>();
    this.#logger = init.logger;
    this.#forwardProposals = options.forwardProposals ?? true;
    const clock = options.clock ?? realClock;
    this.#clock = clock;
    const lifetime = this.#lifetime.signal;
    this.#peers = new PeerSender({
      engine: this.#engine,
      transport: this.#transport,
      logger: this.#logger,
      lifetime,
      clock,
      requestTimeoutMs: options.requestTimeoutMs ?? 1000,
      maxRequestsPerPeer: options.maxRequestsPerPeer ?? 2,
      kick: () => this.#kick(),
      receive: (from, messages) => {
        this.#stepMessages(from, messages);
      },
      unauthorized: (peer, error) => this.#emit('peer-unauthorized', { peer, error }),
    });
    this.#appliedWaiters = new AppliedIndexWaiters(init.applied);
    this.#tickMs = options.tickMs ?? DEFAULT_TICK_MS;
    const tuning = { ...DEFAULT_ENGINE_TUNING, ...options.tuning };
    this.#ticksFollowRealTime = tuning.leaseReads;
    const leaderWaitMs = options.leaderWaitMs ?? 3 * tuning.electionTicks * this.#tickMs;
    this.leaderWaitMs = leaderWaitMs;
    const leaderKnown = (): boolean => this.#leaderId !== null;
    // A proposal's wait asks the engine, which is what refuses the proposal: the soft state of
    // the last Ready handled lags it while the loop is busy (a persist in flight).
    this.#leaderWait = new LeaderWait({
      leaderKnown: () => this.#engine.status().leaderId !== null,
      leaderWaitMs,
      lifetime,
      clock,
    });
    this.#reads = new ReadBatches({
      engine: this.#engine,
      appliedWaiters: this.#appliedWaiters,
      lifetime,
      clock,
      readTimeoutMs: options.readTimeoutMs ?? 5000,
      leaderKnown,
      leaderChanges: () => this.#leaderChanges,
      leaderWaitMs,
      idPrefix: globalThis.crypto.randomUUID(),
      kick: () => this.#kick(),
    });
    this.#forwarding = new ProposalForwarding({
      transport: this.#transport,
      codec: this.#codec,
      lifetime,
      clock,
      forwardTimeoutMs: options.forwardTimeoutMs ?? 10_000,
      throwIfStopped: () => this.#throwIfStopped(),
      envelope: (command, session) => this.#envelope(command, session),
      proposeLocally: (bytes, signal) => this.#proposeLocally(bytes, signal),
    });
    this.#snapshotStore = options.snapshotStore;
    this.#snapshots = new SnapshotExchange({
      engine: this.#engine,
      logStore: this.#logStore,
      stateMachine: this.#stateMachine,
      snapshotStore: options.snapshotStore,
      transport: this.#transport,
      logger: this.#logger,
      logWrites: this.#logWrites,
      lifetime,
      clock,
      snapshotChunkBytes: options.snapshotChunkBytes ?? 4 * 1024 * 1024,
      snapshotTimeoutMs: options.snapshotTimeoutMs ?? 30_000,
      snapshotInstallTimeoutMs: options.snapshotInstallTimeoutMs ?? 300_000,
      applied: () => this.#appliedWaiters.applied,
      stopped: () => this.#stopped,
      fail: (error) => this.#fail(error),
      kick: () => this.#kick(),
      whenCarriedOut: () => this.#whenCarriedOut(),
      drainApplying: () => this.#drainApplying(),
      replacing: (meta) => {
        this.#proposals.replacedBySnapshot(meta.index);
        this.#membership.replacedBySnapshot(meta.index);
      },
      installed: (meta) => {
        this.#gate.installed(meta.config, meta.index);
        this.#appliedWaiters.advance(meta.index);
        // The restore's own duration is the 'snapshot' event's.
        this.#emit('apply', { appliedIndex: meta.index, entries: 0, durationMs: 0 });
      },
      snapshotted: (meta) => {
        this.#snapshotIndex = meta.index;
        this.#bytesSinceSnapshot = 0;
      },
      emit: (event, ...args) => this.#emit(event, ...args),
    });
    this.#membership = new MembershipChanges({
      engine: this.#engine,
      transport: this.#transport,
      logger: this.#logger,
      lifetime,
      clock,
      kick: () => this.#kick(),
      throwIfStopped: () => this.#throwIfStopped(),
      configChanged: (config, index) => this.#emit('config-change', { config, index }),
      removed: (commitIndex) =>
        this.#proposals.failFrom(
          commitIndex + 1,
          new ProposalDroppedError(
            'this node was removed from the cluster before the entry was known to commit; retry on the cluster with the same client session',
          ),
        ),
    });
    this.#transfers = new LeadershipTransfers({
      engine: this.#engine,
      id: this.id,
      logger: this.#logger,
      tickMs: this.#tickMs,
      electionTicks: tuning.electionTicks,
      lifetime,
      clock,
      kick: () => this.#kick(),
      throwIfStopped: () => this.#throwIfStopped(),
    });
    this.#snapshotIndex = init.snapshotIndex;
    this.#bytesSinceSnapshot = init.bytesSinceSnapshot;
    const status = init.engine.status();
    this.#term = status.term;
    this.#commitIndex = status.commitIndex;
  }

  /**
   * Starts a node from its stores: loads the hard state, the log after the latest snapshot and
   * the state machine's applied position (repairing what a crash during a snapshot install left
   * behind), installs the transport handler and starts the tick timer. Rejects with
   * `StorageError` when the stores cannot be read.
   */
  static async start<Command, Result>(
    options: RaftNodeOptions<Command, Result>,
  ): Promise<RaftNode<Command, Result>> {
    validateConfig(options.config);
    if (options.snapshotStore === undefined) {
      throw new TypeError(
        'snapshotStore is required: any node may have to receive a snapshot from its leader, and it must be durable before the log records it (use MemorySnapshotStore from @tsraft/core/testing in tests, PostgresSnapshotStore with pg-storage)',
      );
    }
    checkNodeOptions(options);
    const logger = bindLogger(options.logger ?? noopLogger, { node: options.id });
    const signal = options.signal;
    signal?.throwIfAborted();
    let recovered: Awaited<ReturnType<typeof recoverNodeState>>;
    try {
      recovered = await recoverNodeState({
        logStore: options.logStore,
        stateMachine: options.stateMachine,
        snapshotStore: options.snapshotStore,
        bootstrapConfig: options.config,
        logger,
        signal,
      });
    } catch (error) {
      signal?.throwIfAborted();
      throw error;
    }
    const random = options.random ?? cryptoSeededRandom();
    const identity = await startingIdentity(options, recovered, logger);
    /** Set once the node exists: the engine reports only after it has stepped messages. */
    let lostEntries: ((event: FollowerLostEntries) => void) | undefined;
    const engine = new RaftEngine({
      id: options.id,
      config: recovered.config,
      hardState: recovered.hardState,
      snapshot: recovered.snapshot,
      entries: recovered.entries,
      applied: recovered.applied,
      random,
      ...(options.tuning === undefined ? {} : { tuning: options.tuning }),
      logger,
      onFollowerLostEntries: (event) => lostEntries?.(event),
    });
    const stored = engine.status().config;
    const ignoredConfigOption = sameMembership(stored, options.config)
      ? undefined
      : { given: options.config, stored };
    if (ignoredConfigOption !== undefined) {
      logger.warn(
        ignoredConfigOption,
        'the `config` option differs from the configuration this node stored, which it uses: the option only bootstraps a new cluster; change the membership with changeMembership(), addLearner() or removeNode(), and start the node with `config` equal to the stored one (status().config) to silence this',
      );
    }
    const node = new RaftNode<Command, Result>({
      engine,
      options,
      logger,
      applied: recovered.applied,
      snapshotIndex: recovered.snapshot.index,
      bytesSinceSnapshot: recovered.entries.reduce(
        (bytes, entry) => (entry.index <= recovered.applied ? bytes + entrySize(entry) : bytes),
        0,
      ),
      identity,
    });
    node.#ignoredConfigOption = ignoredConfigOption;
    lostEntries = (event) => node.#emit('follower-lost-entries', event);
    node.#membership.observe();
    // The latest configuration applied forgets the members it removed (a crash may have come
    // between applying the removal and persisting the identity).
    const { config, configIndex } = engine.status();
    if (configIndex <= recovered.applied) {
      node.#gate.retain(config, configIndex);
    } else {
      const later = recovered.entries.flatMap((entry) =>
        entry.type === 'config' && entry.index > recovered.applied
          ? [decodeConfig(entry.data)]
          : [],
      );
      node.#gate.restarted(engine.indexedConfigAt(recovered.applied), later);
    }
    await options.transport.listen(node.#handlePeerRequest);
    node.#ticksStartedAt = node.#clock.now();
    node.#cancelTicks = node.#clock.setRepeating(node.#tick, node.#tickMs);
    node.#kick();
    if (options.verifySnapshotOnStart ?? true) void node.#snapshots.verifyLatest();
    logger.info(
      {
        term: recovered.hardState.term,
        snapshot: recovered.snapshot.index,
        lastIndex: recovered.snapshot.index + recovered.entries.length,
        applied: recovered.applied,
        clusterId: identity.clusterId,
        incarnation: identity.incarnation,
      },
      'raft node started',
    );
    return node;
  }

  // ---------------------------------------------------------------------------------------------
  // Public API

  /**
   * Replicates `command` and resolves with the state machine's result once it is applied on
   * this node (the leader's, for a forwarded proposal). A node that knows no leader (right after
   * it started, during an election) first waits up to `leaderWaitMs` for one. Rejects with:
   * - {@link CommandError}: the handler refused the command (same outcome on every node);
   * - {@link NotLeaderError}: not the leader, and forwarding is off (with the leader's id) or no
   *   leader became known within `leaderWaitMs` (without), or `signal` aborted while it waited
   *   for one (without; `cause` is the signal's reason): nothing was proposed, and a client may
   *   try another node (this one may be cut off from the majority);
   * - {@link BackpressureError}: the leader holds too many uncommitted entries;
   * - {@link ProposalDroppedError}: a new leader overwrote the entry (retry with the session);
   * - a retryable {@link RaftError}: the forwarded request failed, or the leader appended the
   *   command and stopped before it was known to commit: the outcome is unknown (retry with the
   *   same client session; a `NotLeaderError` means nothing was appended);
   * - {@link NodeClosedError}; or the signal's reason when `signal` was aborted already, or aborts
   *   once the command was proposed or forwarded.
   */
  async propose(command: Command, options: ProposeOptions = {}): Promise<Result> {
    return (await this.proposeWithPosition(command, options)).result;
  }

  /**
   * {@link propose}, resolving also with where the command's entry is in the log: its `index`
   * and `term` (the leader's, for a forwarded proposal), for logging or for waiting elsewhere
   * until a node has applied that index. A command that a client session had already executed
   * answers the recorded result at the position of this proposal's entry, not the first one's.
   * Rejects as {@link propose} does.
   */
  async proposeWithPosition(
    command: Command,
    options: ProposeOptions = {},
  ): Promise<ProposedCommand<Result>> {
    const started = this.#clock.now();
    try {
      const proposed = await this.#propose(command, options);
      this.#emit('proposal', { outcome: 'applied', durationMs: this.#clock.now() - started });
      return proposed;
    } catch (error) {
      const outcome = error instanceof CommandError ? 'rejected' : 'failed';
      this.#emit('proposal', { outcome, durationMs: this.#clock.now() - started });
      throw error;
    }
  }

  async #propose(command: Command, options: ProposeOptions): Promise<ProposedCommand<Result>> {
    this.#throwIfStopped();
    const { session, signal } = options;
    signal?.throwIfAborted();
    let bytes = this.#codec.encode(this.#envelope(command, session));
    let local = this.#proposeLocally(bytes, signal);
    if (
      local.kind === 'not-leader' &&
      local.leaderHint === null &&
      (await this.#leaderKnown(signal))
    ) {
      // A leader appeared (perhaps this node): propose, or forward, as if it had been known,
      // stamped anew so that the time of commands this node proposes never goes back.
      bytes = this.#codec.encode(this.#envelope(command, session));
      local = this.#proposeLocally(bytes, signal);
    }
    let outcome: ProposalOutcome<Result>;
    if (local.kind === 'proposed') {
      outcome = { index: local.index, term: local.term, result: await local.result };
    } else if (
      this.#forwardProposals &&
      local.leaderHint !== null &&
      local.leaderHint !== this.id
    ) {
      outcome = await this.#forwarding.forward(local.leaderHint, bytes, signal);
    } else {
      throw new NotLeaderError(local.leaderHint);
    }
    const { result } = outcome;
    if (result.status === 'error') throw new CommandError(result.error);
    return { index: outcome.index, term: outcome.term, result: result.value };
  }

  /**
   * Whether the engine knows a leader, after waiting up to `leaderWaitMs` for one if it knows
   * none (see {@link LeaderWait}). Rejects with `NotLeaderError` without a hint (`cause`: the
   * signal's reason) when `signal` aborts first: nothing was proposed, and a client may try
   * another node; or with `NodeClosedError`.
   */
  async #leaderKnown(signal: AbortSignal | undefined): Promise<boolean> {
    try {
      return await this.#leaderWait.known(signal);
    } catch (error) {
      if (signal?.aborted === true) throw new NotLeaderError(null, { cause: signal.reason });
      this.#throwIfStopped();
      throw error;
    }
  }

  /**
   * Runs `fn` against this node's state machine. `linearizable` (the default) first confirms a
   * read index with the leader (thesis 6.4) and waits until this node applied up to it, so `fn`
   * sees every write that completed before the call; failure to confirm rejects with the
   * retryable {@link ReadUnavailableError}, at once on a node told it lost its durable state
   * (`status().identity.lostState`). A node that knows no leader (right after it started,
   * during an election) first waits up to `leaderWaitMs` for one, within `readTimeoutMs`: the
   * read index still comes from a leader of the node's current term, confirmed by a heartbeat
   * round. `local` runs `fn` at once.
   */
  async read<T>(fn: () => T | Promise<T>, options: ReadOptions = {}): Promise<T> {
    const started = this.#clock.now();
    const consistency = options.consistency ?? 'linearizable';
    try {
      const value = await this.#read(fn, options);
      this.#emit('read', { consistency, ok: true, durationMs: this.#clock.now() - started });
      return value;
    } catch (error) {
      this.#emit('read', { consistency, ok: false, durationMs: this.#clock.now() - started });
      throw error;
    }
  }

  async #read<T>(fn: () => T | Promise<T>, options: ReadOptions): Promise<T> {
    this.#throwIfStopped();
    const { signal } = options;
    signal?.throwIfAborted();
    const consistency = options.consistency ?? 'linearizable';
    if (consistency === 'local') return await fn();
    if (this.#gate.lostState) {
      // Its peers refuse it: a read index would never come.
      throw new ReadUnavailableError(
        'this node lost its durable state and its peers refuse it (see the error log): remove it from the cluster and add it again',
      );
    }
    const lease = consistency === 'lease';
    // A lease is counted in ticks: deliver the ticks a busy event loop held back first.
    if (lease && this.#ticksFollowRealTime) this.#tick();
    try {
      await abortable(this.#reads.join({ lease }), signal);
    } catch (error) {
      signal?.throwIfAborted();
      throw error;
    }
    this.#throwIfStopped();
    return await fn();
  }

  /**
   * The engine's state (role, term, leader, indexes, the configuration in effect and whether it
   * is joint, each member's progress on the leader, a transfer under way), the applied index
   * and whether the node is closed.
   */
  status(): RaftNodeStatus {
    const status = this.#engine.status();
    return {
      id: this.id,
      role: status.role,
      term: status.term,
      leaderId: status.leaderId,
      commitIndex: status.commitIndex,
      appliedIndex: this.#appliedWaiters.applied,
      snapshotIndex: this.#snapshotIndex,
      bytesSinceSnapshot: this.#bytesSinceSnapshot,
      lastIndex: status.lastIndex,
      firstIndex: status.firstIndex,
      config: status.config,
      configIndex: status.configIndex,
      joint: isJoint(status.config),
      progress: memberProgress(status.progress, this.#gate.refusedPeers()),
      leadTransferee: status.leadTransferee,
      closed: this.#stopped !== undefined,
      identity: {
        clusterId: this.#gate.identity.clusterId,
        incarnation: this.#gate.identity.incarnation,
        lostState: this.#gate.lostState,
        refusedPeers: this.#gate.refusedPeers(),
      },
    };
  }

  /**
   * Changes the cluster's membership to `voters` and `learners` (Raft paper 6, thesis 4), on the
   * leader: one step for a change of at most one voter, joint consensus (C_old,new, then C_new)
   * otherwise. Resolves with the new configuration once it is committed (for a joint change,
   * once C_new is). One change at a time. Rejects with:
   * - `NotLeaderError` (with the leader's id) on a follower;
   * - `ConfigChangeInProgressError` while another change is under way (retry after it);
   * - `ProposalDroppedError` when a new leader overwrote the change (retry);
   * - `MembershipChangeTimeoutError` past `timeoutMs` (default 10 s): it may still take effect;
   * - a `TypeError`, changing nothing, for an invalid membership;
   * - `NodeClosedError`; or the signal's reason once `signal` aborts.
   */
  changeMembership(
    change: MembershipChange,
    options: ChangeMembershipOptions = {},
  ): Promise<ClusterConfig> {
    return this.#membership.change(change, options);
  }

  /**
   * Adds `id` as a learner: it receives the log (or a snapshot) but does not vote. With
   * `promote`, the leader makes it a voter by itself once its log is within
   * `tuning.promotionLagEntries` of its own. `url` tells every member's transport where it
   * listens. Resolves once the learner's addition is committed; rejects as
   * {@link changeMembership} does, and with a `TypeError` when `id` is a voter already.
   */
  async addLearner(id: NodeId, options: AddLearnerOptions = {}): Promise<ClusterConfig> {
    this.#throwIfStopped();
    return this.#membership.change(this.#membership.addLearnerChange(id, options), options);
  }

  /**
   * Removes `id` (a voter or a learner) from the cluster; removing the leader itself makes it
   * step down once the change commits (Raft paper 6). Resolves once the change is committed;
   * rejects as {@link changeMembership} does, and with a `TypeError` when `id` is no member.
   * A server that lost its disk is removed, then added back as a new learner (see the README's
   * runbook for replacing a node).
   */
  async removeNode(id: NodeId, options: MembershipCallOptions = {}): Promise<ClusterConfig> {
    this.#throwIfStopped();
    return this.#membership.change(this.#membership.removeChange(id), options);
  }

  /**
   * Hands leadership over to `to`, or to the voter whose log is most up to date (thesis 3.10):
   * the leader stops accepting proposals, brings the target's log up to date, and the target
   * starts an election at once. Resolves with the new leader's id. Rejects with
   * `NotLeaderError` on a follower, `LeadershipTransferError` when the target did not take over
   * within `timeoutMs` (default: an election timeout; the leader then resumes), a `TypeError`
   * for a target that is not a voter.
   */
  transferLeadership(to?: NodeId, options: TransferLeadershipOptions = {}): Promise<NodeId> {
    return this.#transfers.transfer(to, options);
  }

  /**
   * Exports the state machine at its applied position, saves it to the snapshot store, then,
   * once that is durable, drops the log up to there from memory and from the log store (Raft
   * paper 7), but for the last `retainEntries` (default 0), which serve followers a little
   * behind with entries instead of the whole snapshot. Proposals, heartbeats and applying go on
   * meanwhile. Resolves with the stored snapshot, or `undefined` when nothing new was applied
   * since the latest snapshot. A state machine that refuses to export its state rejects this
   * with `SnapshotExportRefusedError` and changes nothing (the node goes on); a failure of a
   * store is fatal, as everywhere.
   */
  async takeSnapshot(
    options: { signal?: AbortSignal; retainEntries?: number } = {},
  ): Promise<StoredSnapshot | undefined> {
    this.#throwIfStopped();
    const store = this.#snapshotStore;
    const { signal, retainEntries = 0 } = options;
    if (!(Number.isSafeInteger(retainEntries) && retainEntries >= 0)) {
      throw new RangeError(`retainEntries must be a non-negative integer, got ${retainEntries}`);
    }
    signal?.throwIfAborted();
    return this.#snapshots.take(store, { signal, retainEntries });
  }

  on<E extends RaftNodeEventName>(event: E, listener: (...args: RaftNodeEvents[E]) => void): this {
    this.#events.on(event, listener);
    return this;
  }

  once<E extends RaftNodeEventName>(
    event: E,
    listener: (...args: RaftNodeEvents[E]) => void,
  ): this {
    this.#events.once(event, listener);
    return this;
  }

  off<E extends RaftNodeEventName>(event: E, listener: (...args: RaftNodeEvents[E]) => void): this {
    this.#events.off(event, listener);
    return this;
  }

  /**
   * Stops the node: stops the timer, refuses new calls and incoming requests, fails pending
   * calls with {@link NodeClosedError}, waits for the persist and the apply batch in flight,
   * then closes the transport. With `transfer`, a leader first hands leadership over (see
   * {@link CloseOptions}). Idempotent.
   */
  close(options: CloseOptions = {}): Promise<void> {
    this.#closing ??= this.#handOverThenClose(options.transfer === true);
    return this.#closing;
  }

  async #handOverThenClose(transfer: boolean): Promise<void> {
    if (transfer && this.#stopped === undefined && this.#engine.status().role === 'leader') {
      try {
        const leader = await this.#transfers.transfer(undefined);
        this.#logger.info({ leader }, 'handed leadership over before closing');
      } catch (error) {
        this.#logger.warn({ err: error }, 'could not hand leadership over before closing');
      }
    }
    await this.#close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  // ---------------------------------------------------------------------------------------------
  // Consensus loop

  readonly #tick = (): void => {
    if (this.#stopped !== undefined) return;
    try {
      for (let due = this.#dueTicks(); due > 0; due--) this.#engine.tick();
    } catch (error) {
      this.#fail(error);
      return;
    }
    this.#transfers.observe();
    // The engine may have learnt a leader from a message while the loop was busy.
    this.#leaderWait.observe();
    if (this.#ignoredConfigOption !== undefined) {
      this.#emit('config-option-ignored', this.#ignoredConfigOption);
      this.#ignoredConfigOption = undefined;
    }
    this.#kick();
  };

  /**
   * Ticks to deliver now: one per timer callback, or, when ticks must follow real time (lease
   * reads), as many as elapsed since the last delivery (none when the timer fired early).
   */
  #dueTicks(): number {
    if (!this.#ticksFollowRealTime) return 1;
    const elapsed = Math.floor((this.#clock.now() - this.#ticksStartedAt) / this.#tickMs);
    const due = elapsed - this.#ticksDelivered;
    if (due <= 0) return 0;
    this.#ticksDelivered = elapsed;
    return due;
  }

  /** Makes sure the consensus loop runs; it drains every Ready the engine has. */
  #kick(): void {
    if (this.#stopped !== undefined || this.#driving !== undefined) return;
    this.#driving = this.#drive().finally(() => {
      this.#driving = undefined;
      // Inputs that arrived after the loop's last look (a read batch, or work that advance()
      // created after an empty Ready) must not wait for the next tick.
      if (this.#reads.hasDue || this.#engine.hasReady()) this.#kick();
    });
  }

  async #drive(): Promise<void> {
    // Let inputs that arrive in the same pass of the event loop join this Ready: every request
    // and timer callback of this I/O phase (e.g. proposals arriving as separate HTTP requests).
    await this.#clock.afterPhase();
    try {
      while (this.#stopped === undefined) {
        this.#reads.handOver();
        if (!this.#engine.hasReady()) {
          // What was stepped caused nothing to carry out: no answer is coming to wait for.
          this.#replies.settleAll();
          return;
        }
        const ready = this.#engine.ready();
        this.#readiesTaken++;
        if (isEmpty(ready)) {
          // Only reads wait on a heartbeat round: nothing to do until the next input.
          this.#engine.advance(ready);
          this.#readyDone();
          return;
        }
        await this.#handleReady(ready);
        if (this.#fatal !== undefined) return;
        this.#engine.advance(ready);
        this.#readyDone();
      }
    } catch (error) {
      this.#fail(error);
    }
  }

  #readyDone(): void {
    this.#readiesDone = this.#readiesTaken;
    this.#replies.readyDone(this.#readiesDone);
    this.#durableWaiters = this.#durableWaiters.filter((waiter) => {
      if (this.#readiesDone < waiter.after) return true;
      waiter.resolve();
      return false;
    });
  }

  /**
   * Resolves once every input stepped into the engine so far is carried out: the next Ready
   * taken from now on has been persisted, sent and advanced (at once if there is none to take).
   * Rejects with the node's reason once it stopped: nothing stepped into it is carried out then
   * (a snapshot piece that waited behind the one whose install stopped the node, say).
   */
  #whenCarriedOut(): Promise<void> {
    if (this.#stopped !== undefined) return Promise.reject(this.#stopped);
    this.#kick();
    if (this.#driving === undefined && !this.#engine.hasReady()) return Promise.resolve();
    const after = this.#readiesTaken + 1;
    return new Promise<void>((resolve, reject) => {
      this.#durableWaiters.push({ after, resolve, reject });
    });
  }

  /** Carries out `ready` in the order of its contract (see {@link Ready}). */
  async #handleReady(ready: Ready): Promise<void> {
    if (ready.softState !== undefined) this.#softStateChanged(ready.softState);
    // A snapshot not installed (the node stopped first) must not be recorded in the log store.
    if (ready.snapshot !== undefined && !(await this.#snapshots.install(ready.snapshot))) return;
    const identity = this.#gate.takeChanged();
    const write = identity === undefined ? ready.write : { ...ready.write, identity };
    let afterWrite =
      ready.earlyMessages.length === 0
        ? ready.messages
        : [...ready.earlyMessages, ...ready.messages];
    if (write !== undefined) {
      if (write.truncateFrom !== undefined) {
        this.#proposals.truncatedFrom(write.truncateFrom);
        this.#membership.truncatedFrom(write.truncateFrom);
      }
      // A leader's AppendEntries leave while its own write persists (thesis 10.2.1), unless the
      // write records a change of this node's identity, which every message it sends carries.
      if (identity === undefined && ready.earlyMessages.length > 0) {
        this.#send(ready.earlyMessages);
        afterWrite = ready.messages;
      }
      const persistStarted = this.#clock.now();
      await this.#logWrites.run(() =>
        storage('persist to the log store', () => this.#logStore.persist(write)),
      );
      this.#emit('persist', {
        entries: write.entries?.length ?? 0,
        durationMs: this.#clock.now() - persistStarted,
      });
    }
    if (this.#stopped !== undefined) return;
    this.#send(afterWrite);
    if (ready.committed.length > 0) {
      for (const entry of ready.committed) this.#applyQueue.push(entry);
      this.#startApplying();
    }
    if (ready.hardState.commitIndex > this.#commitIndex) {
      this.#commitIndex = ready.hardState.commitIndex;
      this.#emit('commit', { commitIndex: this.#commitIndex });
    }
    for (const read of ready.reads) this.#reads.settle(read);
    this.#membership.observe();
    this.#transfers.observe();
  }

  #softStateChanged(soft: SoftState): void {
    const previousRole = this.#role;
    const previousLeader = this.#leaderId;
    if (soft.leaderId !== previousLeader || soft.term !== this.#term) this.#leaderChanges++;
    this.#role = soft.role;
    this.#leaderId = soft.leaderId;
    this.#term = soft.term;
    if (soft.role !== previousRole) {
      this.#emit('role-change', { role: soft.role, previous: previousRole, term: soft.term });
    }
    if (soft.leaderId !== previousLeader) {
      this.#logger.info({ leader: soft.leaderId, term: soft.term }, 'leader changed');
      this.#emit('leader-change', { leaderId: soft.leaderId, term: soft.term });
      this.#leaderWait.observe();
    }
  }

  /** Sends the Ready's messages: snapshots with their data, the rest through the outbox. */
  #send(messages: readonly Message[]): void {
    const raft: Message[] = [];
    for (const message of messages) {
      if (message.type === 'snapshot') void this.#snapshots.send(message);
      else raft.push(message);
    }
    const unanswered = this.#replies.divert(raft);
    if (unanswered.length > 0) this.#peers.send(unanswered);
  }

  // ---------------------------------------------------------------------------------------------
  // Apply loop

  #startApplying(): void {
    if (this.#applying !== undefined || this.#stopped !== undefined) return;
    this.#applying = this.#applyLoop().finally(() => {
      this.#applying = undefined;
    });
  }

  async #drainApplying(): Promise<void> {
    while (this.#applying !== undefined) await this.#applying;
  }

  async #applyLoop(): Promise<void> {
    try {
      while (this.#applyQueue.length > 0 && this.#stopped === undefined) {
        const batch = this.#applyQueue.splice(0, MAX_APPLY_BATCH);
        const entries = batch.map((entry) => toAppliedEntry(this.#codec, entry));
        const applyStarted = this.#clock.now();
        const results = await storage('apply committed entries to the state machine', () =>
          this.#stateMachine.apply(entries),
        );
        if (results.length !== batch.length) {
          throw new InvariantViolationError(
            `the state machine returned ${results.length} results for ${batch.length} entries`,
          );
        }
        batch.forEach((entry, i) => {
          if (entry.type === 'config') {
            this.#membership.applied(entry.index, entry.term);
            // Each committed configuration in turn, so that a removal followed by an addition
            // again is seen: only a committed removal forgets a member's incarnation (one a new
            // leader cuts from the log leaves the member in, to be known as it was).
            this.#gate.retain(decodeConfig(entry.data), entry.index);
          } else {
            this.#proposals.applied(entry.index, entry.term, results[i]);
          }
          this.#bytesSinceSnapshot += entrySize(entry);
        });
        // A member forgotten on its committed removal stays forgotten across a crash.
        if (batch.some((entry) => entry.type === 'config')) await this.#persistIdentity();
        const last = batch.at(-1) as LogEntry;
        this.#appliedWaiters.advance(last.index);
        this.#emit('apply', {
          appliedIndex: last.index,
          entries: batch.length,
          durationMs: this.#clock.now() - applyStarted,
        });
      }
    } catch (error) {
      this.#fail(error);
    }
  }

  /** Persists the node identity now if it changed (it goes with the next write otherwise). */
  async #persistIdentity(): Promise<void> {
    const identity = this.#gate.takeChanged();
    if (identity === undefined) return;
    await this.#logWrites.run(() =>
      storage('persist the node identity', () => this.#logStore.persist({ identity })),
    );
  }

  // ---------------------------------------------------------------------------------------------
  // Proposals

  #envelope(command: Command, session: ClientSession | undefined): CommandEnvelope<Command> {
    // Leader-stamped time, never going back on this node (session expiry reads it).
    this.#lastTimestamp = Math.max(this.#lastTimestamp, this.#clock.wallTime());
    return {
      command,
      ...(session === undefined ? {} : { session }),
      timestamp: this.#lastTimestamp,
    };
  }

  #proposeLocally(bytes: Uint8Array, signal: AbortSignal | undefined): LocalProposal<Result> {
    const outcome = this.#engine.propose([bytes]);
    if (!outcome.ok) {
      if (outcome.reason === 'backpressure') throw new BackpressureError();
      // While handing leadership over, the leader points at the node about to lead.
      const leaderHint = outcome.reason === 'transferring' ? outcome.target : outcome.leaderHint;
      return { kind: 'not-leader', leaderHint };
    }
    const result = this.#proposals.add(outcome.index, outcome.term, signal);
    this.#kick();
    return { kind: 'proposed', index: outcome.index, term: outcome.term, result };
  }

  // ---------------------------------------------------------------------------------------------
  // Incoming requests

  readonly #handlePeerRequest: PeerHandler = async (from, request, { signal }) => {
    if (this.#stopped !== undefined) {
      return { type: 'rejected', reason: 'closed', message: this.#stopped.message };
    }
    const admission = this.#gate.admit(from, request.identity);
    if (!admission.ok) return { type: 'rejected', reason: 'refused', message: admission.message };
    switch (request.type) {
      case 'raft':
        return request.reply === true
          ? this.#stepMessagesAndReply(from, request.messages, signal)
          : this.#stepMessages(from, request.messages);
      case 'snapshot':
        return this.#snapshots.receive(from, request);
      case 'propose':
        return this.#forwarding.serve(request.envelope, signal);
    }
  };

  #stepMessages(from: NodeId, messages: readonly Message[]): PeerResponse {
    try {
      for (const message of messages) {
        if (message.from !== from || message.type === 'snapshot') {
          // A snapshot travels only with its data; a forged sender is not Raft's to trust.
          this.#logger.debug({ from, type: message.type }, 'dropped a malformed message');
          continue;
        }
        // A node told it lost its durable state grants no vote until the cluster accepts it.
        if (message.type === 'vote' && this.#gate.lostState) continue;
        this.#engine.step(message);
      }
    } catch (error) {
      this.#fail(error);
      return { type: 'rejected', reason: 'closed', message: 'the node stopped on a fatal error' };
    }
    this.#kick();
    return { type: 'ack' };
  }

  /**
   * Steps `messages`, then answers with this node's messages for `from` once the Ready that
   * reacts to them is carried out (see {@link ReplySlots}).
   */
  async #stepMessagesAndReply(
    from: NodeId,
    messages: readonly Message[],
    signal: AbortSignal,
  ): Promise<PeerResponse> {
    const stepped = this.#stepMessages(from, messages);
    if (stepped.type !== 'ack' || this.#stopped !== undefined) return stepped;
    const answers = await this.#replies.open(from, this.#readiesTaken + 1, signal, (unsent) =>
      this.#peers.send(unsent),
    );
    return {
      type: 'raft',
      messages: answers,
      identity: this.#gate.outgoing(from, this.#role === 'leader'),
    };
  }

  // ---------------------------------------------------------------------------------------------
  // Stopping

  #throwIfStopped(): void {
    if (this.#stopped !== undefined) throw this.#stopped;
  }

  /** Stops the node once, loudly, on a storage failure or a broken invariant. */
  #fail(cause: unknown): void {
    if (this.#fatal !== undefined) return;
    const error = cause instanceof Error ? cause : new Error(String(cause));
    this.#fatal = error;
    this.#logger.error({ err: error }, `fatal: the raft node stops: ${error.message}`);
    this.#stop(
      new NodeClosedError(`the Raft node stopped after a fatal error: ${error.message}`, {
        cause: error,
      }),
    );
    this.#emit('fatal', { error });
  }

  #stop(reason: NodeClosedError): void {
    if (this.#stopped !== undefined) return;
    this.#stopped = reason;
    this.#cancelTicks?.();
    this.#cancelTicks = undefined;
    this.#lifetime.abort(reason);
    this.#proposals.failAll(reason);
    this.#membership.failAll(reason);
    this.#reads.failAll(reason);
    this.#appliedWaiters.failAll(reason);
    for (const waiter of this.#durableWaiters) waiter.reject(reason);
    this.#durableWaiters = [];
    this.#replies.settleAll();
    this.#applyQueue = [];
  }

  async #close(): Promise<void> {
    this.#stop(new NodeClosedError());
    await this.#driving;
    await this.#applying;
    await this.#logWrites.idle();
    await this.#snapshots.idle();
    try {
      await this.#transport.close?.();
    } catch (error) {
      this.#logger.warn({ err: error }, 'closing the transport failed');
    }
    this.#logger.info({}, 'raft node closed');
  }

  #emit<E extends RaftNodeEventName>(event: E, ...args: RaftNodeEvents[E]): void {
    this.#events.emit(event, ...args);
  }
}

function isEmpty(ready: Ready): boolean {
  return (
    ready.softState === undefined &&
    ready.snapshot === undefined &&
    ready.write === undefined &&
    ready.messages.length === 0 &&
    ready.earlyMessages.length === 0 &&
    ready.committed.length === 0 &&
    ready.reads.length === 0
  );
}

/**
 * The identity a node starts with: the stored one, or, for storage never given one (new, or
 * written by a version before identities), a new incarnation with the `clusterId` option,
 * persisted before the node sends anything. Throws a `TypeError` when the storage belongs to
 * another cluster than the option says.
 */
async function startingIdentity(
  options: Pick<RaftNodeOptions<unknown, unknown>, 'clusterId' | 'random' | 'logStore' | 'signal'>,
  recovered: { identity: NodeIdentity | undefined; hardState: { term: number } },
  logger: Logger,
): Promise<NodeIdentity> {
  const stored = recovered.identity;
  const clusterId = options.clusterId ?? null;
  if (stored !== undefined && (clusterId === null || stored.clusterId === clusterId)) return stored;
  if (stored !== undefined && stored.clusterId !== null) {
    throw new TypeError(
      `this node's storage belongs to cluster ${stored.clusterId}, but the clusterId option says ${clusterId}: the node was given another cluster's database, or the wrong option`,
    );
  }
  const identity: NodeIdentity = stored ?? {
    clusterId,
    incarnation: newIncarnation(options.random),
    members: {},
  };
  const write = { identity: { ...identity, clusterId } };
  await storage('persist the node identity', () =>
    options.logStore.persist(write, options.signal === undefined ? {} : { signal: options.signal }),
  );
  if (stored === undefined && recovered.hardState.term > 0) {
    logger.warn(
      { incarnation: identity.incarnation },
      'this storage holds Raft state but no node identity (written by an earlier version): made one; peers learn it on first contact',
    );
  }
  return write.identity;
}

function cryptoSeededRandom(): RandomSource {
  const seed = globalThis.crypto.getRandomValues(new Uint32Array(1))[0] ?? 0;
  return seededRandom(seed);
}

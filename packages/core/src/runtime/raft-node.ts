import { validateConfig } from '../configuration.ts';
import { RaftEngine } from '../engine/raft-engine.ts';
import type { Ready, Role, SoftState } from '../engine/ready.ts';
import {
  BackpressureError,
  CommandError,
  InvariantViolationError,
  NodeClosedError,
  NotLeaderError,
  ProposalDroppedError,
  RaftError,
  ReadUnavailableError,
} from '../errors.ts';
import type { LogEntry, NodeId } from '../log-entry.ts';
import type { LogStore } from '../log-store.ts';
import { type Logger, noopLogger } from '../logger.ts';
import type { InstallSnapshot, Message, SnapshotMeta } from '../message.ts';
import { type RandomSource, seededRandom } from '../random.ts';
import type { SnapshotStore, StoredSnapshot } from '../snapshot-store.ts';
import type { ClientSession, CommandResult, StateMachine } from '../state-machine.ts';
import type { PeerHandler, PeerRequest, PeerResponse, Transport } from '../transport.ts';
import { abortable, linkedSignal } from './abortable.ts';
import { AppliedIndexWaiters } from './applied-index-waiters.ts';
import {
  type CommandCodec,
  type CommandEnvelope,
  jsonCodec,
  toAppliedEntry,
} from './command-codec.ts';
import { PeerOutbox } from './peer-outbox.ts';
import { ProposalTracker } from './proposal-tracker.ts';
import type { RaftNodeEventName, RaftNodeEvents } from './raft-node-events.ts';
import type { RaftNodeOptions } from './raft-node-options.ts';
import type { RaftNodeStatus } from './raft-node-status.ts';
import { ReadRequests } from './read-requests.ts';
import { recoverNodeState, storage } from './recover-node-state.ts';
import { SerialQueue } from './serial-queue.ts';
import { SharedDeadline } from './shared-deadline.ts';
import { TypedEvents } from './typed-events.ts';

/** Options of {@link RaftNode.propose}. */
export interface ProposeOptions {
  /** Makes the command exactly-once (thesis 6.3): a retry with the same session is safe. */
  readonly session?: ClientSession;
  /** Abandons the wait (rejecting with the signal's reason); the command may still apply. */
  readonly signal?: AbortSignal;
}

/** How {@link RaftNode.read} makes sure of what it reads. */
export type ReadConsistency = 'linearizable' | 'local';

/** Options of {@link RaftNode.read}. */
export interface ReadOptions {
  /**
   * `linearizable` (default): the read sees every write that completed before it started
   * (ReadIndex, thesis 6.4). `local`: reads this node's state now; fast, possibly stale.
   */
  readonly consistency?: ReadConsistency;
  readonly signal?: AbortSignal;
}

/** Linearizable reads that share one engine read (see RaftNode's #joinReadBatch). */
interface ReadBatch {
  readonly id: string;
  readonly deadline: AbortSignal;
  /** Settles once the node applied up to the batch's read index. */
  readonly applied: Promise<void>;
}

/** Received snapshot data kept until the engine installs it; older ones are dropped. */
const MAX_RECEIVED_SNAPSHOTS = 4;
/** Entries per `StateMachine.apply` call at most (the engine bounds batches by bytes too). */
const MAX_APPLY_BATCH = 4096;

interface RaftNodeInit<Command, Result> {
  readonly engine: RaftEngine;
  readonly options: RaftNodeOptions<Command, Result>;
  readonly logger: Logger;
  readonly applied: number;
}

/**
 * A Raft node: drives a {@link RaftEngine} with real timers, a log store, a transport, a state
 * machine and a snapshot store.
 *
 * - The consensus loop carries out one engine {@link Ready} at a time, in the order its contract
 *   gives: install a received snapshot, persist, send, hand committed entries to the apply loop,
 *   settle reads, advance. Ticks, messages and proposals keep reaching the engine while a persist
 *   is in flight, so the next Ready batches them (group commit).
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
  readonly #engine: RaftEngine;
  readonly #logStore: LogStore;
  readonly #stateMachine: StateMachine<Command, Result>;
  readonly #snapshotStore: SnapshotStore | undefined;
  readonly #transport: Transport;
  readonly #codec: CommandCodec<Command, Result>;
  readonly #logger: Logger;
  readonly #tickMs: number;
  readonly #forwardProposals: boolean;
  readonly #requestTimeoutMs: number;
  readonly #snapshotTimeoutMs: number;
  readonly #readTimeoutMs: number;
  readonly #forwardTimeoutMs: number;

  readonly #events: TypedEvents<RaftNodeEvents> = new TypedEvents(() => this.#logger);
  /** Aborted when the node stops: cuts outgoing requests short. */
  readonly #lifetime = new AbortController();
  readonly #raftDeadline: SharedDeadline;
  readonly #outbox: PeerOutbox;
  #readiesTaken = 0;
  #readiesDone = 0;
  #durableWaiters: { after: number; resolve: () => void; reject: (error: unknown) => void }[] = [];
  readonly #readDeadline: SharedDeadline;
  /** `persist` and `purge` are issued one at a time (LogStore contract). */
  readonly #logWrites = new SerialQueue();
  /** Snapshot store and state machine restore/export work, one at a time. */
  readonly #snapshotWork = new SerialQueue();
  readonly #proposals = new ProposalTracker<Result>();
  readonly #reads = new ReadRequests();
  readonly #appliedWaiters: AppliedIndexWaiters;
  readonly #receivedSnapshots = new Map<string, Uint8Array>();
  readonly #readIdPrefix = globalThis.crypto.randomUUID();

  #applyQueue: LogEntry[] = [];
  #applying: Promise<void> | undefined;
  #driving: Promise<void> | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;
  /** Set once the node stops; every later call fails with it. */
  #stopped: NodeClosedError | undefined;
  #fatal: Error | undefined;
  #closing: Promise<void> | undefined;
  #role: Role = 'follower';
  #leaderId: NodeId | null = null;
  #commitIndex = 0;
  #lastTimestamp = 0;
  #readSeq = 0;
  /** Read batches not yet handed to the engine, oldest first (see #joinReadBatch). */
  #openReadBatches: ReadBatch[] = [];

  private constructor(init: RaftNodeInit<Command, Result>) {
    const { options } = init;
    this.id = options.id;
    this.#engine = init.engine;
    this.#logStore = options.logStore;
    this.#stateMachine = options.stateMachine;
    this.#snapshotStore = options.snapshotStore;
    this.#transport = options.transport;
    this.#codec = options.codec ?? jsonCodec<Command, Result>();
    this.#logger = init.logger;
    this.#tickMs = options.tickMs ?? 15;
    this.#forwardProposals = options.forwardProposals ?? true;
    this.#requestTimeoutMs = options.requestTimeoutMs ?? 1000;
    this.#raftDeadline = new SharedDeadline(this.#lifetime.signal, this.#requestTimeoutMs);
    this.#outbox = new PeerOutbox({
      maxRequests: options.maxRequestsPerPeer ?? 2,
      maxQueued: 16_384,
    });
    this.#snapshotTimeoutMs = options.snapshotTimeoutMs ?? 30_000;
    this.#readTimeoutMs = options.readTimeoutMs ?? 5000;
    this.#forwardTimeoutMs = options.forwardTimeoutMs ?? 10_000;
    this.#readDeadline = new SharedDeadline(this.#lifetime.signal, this.#readTimeoutMs);
    this.#appliedWaiters = new AppliedIndexWaiters(init.applied);
    const status = init.engine.status();
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
    const tickMs = options.tickMs ?? 15;
    if (!(tickMs > 0)) throw new TypeError('tickMs must be positive');
    const baseLogger = options.logger ?? noopLogger;
    const logger = baseLogger.child?.({ node: options.id }) ?? baseLogger;
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
    const engine = new RaftEngine({
      id: options.id,
      config: recovered.config,
      hardState: recovered.hardState,
      snapshot: recovered.snapshot,
      entries: recovered.entries,
      applied: recovered.applied,
      random: options.random ?? cryptoSeededRandom(),
      ...(options.tuning === undefined ? {} : { tuning: options.tuning }),
      logger,
    });
    const node = new RaftNode<Command, Result>({
      engine,
      options,
      logger,
      applied: recovered.applied,
    });
    await options.transport.listen(node.#handlePeerRequest);
    node.#timer = setInterval(node.#tick, tickMs);
    node.#kick();
    logger.info(
      {
        term: recovered.hardState.term,
        snapshot: recovered.snapshot.index,
        lastIndex: recovered.snapshot.index + recovered.entries.length,
        applied: recovered.applied,
      },
      'raft node started',
    );
    return node;
  }

  // ---------------------------------------------------------------------------------------------
  // Public API

  /**
   * Replicates `command` and resolves with the state machine's result once it is applied on
   * this node (the leader's, for a forwarded proposal). Rejects with:
   * - {@link CommandError}: the handler refused the command (same outcome on every node);
   * - {@link NotLeaderError}: not the leader, and forwarding is off or no leader is known;
   * - {@link BackpressureError}: the leader holds too many uncommitted entries;
   * - {@link ProposalDroppedError}: a new leader overwrote the entry (retry with the session);
   * - a retryable {@link RaftError}: the forwarded request failed, outcome unknown;
   * - {@link NodeClosedError}; or the signal's reason once `signal` aborts.
   */
  async propose(command: Command, options: ProposeOptions = {}): Promise<Result> {
    this.#throwIfStopped();
    const { session, signal } = options;
    signal?.throwIfAborted();
    const bytes = this.#codec.encode(this.#envelope(command, session));
    const local = this.#proposeLocally(bytes, signal);
    let result: CommandResult<Result>;
    if (local.kind === 'proposed') {
      result = await local.result;
    } else if (
      this.#forwardProposals &&
      local.leaderHint !== null &&
      local.leaderHint !== this.id
    ) {
      result = await this.#forward(local.leaderHint, bytes, signal);
    } else {
      throw new NotLeaderError(local.leaderHint);
    }
    if (result.status === 'error') throw new CommandError(result.error);
    return result.value;
  }

  /**
   * Runs `fn` against this node's state machine. `linearizable` (the default) first confirms a
   * read index with the leader (thesis 6.4) and waits until this node applied up to it, so `fn`
   * sees every write that completed before the call; failure to confirm rejects with the
   * retryable {@link ReadUnavailableError}. `local` runs `fn` at once.
   */
  async read<T>(fn: () => T | Promise<T>, options: ReadOptions = {}): Promise<T> {
    this.#throwIfStopped();
    const { signal } = options;
    signal?.throwIfAborted();
    if ((options.consistency ?? 'linearizable') === 'local') return await fn();
    try {
      await abortable(this.#joinReadBatch(), signal);
    } catch (error) {
      signal?.throwIfAborted();
      throw error;
    }
    this.#throwIfStopped();
    return await fn();
  }

  /**
   * The linearizable read batch this read joins (thesis 6.4): reads that arrive before the
   * consensus loop hands their batch to the engine share one ReadIndex request, one heartbeat
   * round and one wait for the applied index. The engine takes the read index when the batch is
   * handed over, after every read of the batch arrived, so each read sees every write completed
   * before it started. Reads share a batch only when they share a deadline (see
   * {@link SharedDeadline}), so joining never shortens a read's deadline. Settles once this node
   * applied up to the read index, or rejects with ReadUnavailableError.
   */
  #joinReadBatch(): Promise<void> {
    const deadline = this.#readDeadline.signal();
    const open = this.#openReadBatches.at(-1);
    if (open !== undefined && open.deadline === deadline) return open.applied;
    const id = `${this.#readIdPrefix}:${++this.#readSeq}`;
    const applied = this.#reads
      .add(id, deadline)
      .then((index) => this.#appliedWaiters.wait(index, deadline))
      .catch((error: unknown) => {
        this.#engine.abandonRead(id);
        if (!isTimeout(deadline)) throw error;
        throw new ReadUnavailableError(
          `the read could not be confirmed and applied within ${this.#readTimeoutMs} ms`,
          { cause: error },
        );
      });
    this.#openReadBatches.push({ id, deadline, applied });
    this.#kick();
    return applied;
  }

  /** Hands the open read batches to the engine, except those past their deadline (settled). */
  #closeReadBatches(): void {
    if (this.#openReadBatches.length === 0) return;
    for (const batch of this.#openReadBatches) {
      if (!batch.deadline.aborted) this.#engine.readIndex(batch.id);
    }
    this.#openReadBatches = [];
  }

  /** The engine's state, the applied index and whether the node is closed. */
  status(): RaftNodeStatus {
    const status = this.#engine.status();
    return {
      id: this.id,
      role: status.role,
      term: status.term,
      leaderId: status.leaderId,
      commitIndex: status.commitIndex,
      appliedIndex: this.#appliedWaiters.applied,
      lastIndex: status.lastIndex,
      firstIndex: status.firstIndex,
      config: status.config,
      progress: status.progress,
      closed: this.#stopped !== undefined,
    };
  }

  /**
   * Exports the state machine at its applied position, saves it to the snapshot store, then
   * drops the log up to there from memory and from the log store (Raft paper 7). Resolves with
   * the stored snapshot, or `undefined` when nothing new was applied since the log's start. A
   * failure of a store is fatal, as everywhere.
   */
  async takeSnapshot(options: { signal?: AbortSignal } = {}): Promise<StoredSnapshot | undefined> {
    this.#throwIfStopped();
    const store = this.#snapshotStore;
    if (store === undefined) throw new TypeError('takeSnapshot() needs a snapshotStore');
    const { signal } = options;
    signal?.throwIfAborted();
    return this.#snapshotWork.run(async () => {
      this.#throwIfStopped();
      try {
        const exported = await storage('export a snapshot of the state machine', () =>
          this.#stateMachine.exportSnapshot({ signal }),
        );
        const { position } = exported;
        const status = this.#engine.status();
        if (position.index < status.firstIndex) return undefined;
        const meta: SnapshotMeta = {
          index: position.index,
          term: position.term,
          // The configuration as of the snapshot's last entry, not the latest (Raft paper 7).
          config: this.#engine.configAt(position.index),
        };
        const stored = await storage('save a snapshot', () =>
          store.save(meta, exported.chunks, { signal }),
        );
        this.#throwIfStopped();
        this.#engine.compact(meta);
        await this.#logWrites.run(() =>
          storage('purge the compacted log', () => this.#logStore.purge(position)),
        );
        this.#logger.info({ index: meta.index, term: meta.term }, 'took a snapshot');
        return stored;
      } catch (error) {
        signal?.throwIfAborted();
        if (error instanceof NodeClosedError) throw error;
        this.#fail(error);
        throw this.#stopped ?? error;
      }
    });
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
   * then closes the transport. Idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  // ---------------------------------------------------------------------------------------------
  // Consensus loop

  readonly #tick = (): void => {
    if (this.#stopped !== undefined) return;
    try {
      this.#engine.tick();
    } catch (error) {
      this.#fail(error);
      return;
    }
    this.#kick();
  };

  /** Makes sure the consensus loop runs; it drains every Ready the engine has. */
  #kick(): void {
    if (this.#stopped !== undefined || this.#driving !== undefined) return;
    this.#driving = this.#drive().finally(() => {
      this.#driving = undefined;
      // Inputs that arrived after the loop's last look (a read batch, or work that advance()
      // created after an empty Ready) must not wait for the next tick.
      if (this.#openReadBatches.length > 0 || this.#engine.hasReady()) this.#kick();
    });
  }

  async #drive(): Promise<void> {
    // Let inputs that arrive in the same pass of the event loop join this Ready: every request
    // and timer callback of this I/O phase (e.g. proposals arriving as separate HTTP requests).
    await new Promise<void>((resolve) => setImmediate(resolve));
    try {
      while (this.#stopped === undefined) {
        this.#closeReadBatches();
        if (!this.#engine.hasReady()) return;
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
    this.#durableWaiters = this.#durableWaiters.filter((waiter) => {
      if (this.#readiesDone < waiter.after) return true;
      waiter.resolve();
      return false;
    });
  }

  /**
   * Resolves once every input stepped into the engine so far is carried out: the next Ready
   * taken from now on has been persisted, sent and advanced (at once if there is none to take).
   */
  #whenCarriedOut(): Promise<void> {
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
    if (ready.snapshot !== undefined) await this.#installSnapshot(ready.snapshot);
    const write = ready.write;
    if (write !== undefined) {
      if (write.truncateFrom !== undefined) this.#proposals.truncatedFrom(write.truncateFrom);
      await this.#logWrites.run(() =>
        storage('persist to the log store', () => this.#logStore.persist(write)),
      );
    }
    if (this.#stopped !== undefined) return;
    this.#send(ready.messages);
    if (ready.committed.length > 0) {
      for (const entry of ready.committed) this.#applyQueue.push(entry);
      this.#startApplying();
    }
    if (ready.hardState.commitIndex > this.#commitIndex) {
      this.#commitIndex = ready.hardState.commitIndex;
      this.#emit('commit', { commitIndex: this.#commitIndex });
    }
    for (const read of ready.reads) this.#reads.settle(read);
  }

  #softStateChanged(soft: SoftState): void {
    const previousRole = this.#role;
    const previousLeader = this.#leaderId;
    this.#role = soft.role;
    this.#leaderId = soft.leaderId;
    if (soft.role !== previousRole) {
      this.#emit('role-change', { role: soft.role, previous: previousRole, term: soft.term });
    }
    if (soft.leaderId !== previousLeader) {
      this.#logger.info({ leader: soft.leaderId, term: soft.term }, 'leader changed');
      this.#emit('leader-change', { leaderId: soft.leaderId, term: soft.term });
    }
  }

  /**
   * Installs a snapshot the leader sent (Raft paper 7): saved to the snapshot store first, then
   * restored into the state machine, and recorded in the log store by the Ready's write. A crash
   * between the steps is repaired at the next start (see `recoverNodeState`).
   */
  async #installSnapshot(meta: SnapshotMeta): Promise<void> {
    const key = snapshotKey(meta);
    const data = this.#receivedSnapshots.get(key);
    if (data === undefined) {
      throw new InvariantViolationError(
        `the engine installs snapshot ${key}, but no data for it was received`,
      );
    }
    for (const [other, _] of this.#receivedSnapshots) {
      const index = Number(other.split('/')[0]);
      if (index <= meta.index) this.#receivedSnapshots.delete(other);
    }
    // The state machine applies one batch at a time; the restore replaces its whole state.
    await this.#drainApplying();
    if (this.#stopped !== undefined) return;
    this.#proposals.replacedBySnapshot(meta.index);
    const position = { index: meta.index, term: meta.term };
    await this.#snapshotWork.run(async () => {
      const store = this.#snapshotStore;
      if (store !== undefined) {
        await storage('save the received snapshot', () => store.save(meta, chunksOf(data)));
      }
      await storage('restore the state machine from a snapshot', () =>
        this.#stateMachine.restoreSnapshot(position, chunksOf(data)),
      );
    });
    this.#logger.info({ index: meta.index, term: meta.term }, 'installed a snapshot');
    this.#appliedWaiters.advance(meta.index);
    this.#emit('apply', { appliedIndex: meta.index });
  }

  /**
   * Sends messages fire-and-forget through the per-peer outbox (batched, a bounded number of
   * requests in flight per peer); failures tell the engine.
   */
  #send(messages: readonly Message[]): void {
    const byPeer = new Map<NodeId, Message[]>();
    for (const message of messages) {
      if (message.type === 'snapshot') {
        void this.#sendSnapshot(message);
        continue;
      }
      const batch = byPeer.get(message.to);
      if (batch === undefined) byPeer.set(message.to, [message]);
      else batch.push(message);
    }
    for (const [peer, batch] of byPeer) {
      this.#outbox.push(peer, batch);
      this.#flushPeer(peer);
    }
  }

  #flushPeer(peer: NodeId): void {
    for (;;) {
      const batch = this.#outbox.take(peer);
      if (batch === undefined) return;
      void this.#sendRaft(peer, batch).finally(() => {
        this.#outbox.done(peer);
        if (this.#stopped === undefined) this.#flushPeer(peer);
      });
    }
  }

  async #sendRaft(peer: NodeId, messages: Message[]): Promise<void> {
    try {
      const response = await this.#transport.request(
        peer,
        { type: 'raft', messages },
        { signal: this.#raftDeadline.signal() },
      );
      if (response.type !== 'ack') throw new Error(`${peer} answered ${describe(response)}`);
    } catch (error) {
      if (this.#stopped !== undefined) return;
      this.#logger.debug({ peer, err: error }, 'a peer is unreachable');
      this.#engine.reportUnreachable(peer);
      this.#kick();
    }
  }

  /** Sends the whole snapshot the engine names, read from the snapshot store. */
  async #sendSnapshot(message: InstallSnapshot): Promise<void> {
    const peer = message.to;
    const meta = message.snapshot;
    try {
      const store = this.#snapshotStore;
      if (store === undefined) {
        throw new Error('a follower needs a snapshot, but this node has no snapshot store');
      }
      const data = await this.#snapshotWork.run(async () => {
        const latest = await storage('read the latest snapshot', () => store.latest());
        if (latest === undefined || latest.index !== meta.index || latest.term !== meta.term) {
          throw new Error(`snapshot ${snapshotKey(meta)} is no longer the latest stored`);
        }
        return storage('read a snapshot', () =>
          collect(store.read(latest, { signal: this.#lifetime.signal })),
        );
      });
      using deadline = linkedSignal({
        parents: [this.#lifetime.signal],
        timeoutMs: this.#snapshotTimeoutMs,
      });
      const response = await this.#transport.request(
        peer,
        { type: 'snapshot', message, data },
        { signal: deadline.signal },
      );
      if (response.type !== 'ack') throw new Error(`${peer} answered ${describe(response)}`);
    } catch (error) {
      if (this.#stopped !== undefined) return;
      this.#logger.warn({ peer, index: meta.index, err: error }, 'sending a snapshot failed');
      this.#engine.reportSnapshotFailed(peer);
      this.#kick();
    }
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
        const results = await storage('apply committed entries to the state machine', () =>
          this.#stateMachine.apply(entries),
        );
        if (results.length !== batch.length) {
          throw new InvariantViolationError(
            `the state machine returned ${results.length} results for ${batch.length} entries`,
          );
        }
        batch.forEach((entry, i) => {
          this.#proposals.applied(entry.index, entry.term, results[i]);
        });
        const last = batch.at(-1) as LogEntry;
        this.#appliedWaiters.advance(last.index);
        this.#emit('apply', { appliedIndex: last.index });
      }
    } catch (error) {
      this.#fail(error);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Proposals

  #envelope(command: Command, session: ClientSession | undefined): CommandEnvelope<Command> {
    // Leader-stamped time, never going back on this node (session expiry reads it).
    this.#lastTimestamp = Math.max(this.#lastTimestamp, Date.now());
    return {
      command,
      ...(session === undefined ? {} : { session }),
      timestamp: this.#lastTimestamp,
    };
  }

  #proposeLocally(
    bytes: Uint8Array,
    signal: AbortSignal | undefined,
  ):
    | { kind: 'proposed'; result: Promise<CommandResult<Result>> }
    | { kind: 'not-leader'; leaderHint: NodeId | null } {
    const outcome = this.#engine.propose([bytes]);
    if (!outcome.ok) {
      if (outcome.reason === 'backpressure') throw new BackpressureError();
      // While handing leadership over, the leader points at the node about to lead.
      const leaderHint = outcome.reason === 'transferring' ? outcome.target : outcome.leaderHint;
      return { kind: 'not-leader', leaderHint };
    }
    const result = this.#proposals.add(outcome.index, outcome.term, signal);
    this.#kick();
    return { kind: 'proposed', result };
  }

  async #forward(
    leader: NodeId,
    envelope: Uint8Array,
    signal: AbortSignal | undefined,
  ): Promise<CommandResult<Result>> {
    let response: PeerResponse;
    using request = linkedSignal({
      parents: [signal, this.#lifetime.signal],
      timeoutMs: this.#forwardTimeoutMs,
    });
    try {
      response = await abortable(
        this.#transport.request(leader, { type: 'propose', envelope }, { signal: request.signal }),
        request.signal,
      );
    } catch (error) {
      signal?.throwIfAborted();
      this.#throwIfStopped();
      throw new RaftError(
        `forwarding the proposal to the leader ${leader} failed; its outcome is unknown (a retry is safe with a client session)`,
        { retryable: true, cause: error },
      );
    }
    switch (response.type) {
      case 'proposed':
        return this.#codec.decodeResult(response.result);
      case 'rejected':
        throw rejectionError(response, leader);
      case 'ack':
        throw new RaftError(`the leader ${leader} answered a proposal with an ack`, {
          retryable: true,
        });
    }
  }

  /** Serves a proposal a follower forwarded: proposes it here, as leader, and answers. */
  async #serveProposal(envelopeBytes: Uint8Array, signal: AbortSignal): Promise<PeerResponse> {
    let envelope: CommandEnvelope<Command>;
    try {
      envelope = this.#codec.decode(envelopeBytes);
    } catch (error) {
      return {
        type: 'rejected',
        reason: 'dropped',
        message: `malformed command envelope: ${String(error)}`,
      };
    }
    try {
      // Re-stamped with this leader's clock: the time every replica will see.
      const bytes = this.#codec.encode(this.#envelope(envelope.command, envelope.session));
      const local = this.#proposeLocally(bytes, signal);
      if (local.kind === 'not-leader') {
        return {
          type: 'rejected',
          reason: 'not-leader',
          leaderHint: local.leaderHint,
          message: new NotLeaderError(local.leaderHint).message,
        };
      }
      const result = await local.result;
      return { type: 'proposed', result: this.#codec.encodeResult(result) };
    } catch (error) {
      return rejectionResponse(error, signal);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Incoming requests

  readonly #handlePeerRequest: PeerHandler = async (from, request, { signal }) => {
    if (this.#stopped !== undefined) {
      return { type: 'rejected', reason: 'closed', message: this.#stopped.message };
    }
    switch (request.type) {
      case 'raft':
        return this.#stepMessages(from, request.messages);
      case 'snapshot':
        return this.#receiveSnapshot(from, request);
      case 'propose':
        return this.#serveProposal(request.envelope, signal);
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
   * Answers an InstallSnapshot only once the engine has handled it durably (installed, or found
   * not needed): a crash before that fails the sender's request, so the leader sends the
   * snapshot again instead of waiting for it forever.
   */
  async #receiveSnapshot(
    from: NodeId,
    request: PeerRequest & { type: 'snapshot' },
  ): Promise<PeerResponse> {
    const { message, data } = request;
    if (message.from !== from) return { type: 'ack' };
    this.#receivedSnapshots.set(snapshotKey(message.snapshot), data);
    while (this.#receivedSnapshots.size > MAX_RECEIVED_SNAPSHOTS) {
      const oldest = this.#receivedSnapshots.keys().next().value as string;
      this.#receivedSnapshots.delete(oldest);
    }
    try {
      this.#engine.step(message);
      await this.#whenCarriedOut();
    } catch (error) {
      if (this.#stopped === undefined) this.#fail(error);
      return { type: 'rejected', reason: 'closed', message: 'the node stopped' };
    }
    return { type: 'ack' };
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
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#lifetime.abort(reason);
    this.#proposals.failAll(reason);
    this.#reads.failAll(reason);
    this.#appliedWaiters.failAll(reason);
    for (const waiter of this.#durableWaiters) waiter.reject(reason);
    this.#durableWaiters = [];
    this.#applyQueue = [];
  }

  async #close(): Promise<void> {
    this.#stop(new NodeClosedError());
    await this.#driving;
    await this.#applying;
    await this.#logWrites.idle();
    await this.#snapshotWork.idle();
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
    ready.committed.length === 0 &&
    ready.reads.length === 0
  );
}

function snapshotKey(meta: { index: number; term: number }): string {
  return `${meta.index}/${meta.term}`;
}

async function* chunksOf(data: Uint8Array): AsyncIterable<Uint8Array> {
  yield data;
}

async function collect(chunks: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of chunks) {
    parts.push(chunk);
    size += chunk.byteLength;
  }
  const whole = new Uint8Array(size);
  let offset = 0;
  for (const part of parts) {
    whole.set(part, offset);
    offset += part.byteLength;
  }
  return whole;
}

function describe(response: PeerResponse): string {
  return response.type === 'rejected'
    ? `rejected (${response.reason}): ${response.message}`
    : response.type;
}

/** The typed error for a leader's refusal of a forwarded proposal. */
function rejectionError(response: PeerResponse & { type: 'rejected' }, leader: NodeId): RaftError {
  switch (response.reason) {
    case 'not-leader':
      return new NotLeaderError(response.leaderHint ?? null);
    case 'backpressure':
      return new BackpressureError(response.message);
    case 'dropped':
      return new ProposalDroppedError(response.message);
    case 'closed':
      return new NotLeaderError(null, {
        cause: new Error(`the leader ${leader} is closed: ${response.message}`),
      });
    case 'timeout':
      return new RaftError(
        `the leader ${leader} timed out on the proposal; its outcome is unknown (a retry is safe with a client session)`,
        { retryable: true },
      );
  }
}

/** The answer a leader gives a follower for a forwarded proposal that failed with `error`. */
function rejectionResponse(error: unknown, signal: AbortSignal): PeerResponse {
  const message = error instanceof Error ? error.message : String(error);
  if (error instanceof NotLeaderError) {
    return { type: 'rejected', reason: 'not-leader', leaderHint: error.leaderHint, message };
  }
  if (error instanceof BackpressureError)
    return { type: 'rejected', reason: 'backpressure', message };
  if (error instanceof ProposalDroppedError)
    return { type: 'rejected', reason: 'dropped', message };
  if (error instanceof NodeClosedError) return { type: 'rejected', reason: 'closed', message };
  // Anything else leaves the outcome unknown, which the follower reports as such.
  return {
    type: 'rejected',
    reason: 'timeout',
    message: signal.aborted ? message : `failed: ${message}`,
  };
}

function cryptoSeededRandom(): RandomSource {
  const seed = globalThis.crypto.getRandomValues(new Uint32Array(1))[0] ?? 0;
  return seededRandom(seed);
}

/** Whether `signal` aborted because its deadline passed. */
function isTimeout(signal: AbortSignal): boolean {
  return (
    signal.aborted && signal.reason instanceof DOMException && signal.reason.name === 'TimeoutError'
  );
}

import {
  allVoters,
  type ClusterConfig,
  encodeConfig,
  isJoint,
  isVoter,
  members,
  sameMembership,
} from '../configuration.ts';
import { InvariantViolationError } from '../errors.ts';
import type { HardState } from '../hard-state.ts';
import { entrySize, type LogEntry, type LogPosition, type NodeId } from '../log-entry.ts';
import type { LogWrite } from '../log-store.ts';
import { type Logger, noopLogger } from '../logger.ts';
import type {
  AppendEntries,
  AppendEntriesResponse,
  Heartbeat,
  HeartbeatResponse,
  InstallSnapshot,
  InstallSnapshotResponse,
  Message,
  ReadIndexRequest,
  ReadIndexResponse,
  RequestVote,
  RequestVoteResponse,
  SnapshotMeta,
  TimeoutNow,
} from '../message.ts';
import type { RandomSource } from '../random.ts';
import { ConfigHistory, type IndexedConfig } from './config-history.ts';
import { DEFAULT_ENGINE_TUNING, type EngineOptions, type EngineTuning } from './engine-options.ts';
import { Inflights } from './inflights.ts';
import { LeaderLease } from './leader-lease.ts';
import {
  type ChangeMode,
  leaveJoint,
  type MembershipChange,
  planChange,
  promoteLearner,
} from './membership-change.ts';
import { Progress, type ProgressState } from './progress.ts';
import { quorumIndex, voteResult } from './quorum.ts';
import { RaftLog } from './raft-log.ts';
import { ReadIndexTracker } from './read-index.ts';
import type { ReadResult, Ready, Role, SoftState } from './ready.ts';

/** Outcome of a proposal: the index and term of its first entry, or why it was refused. */
export type ProposeResult =
  | { readonly ok: true; readonly index: number; readonly term: number }
  | { readonly ok: false; readonly reason: 'not-leader'; readonly leaderHint: NodeId | null }
  | { readonly ok: false; readonly reason: 'backpressure' }
  | TransferringRefusal;

/** The leader is handing leadership over to `target` and accepts no proposals meanwhile. */
interface TransferringRefusal {
  readonly ok: false;
  readonly reason: 'transferring';
  readonly target: NodeId;
}

/**
 * Outcome of a membership change request: the index and term of the configuration entry
 * appended (C_old,new when `joint`: C_new follows by itself once it commits), or why none was:
 * - `not-leader`;
 * - `change-in-progress`: the latest configuration entry is not committed yet, or the
 *   configuration is joint (one change at a time, Raft paper 6);
 * - `leader-not-ready`: the leader has not committed an entry of its term yet (the safety
 *   condition of thesis 4.1; its no-op commits within a round trip);
 * - `transferring`: a leadership transfer is under way.
 */
export type ConfigChangeResult =
  | { readonly ok: true; readonly index: number; readonly term: number; readonly joint: boolean }
  | { readonly ok: false; readonly reason: 'not-leader'; readonly leaderHint: NodeId | null }
  | { readonly ok: false; readonly reason: 'change-in-progress' | 'leader-not-ready' }
  | TransferringRefusal;

/** Outcome of a leadership transfer request (thesis 3.10). */
export type TransferResult =
  | { readonly ok: true; readonly target: NodeId }
  | { readonly ok: false; readonly reason: 'not-leader'; readonly leaderHint: NodeId | null }
  | { readonly ok: false; readonly reason: 'no-target' | 'transferring' };

/** The leader's view of one member's log. */
export interface PeerProgress {
  readonly match: number;
  readonly next: number;
  readonly state: ProgressState;
  /** Heard from within the current CheckQuorum interval. */
  readonly recentActive: boolean;
}

/** A snapshot of the engine's state, for status reports and tests. */
export interface EngineStatus {
  readonly id: NodeId;
  readonly role: Role;
  readonly term: number;
  readonly votedFor: NodeId | null;
  readonly leaderId: NodeId | null;
  readonly commitIndex: number;
  readonly lastIndex: number;
  readonly lastTerm: number;
  readonly persistedIndex: number;
  readonly firstIndex: number;
  /** The configuration in effect: the latest in the log, committed or not (Raft paper 6). */
  readonly config: ClusterConfig;
  /** Index of the entry carrying `config` (the snapshot's index when it came with one). */
  readonly configIndex: number;
  /** The leader's view of each member it replicates to; empty when not leader. */
  readonly progress: Readonly<Record<NodeId, PeerProgress>>;
  /** The target of the leadership transfer under way, if any (leader only). */
  readonly leadTransferee: NodeId | null;
}

const EMPTY = new Uint8Array(0);

/**
 * The Raft consensus algorithm as a deterministic state machine (Raft paper, extended version;
 * Ongaro's thesis for PreVote, CheckQuorum and ReadIndex).
 *
 * It performs no I/O and reads no clock: time arrives through {@link tick}, messages through
 * {@link step}, requests through {@link propose} and {@link readIndex}. The work it asks for
 * accumulates until the driver collects it with {@link ready}, carries it out in the order the
 * {@link Ready} contract gives, and acknowledges it with {@link advance}. The same inputs in the
 * same order always give the same outputs.
 *
 * Methods throw {@link InvariantViolationError} only for states Raft forbids (a bug, or storage
 * that lost acknowledged data); the driver must then stop the node.
 */
export class RaftEngine {
  readonly id: NodeId;
  readonly #tuning: EngineTuning;
  readonly #random: RandomSource;
  readonly #logger: Logger;
  readonly #onFollowerLostEntries: EngineOptions['onFollowerLostEntries'];
  /** `term\nfollower` of the followers already reported for lost entries. */
  readonly #lostEntriesReported = new Set<string>();
  readonly #log: RaftLog;
  readonly #configs: ConfigHistory;
  /** Metadata of the snapshot the log starts after: what a lagging follower is sent. */
  #snapshotMeta: SnapshotMeta;

  #term: number;
  #votedFor: NodeId | null;
  #commitIndex: number;
  #role: Role = 'follower';
  #leaderId: NodeId | null = null;

  /** Ticks since this engine started: the clock of leases and of the restart guard. */
  #ticks = 0;
  /** Started with a durable term: this server may have acknowledged a leader before. */
  readonly #restarted: boolean;
  #electionElapsed = 0;
  #heartbeatElapsed = 0;
  #randomizedElectionTimeout = 0;
  #votes = new Map<NodeId, boolean>();
  #progress = new Map<NodeId, Progress>();
  #uncommittedBytes = 0;
  /** Leader: entries were appended that followers have not been sent yet. */
  #replicationPending = false;

  #reads = new ReadIndexTracker();
  readonly #lease: LeaderLease;
  /** Leader: the leadership transfer under way (thesis 3.10). */
  #transfer: { target: NodeId; elapsed: number; timeoutTicks: number } | undefined;
  /** Leader: reads that wait for the first commit of this term (thesis 6.4, step 1). */
  #readsAwaitingCommit: { id: string; origin: NodeId }[] = [];
  /** Follower: reads forwarded to the leader, awaiting its read index. */
  #forwardedReads = new Set<string>();
  /** Ticks since forwarded reads were last (re)sent; see #resendForwardedReads. */
  #readResendElapsed = 0;

  /** Highest index durable in the local store and still part of the log. */
  #persistedIndex: number;
  /** Highest index handed out to be applied. */
  #appliedHandedOut: number;
  /** A write handed out and not yet advanced: its last index, and any later truncation. */
  #inflightWrite: { lastIndex: number; cutAt: number } | undefined;
  #readyOutstanding = false;

  #messages: Message[] = [];
  #readResults: ReadResult[] = [];
  #snapshotToInstall: SnapshotMeta | undefined;
  #hardStateChanged = false;
  #commitChanged = false;
  #reportedSoftState: SoftState | undefined;

  constructor(options: EngineOptions) {
    this.id = options.id;
    this.#tuning = { ...DEFAULT_ENGINE_TUNING, ...options.tuning };
    if (this.#tuning.heartbeatTicks >= this.#tuning.electionTicks) {
      throw new TypeError('heartbeatTicks must be less than electionTicks');
    }
    if (this.#tuning.leaseReads && !this.#tuning.checkQuorum) {
      throw new TypeError('leaseReads needs checkQuorum');
    }
    if (!(this.#tuning.maxClockDrift >= 0)) throw new TypeError('maxClockDrift must be >= 0');
    this.#lease = new LeaderLease(this.#tuning);
    if (this.#tuning.leaseReads && this.#lease.leaseTicks < 1) {
      throw new TypeError('leaseReads needs a longer election timeout for this maxClockDrift');
    }
    this.#random = options.random;
    this.#logger = options.logger ?? noopLogger;
    this.#onFollowerLostEntries = options.onFollowerLostEntries;
    this.#log = new RaftLog(options.snapshot, options.entries);
    this.#configs = new ConfigHistory(
      { index: options.snapshot.index, config: options.config },
      options.entries,
    );
    this.#snapshotMeta = { ...options.snapshot, config: options.config };
    this.#term = options.hardState.term;
    this.#restarted = options.hardState.term > 0;
    this.#votedFor = options.hardState.votedFor;
    const lastIndex = this.#log.lastIndex;
    this.#commitIndex = Math.min(
      Math.max(options.hardState.commitIndex, options.snapshot.index),
      lastIndex,
    );
    this.#persistedIndex = lastIndex;
    this.#appliedHandedOut = Math.max(options.applied, options.snapshot.index);
    if (this.#appliedHandedOut > lastIndex) {
      throw new InvariantViolationError(
        `the state machine applied index ${options.applied} beyond the last log index ${lastIndex}`,
      );
    }
    this.#commitIndex = Math.max(this.#commitIndex, this.#appliedHandedOut);
    this.#resetElectionTimeout();
    this.#reportedSoftState = this.#softState();
  }

  /** The configuration in effect: the latest in the log, committed or not (Raft paper 6). */
  get #config(): ClusterConfig {
    return this.#configs.current.config;
  }

  // ---------------------------------------------------------------------------------------------
  // Inputs

  /** Advances logical time by one tick: election timeouts, heartbeats, CheckQuorum. */
  tick(): void {
    this.#ticks++;
    if (this.#role === 'leader') {
      this.#tickLeader();
    } else {
      this.#electionElapsed++;
      this.#resendForwardedReads();
      if (this.#electionElapsed >= this.#randomizedElectionTimeout && this.#promotable()) {
        this.#electionElapsed = 0;
        this.#campaign();
      }
    }
  }

  /**
   * Handles one message from a peer. Messages for another node are dropped. Messages from servers
   * outside this server's configuration are handled like any other: the configuration may be
   * behind the leader's (a new member's first AppendEntries, a vote from a voter added by an
   * entry this server has not received yet); removed servers are kept from disrupting the
   * cluster by PreVote and CheckQuorum (thesis 4.2.3).
   */
  step(m: Message): void {
    if (m.to !== this.id || m.from === this.id) {
      this.#logger.debug({ message: describe(m) }, 'dropped a message not meant for this node');
      return;
    }
    if (m.term > this.#term) {
      if (m.type === 'vote' && m.transfer !== true && this.#inLease()) {
        // Thesis 4.2.3: while a leader is known to be alive, a disruptive candidate is ignored
        // (a removed server among them). A candidate the leader handed over to is not.
        this.#logger.debug(
          { from: m.from, term: m.term },
          'ignored a vote request within the lease',
        );
        return;
      }
      const futureTermPrevote =
        (m.type === 'vote' && m.prevote) || (m.type === 'vote-response' && m.prevote && m.granted);
      if (!futureTermPrevote) {
        const leader =
          m.type === 'append' ||
          m.type === 'heartbeat' ||
          m.type === 'snapshot' ||
          m.type === 'timeout-now'
            ? m.from
            : null;
        // A vote request of a later term moves this server to that term, but its election timer
        // runs on unless it grants the vote (Raft paper, Figure 2, "Followers"): candidates whose
        // logs are behind cannot keep the up-to-date servers from ever timing out.
        const elapsed = this.#electionElapsed;
        const wasLeader = this.#role === 'leader';
        this.#becomeFollower(m.term, leader);
        if (m.type === 'vote' && !wasLeader) this.#electionElapsed = elapsed;
      }
    } else if (m.term < this.#term) {
      this.#answerStaleTerm(m);
      return;
    }

    switch (m.type) {
      case 'vote':
        this.#handleVote(m);
        return;
      case 'vote-response':
        this.#handleVoteResponse(m);
        return;
      case 'append':
      case 'heartbeat':
      case 'snapshot':
        this.#handleFromLeader(m);
        return;
      case 'append-response':
      case 'heartbeat-response':
      case 'snapshot-response':
        this.#handleFromFollower(m);
        return;
      case 'read-index':
        this.#handleReadIndexRequest(m);
        return;
      case 'read-index-response':
        this.#handleReadIndexResponse(m);
        return;
      case 'timeout-now':
        this.#handleTimeoutNow(m);
        return;
    }
  }

  /**
   * Appends commands to the leader's log. Refused on a non-leader (with the leader it knows) and,
   * with backpressure, when uncommitted entries already exceed `maxUncommittedBytes`.
   */
  propose(payloads: readonly Uint8Array[]): ProposeResult {
    if (this.#role !== 'leader') {
      return { ok: false, reason: 'not-leader', leaderHint: this.#leaderId };
    }
    if (this.#transfer !== undefined) {
      return { ok: false, reason: 'transferring', target: this.#transfer.target };
    }
    let bytes = 0;
    for (const data of payloads) bytes += data.byteLength + 24;
    if (
      this.#uncommittedBytes > 0 &&
      this.#uncommittedBytes + bytes > this.#tuning.maxUncommittedBytes
    ) {
      return { ok: false, reason: 'backpressure' };
    }
    const first = this.#log.lastIndex + 1;
    this.#log.append(
      payloads.map((data, i) => ({ index: first + i, term: this.#term, type: 'command', data })),
    );
    this.#uncommittedBytes += bytes;
    this.#afterLeaderAppend();
    return { ok: true, index: first, term: this.#term };
  }

  /**
   * Asks the leader for a change of membership (Raft paper 6, thesis 4). One change at a time:
   * it is refused while the latest configuration entry is uncommitted or joint, and until the
   * leader committed an entry of its term (thesis 4.1). A change of at most one voter takes one
   * step unless `mode` is `joint`; a larger one appends C_old,new, and the leader appends C_new
   * by itself once C_old,new commits. Each configuration takes effect when appended. Throws a
   * `TypeError`, changing nothing, when `change` is not a valid configuration.
   */
  proposeConfigChange(
    change: MembershipChange,
    options: { mode?: ChangeMode } = {},
  ): ConfigChangeResult {
    if (this.#role !== 'leader') {
      return { ok: false, reason: 'not-leader', leaderHint: this.#leaderId };
    }
    if (this.#transfer !== undefined) {
      return { ok: false, reason: 'transferring', target: this.#transfer.target };
    }
    const current = this.#configs.current;
    if (isJoint(current.config) || current.index > this.#commitIndex) {
      return { ok: false, reason: 'change-in-progress' };
    }
    if (this.#log.term(this.#commitIndex) !== this.#term) {
      return { ok: false, reason: 'leader-not-ready' };
    }
    const { config, joint } = planChange(current.config, change, options.mode ?? 'auto');
    const index = this.#appendConfig(config);
    return { ok: true, index, term: this.#term, joint };
  }

  /**
   * Hands leadership over to `to`, or to the voter whose log is most up to date (thesis 3.10).
   * The leader refuses proposals meanwhile, brings the target's log up to date, then sends it
   * TimeoutNow, and the target starts an election at once. The transfer ends when the leader
   * steps down, or after `timeoutTicks` (default: `electionTicks`), when the leader resumes;
   * {@link status} shows it under way in `leadTransferee`. A target that is not a voter of the
   * configuration, or this node itself, is a `TypeError`.
   */
  transferLeadership(options: { to?: NodeId; timeoutTicks?: number } = {}): TransferResult {
    if (this.#role !== 'leader') {
      return { ok: false, reason: 'not-leader', leaderHint: this.#leaderId };
    }
    const { to } = options;
    const timeoutTicks = options.timeoutTicks ?? this.#tuning.electionTicks;
    if (!Number.isSafeInteger(timeoutTicks) || timeoutTicks < 1) {
      throw new TypeError('timeoutTicks must be a positive integer');
    }
    if (to !== undefined) {
      if (to === this.id) throw new TypeError(`${to} is the leader already`);
      if (!this.#config.voters.includes(to)) {
        throw new TypeError(`${to} is not a voter of the configuration, so it cannot lead`);
      }
    }
    if (this.#transfer !== undefined) {
      return to === undefined || to === this.#transfer.target
        ? { ok: true, target: this.#transfer.target }
        : { ok: false, reason: 'transferring' };
    }
    const target = to ?? this.#mostUpToDateVoter();
    if (target === undefined) return { ok: false, reason: 'no-target' };
    this.#transfer = { target, elapsed: 0, timeoutTicks };
    this.#logger.info({ target, term: this.#term }, 'transferring leadership');
    if (!this.#sendTimeoutNowIfCaughtUp()) this.#sendAppend(target, true);
    return { ok: true, target };
  }

  /**
   * Requests a linearizable read (ReadIndex, thesis 6.4). The answer arrives in a later
   * {@link Ready}'s `reads` under the same `id`: a read index (serve the read once the state
   * machine has applied that far) or an error (retry, perhaps on another node).
   *
   * With `lease` (and `EngineTuning.leaseReads`), a leader whose lease holds answers at once
   * with its commit index, without a heartbeat round (thesis 6.4.1; see `leaseReads` for the
   * clock assumptions this rests on); otherwise the read takes the ReadIndex path.
   */
  readIndex(id: string, options: { lease?: boolean } = {}): void {
    if (this.#role === 'leader') {
      if (options.lease === true && this.#leaseHolds()) {
        this.#readResults.push({ id, index: this.#commitIndex });
        return;
      }
      this.#leaderRead(id, this.id);
    } else if (this.#leaderId !== null && this.#role === 'follower') {
      this.#forwardedReads.add(id);
      this.#send({ type: 'read-index', from: this.id, to: this.#leaderId, term: this.#term, id });
    } else {
      this.#readResults.push({ id, error: 'not-leader' });
    }
  }

  /**
   * A follower asks again, every other heartbeat interval, for the read indexes it still waits
   * for: a lost request or answer would otherwise fail the read at its deadline. The leader
   * answers each copy; the first answer settles the read and later ones are ignored. Every copy is
   * sent after the read arrived, so any answer is a valid read index for it (thesis 6.4).
   */
  #resendForwardedReads(): void {
    if (this.#forwardedReads.size === 0 || this.#role !== 'follower' || this.#leaderId === null) {
      this.#readResendElapsed = 0;
      return;
    }
    if (++this.#readResendElapsed < 2 * this.#tuning.heartbeatTicks) return;
    this.#readResendElapsed = 0;
    for (const id of this.#forwardedReads) {
      this.#send({ type: 'read-index', from: this.id, to: this.#leaderId, term: this.#term, id });
    }
  }

  /**
   * The driver gave up on read `id` (its deadline passed): a follower stops waiting for the
   * leader's answer to it. A leader keeps it until its heartbeat round settles; the answer is
   * then ignored by the driver.
   */
  abandonRead(id: string): void {
    this.#forwardedReads.delete(id);
  }

  /**
   * The driver saved a snapshot covering the log up to `meta.index` (at most the applied index):
   * followers that need entries before the log's start are sent it from now on, and entries up
   * to `meta.index - retainEntries` leave memory (Raft paper 7; the retained tail serves
   * followers a little behind with entries instead of the whole snapshot). Returns the position
   * the log now starts after when it moved, for the driver to purge its log store up to there.
   */
  compact(meta: SnapshotMeta, retainEntries = 0): LogPosition | undefined {
    if (meta.index > this.#appliedHandedOut || meta.index > this.#persistedIndex) {
      throw new InvariantViolationError(
        `cannot compact to ${meta.index}: beyond the applied (${this.#appliedHandedOut}) or persisted (${this.#persistedIndex}) index`,
      );
    }
    if (!(Number.isSafeInteger(retainEntries) && retainEntries >= 0)) {
      throw new RangeError(`retainEntries must be a non-negative integer, got ${retainEntries}`);
    }
    if (meta.index <= this.#snapshotMeta.index || meta.index <= this.#log.snapshot.index) {
      return undefined;
    }
    if (this.#log.term(meta.index) !== meta.term) {
      throw new InvariantViolationError(
        `snapshot at ${meta.index} has term ${meta.term}, the log has ${this.#log.term(meta.index)}`,
      );
    }
    const config = this.#configs.at(meta.index).config;
    if (!sameMembership(meta.config, config)) {
      throw new InvariantViolationError(
        `snapshot at ${meta.index} carries the configuration ${JSON.stringify(meta.config)}, the log has ${JSON.stringify(config)} there`,
      );
    }
    this.#snapshotMeta = meta;
    const upTo = meta.index - retainEntries;
    const term = this.#log.term(upTo);
    if (upTo <= this.#log.snapshot.index || term === undefined) return undefined;
    this.#log.compact(upTo);
    this.#configs.compactedTo(upTo);
    return { index: upTo, term };
  }

  /**
   * The configuration as of log index `index` (the latest at or before it): what a snapshot
   * covering the log up to `index` must carry. `index` must not precede the log's start.
   */
  configAt(index: number): ClusterConfig {
    return this.#configs.at(index).config;
  }

  /**
   * The configuration as of log index `index`, with the index of the entry that carries it (the
   * log's start for the configuration of its snapshot, or 0 for the bootstrap one). `index` must
   * not precede the log's start.
   */
  indexedConfigAt(index: number): IndexedConfig {
    return this.#configs.at(index);
  }

  /** The transport could not reach `peer`: stop pipelining to it until it answers again. */
  reportUnreachable(peer: NodeId): void {
    const pr = this.#progress.get(peer);
    if (pr?.state === 'replicate') pr.becomeProbe();
  }

  /** A snapshot transfer to `peer` failed: fall back to probing, which retries it. */
  reportSnapshotFailed(peer: NodeId): void {
    const pr = this.#progress.get(peer);
    if (pr?.state === 'snapshot') {
      pr.pendingSnapshot = 0;
      pr.becomeProbe();
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Output

  /** Whether {@link ready} has anything to hand out. */
  hasReady(): boolean {
    if (this.#readyOutstanding) return false;
    return (
      this.#messages.length > 0 ||
      this.#readResults.length > 0 ||
      this.#snapshotToInstall !== undefined ||
      this.#log.hasUnstable ||
      this.#hardStateChanged ||
      this.#replicationPending ||
      this.#reads.hasRoundToSend ||
      this.#applicableIndex() > this.#appliedHandedOut ||
      !sameSoftState(this.#reportedSoftState, this.#softState())
    );
  }

  /**
   * Collects the work accumulated since the last call (see {@link Ready} for what the driver
   * must do with it). At most one Ready is outstanding: call {@link advance} before the next.
   */
  ready(): Ready {
    if (this.#readyOutstanding) {
      throw new InvariantViolationError('ready() called again before advance()');
    }
    if (this.#role === 'leader') this.#flushLeader();

    const softState = this.#softState();
    const softChanged = !sameSoftState(this.#reportedSoftState, softState);
    this.#reportedSoftState = softState;

    const snapshot = this.#snapshotToInstall;
    this.#snapshotToInstall = undefined;
    const { truncateFrom, entries } = this.#log.takeUnstable();
    const hardState = this.#hardState();
    // The term and vote are durable unless this write carries a change of them: every earlier
    // write was carried out and advanced before this Ready (one Ready at a time).
    const termDurable = !this.#hardStateChanged;
    const writeHardState = this.#hardStateChanged || (this.#commitChanged && entries.length > 0);
    let write: LogWrite | undefined;
    if (
      snapshot !== undefined ||
      truncateFrom !== undefined ||
      entries.length > 0 ||
      writeHardState
    ) {
      write = {
        ...(snapshot === undefined
          ? {}
          : { snapshot: { index: snapshot.index, term: snapshot.term } }),
        ...(truncateFrom === undefined ? {} : { truncateFrom }),
        ...(entries.length === 0 ? {} : { entries }),
        ...(writeHardState ? { hardState } : {}),
      };
      if (writeHardState) {
        this.#hardStateChanged = false;
        this.#commitChanged = false;
      }
    }
    const last = entries.at(-1);
    this.#inflightWrite =
      last === undefined ? undefined : { lastIndex: last.index, cutAt: Number.POSITIVE_INFINITY };

    const committed = this.#takeCommitted();
    const { earlyMessages, messages } = this.#splitEarly(this.#messages, termDurable);
    this.#messages = [];
    const reads = this.#readResults;
    this.#readResults = [];
    this.#readyOutstanding = true;
    return {
      softState: softChanged ? softState : undefined,
      snapshot,
      write,
      messages,
      earlyMessages,
      committed,
      reads,
      hardState,
    };
  }

  /**
   * Which of `outgoing` may leave before this Ready's write is durable (thesis 10.2.1): the
   * AppendEntries of the current term, when that term (and the vote cast in it) is durable. An
   * AppendEntries promises nothing about the sender's storage; what the leader's own log holds
   * counts towards a commit only from {@link advance} on (`#persistedIndex` in
   * `#maybeCommit`). A term not yet durable must not be sent (Figure 2): a restart would forget
   * it and could vote again in it.
   */
  #splitEarly(
    outgoing: readonly Message[],
    termDurable: boolean,
  ): { earlyMessages: Message[]; messages: Message[] } {
    const earlyMessages: Message[] = [];
    const messages: Message[] = [];
    for (const m of outgoing) {
      if (termDurable && m.type === 'append' && m.term === this.#term) earlyMessages.push(m);
      else messages.push(m);
    }
    return { earlyMessages, messages };
  }

  /** The driver has carried out `ready`: its write is durable and its messages are sent. */
  advance(ready: Ready): void {
    if (!this.#readyOutstanding) throw new InvariantViolationError('advance() without ready()');
    this.#readyOutstanding = false;
    const written = this.#inflightWrite;
    this.#inflightWrite = undefined;
    if (ready.snapshot !== undefined) {
      this.#persistedIndex = Math.max(this.#persistedIndex, ready.snapshot.index);
    }
    if (written !== undefined) {
      const durable = Math.min(written.lastIndex, written.cutAt - 1, this.#log.lastIndex);
      this.#persistedIndex = Math.max(this.#persistedIndex, durable);
    }
    if (this.#role === 'leader' && this.#maybeCommit()) this.#broadcastAppend();
  }

  status(): EngineStatus {
    const progress: Record<NodeId, PeerProgress> = {};
    for (const [id, pr] of this.#progress) {
      progress[id] = {
        match: pr.match,
        next: pr.next,
        state: pr.state,
        recentActive: pr.recentActive,
      };
    }
    const { config, index: configIndex } = this.#configs.current;
    return {
      id: this.id,
      role: this.#role,
      term: this.#term,
      votedFor: this.#votedFor,
      leaderId: this.#leaderId,
      commitIndex: this.#commitIndex,
      lastIndex: this.#log.lastIndex,
      lastTerm: this.#log.lastTerm,
      persistedIndex: this.#persistedIndex,
      firstIndex: this.#log.firstIndex,
      config,
      configIndex,
      progress,
      leadTransferee: this.#transfer?.target ?? null,
    };
  }

  /** The entry at `index` if the engine still holds it in memory (tests and invariant checks). */
  entry(index: number): LogEntry | undefined {
    return this.#log.entry(index);
  }

  // ---------------------------------------------------------------------------------------------
  // Elections

  #promotable(): boolean {
    return isVoter(this.#config, this.id);
  }

  /**
   * Whether this server counts as having heard from a leader within an election timeout, so it
   * refuses votes for a later term (thesis 4.2.3, with CheckQuorum). With lease reads it also
   * does so for its first election timeout after a restart: what it heard before was in memory,
   * and a leader's lease may count on its acknowledgement of a heartbeat. (A server whose durable
   * term is 0 never acknowledged a leader: it acknowledges only after persisting the term.)
   */
  #inLease(): boolean {
    if (!this.#tuning.checkQuorum) return false;
    if (this.#tuning.leaseReads && this.#restarted && this.#ticks < this.#tuning.electionTicks) {
      return true;
    }
    return this.#leaderId !== null && this.#electionElapsed < this.#tuning.electionTicks;
  }

  #resetElectionTimeout(): void {
    const base = this.#tuning.electionTicks;
    this.#randomizedElectionTimeout = base + Math.floor(this.#random.next() * base);
  }

  #campaign(): void {
    if (this.#tuning.preVote) this.#becomePreCandidate();
    else this.#becomeCandidate(false);
  }

  #becomePreCandidate(): void {
    // A pre-vote changes neither term nor vote (thesis 9.6): a partitioned node cannot inflate
    // its term and disrupt the cluster when it returns.
    this.#role = 'pre-candidate';
    this.#leaderId = null;
    this.#votes = new Map([[this.id, true]]);
    this.#logger.info({ term: this.#term }, 'starting a pre-vote');
    this.#requestVotes(true, false);
  }

  /** `transfer`: the leader handed leadership over (thesis 3.10); voters skip the lease check. */
  #becomeCandidate(transfer: boolean): void {
    this.#resetState(this.#term + 1);
    this.#role = 'candidate';
    this.#votedFor = this.id;
    this.#hardStateChanged = true;
    this.#votes = new Map([[this.id, true]]);
    this.#logger.info({ term: this.#term }, 'starting an election');
    this.#requestVotes(false, transfer);
  }

  #requestVotes(prevote: boolean, transfer: boolean): void {
    if (voteResult(this.#config, this.#votes) === 'won') {
      this.#electionWon(prevote);
      return;
    }
    const term = prevote ? this.#term + 1 : this.#term;
    for (const to of allVoters(this.#config)) {
      if (to === this.id) continue;
      this.#send({
        type: 'vote',
        from: this.id,
        to,
        term,
        prevote,
        lastIndex: this.#log.lastIndex,
        lastTerm: this.#log.lastTerm,
        ...(transfer ? { transfer } : {}),
      });
    }
  }

  #electionWon(prevote: boolean): void {
    if (prevote) this.#becomeCandidate(false);
    else this.#becomeLeader();
  }

  /** Thesis 3.10: the leader handed leadership over to this server; campaign now. */
  #handleTimeoutNow(m: TimeoutNow): void {
    if (this.#role === 'leader' || !this.#promotable()) {
      this.#logger.info({ from: m.from }, 'ignored TimeoutNow: not a voter that could lead');
      return;
    }
    this.#logger.info({ from: m.from, term: m.term }, 'leadership handed over: campaigning now');
    this.#becomeCandidate(true);
  }

  #handleVote(m: RequestVote): void {
    // Raft paper 5.2 and 5.4.1: at most one vote per term, and only for a log at least as up to
    // date as ours. Thesis 9.6: a pre-vote for a later term is granted only by a server that has
    // not heard from a leader within an election timeout, so a returning server cannot depose
    // a working leader even without CheckQuorum.
    const heardFromLeader =
      this.#leaderId !== null && this.#electionElapsed < this.#tuning.electionTicks;
    const canVote =
      this.#votedFor === m.from ||
      (this.#votedFor === null && this.#leaderId === null) ||
      (m.prevote && m.term > this.#term && !heardFromLeader);
    const granted = canVote && this.#log.isUpToDate(m.lastIndex, m.lastTerm);
    if (granted && !m.prevote) {
      this.#votedFor = m.from;
      this.#hardStateChanged = true;
      this.#electionElapsed = 0;
    }
    this.#send({
      type: 'vote-response',
      from: this.id,
      to: m.from,
      term: m.prevote && granted ? m.term : this.#term,
      prevote: m.prevote,
      granted,
    });
  }

  #handleVoteResponse(m: RequestVoteResponse): void {
    const expected =
      this.#role === 'pre-candidate' ? true : this.#role === 'candidate' ? false : null;
    if (expected === null || m.prevote !== expected) return;
    if (this.#votes.has(m.from)) return;
    this.#votes.set(m.from, m.granted);
    const result = voteResult(this.#config, this.#votes);
    if (result === 'won') this.#electionWon(m.prevote);
    else if (result === 'lost') this.#becomeFollower(this.#term, null);
  }

  // ---------------------------------------------------------------------------------------------
  // Role changes

  #resetState(term: number): void {
    if (term !== this.#term) {
      this.#term = term;
      this.#votedFor = null;
      this.#hardStateChanged = true;
    }
    this.#leaderId = null;
    this.#electionElapsed = 0;
    this.#heartbeatElapsed = 0;
    this.#resetElectionTimeout();
    this.#votes = new Map();
    this.#progress = new Map();
    this.#transfer = undefined;
    this.#uncommittedBytes = 0;
    this.#replicationPending = false;
    this.#failLeaderReads();
    this.#failForwardedReads();
  }

  #becomeFollower(term: number, leaderId: NodeId | null): void {
    const wasLeader = this.#role === 'leader';
    this.#resetState(term);
    this.#role = 'follower';
    this.#leaderId = leaderId;
    if (wasLeader) this.#logger.info({ term }, 'stepped down');
  }

  #becomeLeader(): void {
    this.#resetState(this.#term);
    this.#role = 'leader';
    this.#leaderId = this.id;
    // Uncommitted entries inherited from earlier terms count toward backpressure like the
    // leader's own: #commitTo subtracts every command it commits.
    for (let i = this.#commitIndex + 1; i <= this.#log.lastIndex; i++) {
      const entry = this.#log.entry(i);
      if (entry?.type === 'command') this.#uncommittedBytes += entrySize(entry);
    }
    this.#lease.reset();
    this.#syncProgress();
    // Raft paper 8: a no-op of the new term lets earlier entries commit and ReadIndex proceed.
    this.#log.append([
      { index: this.#log.lastIndex + 1, term: this.#term, type: 'noop', data: EMPTY },
    ]);
    this.#afterLeaderAppend();
    this.#logger.info({ term: this.#term }, 'became leader');
  }

  /**
   * Keeps a progress for each server the leader replicates to: the members of the configuration
   * in effect, and those of the committed one, so that a server being removed receives the
   * entry that removes it (and stops campaigning) until that entry commits. A new one starts
   * probing at `next`.
   */
  #syncProgress(next = this.#log.lastIndex + 1): void {
    const targets = new Set([
      ...members(this.#config),
      ...members(this.#configs.at(this.#commitIndex).config),
    ]);
    targets.delete(this.id);
    for (const id of targets) {
      if (this.#progress.has(id)) continue;
      const pr = new Progress(
        next,
        new Inflights(this.#tuning.maxInflightMessages, this.#tuning.maxInflightBytes),
      );
      this.#progress.set(id, pr);
    }
    for (const id of this.#progress.keys()) {
      if (!targets.has(id)) this.#progress.delete(id);
    }
  }

  /** Appends a configuration entry; it takes effect at once (Raft paper 6). Returns its index. */
  #appendConfig(config: ClusterConfig): number {
    const index = this.#log.lastIndex + 1;
    const entry: LogEntry = { index, term: this.#term, type: 'config', data: encodeConfig(config) };
    this.#log.append([entry]);
    this.#configs.appended([entry]);
    this.#logger.info(
      { index, term: this.#term, config },
      isJoint(config) ? 'entering a joint configuration' : 'appending a configuration',
    );
    // A new member is sent the entry that adds it at once (and probes back from there).
    this.#syncProgress(index);
    this.#afterLeaderAppend();
    return index;
  }

  /**
   * What a leader does on its own about membership, once its latest configuration is committed
   * (and an entry of its term with it, thesis 4.1), unless a leadership transfer is under way:
   * - step down when that configuration leaves it out of the voters (Raft paper 6), handing over
   *   to the most up-to-date voter first so that the cluster need not wait for an election
   *   timeout;
   * - append C_new when that configuration is C_old,new (Raft paper 6);
   * - promote one caught-up learner marked `autoPromote` (one step, thesis 4.1).
   */
  #membershipDuties(): void {
    if (this.#role !== 'leader' || this.#transfer !== undefined) return;
    const current = this.#configs.current;
    if (current.index > this.#commitIndex || this.#log.term(this.#commitIndex) !== this.#term) {
      return;
    }
    this.#syncProgress();
    const config = current.config;
    if (!isVoter(config, this.id)) {
      const successor = this.#mostUpToDateVoter();
      const pr = successor === undefined ? undefined : this.#progress.get(successor);
      if (successor !== undefined && pr?.match === this.#log.lastIndex) {
        this.#sendTimeoutNow(successor);
      }
      this.#logger.info(
        { term: this.#term, successor: successor ?? null },
        'stepping down: the committed configuration does not include this leader',
      );
      this.#becomeFollower(this.#term, null);
      return;
    }
    if (isJoint(config)) {
      this.#appendConfig(leaveJoint(config));
      return;
    }
    for (const id of config.autoPromote ?? []) {
      const pr = this.#progress.get(id);
      // Caught up (match only grows on the learner's acknowledgements), and heard from lately. A
      // learner that acknowledged no entry nor snapshot yet (match 0) holds what the leader does
      // not know, so it is not caught up, however short the log.
      if (
        pr?.recentActive &&
        pr.match > 0 &&
        pr.match + this.#tuning.promotionLagEntries >= this.#log.lastIndex
      ) {
        this.#logger.info({ learner: id, match: pr.match }, 'promoting a caught-up learner');
        this.#appendConfig(promoteLearner(config, id));
        return;
      }
    }
  }

  /** The voter of C_new (other than this node) whose log is the longest; ties go to the lower id. */
  #mostUpToDateVoter(): NodeId | undefined {
    let best: { id: NodeId; match: number } | undefined;
    for (const id of [...this.#config.voters].sort()) {
      if (id === this.id) continue;
      const match = this.#progress.get(id)?.match ?? 0;
      if (best === undefined || match > best.match) best = { id, match };
    }
    return best?.id;
  }

  /** Sends TimeoutNow to the transfer's target once its log matches the leader's. */
  #sendTimeoutNowIfCaughtUp(): boolean {
    const transfer = this.#transfer;
    if (transfer === undefined) return false;
    if (this.#progress.get(transfer.target)?.match !== this.#log.lastIndex) return false;
    this.#sendTimeoutNow(transfer.target);
    return true;
  }

  #sendTimeoutNow(to: NodeId): void {
    this.#send({ type: 'timeout-now', from: this.id, to, term: this.#term });
  }

  /** Whether a lease read may be answered now (thesis 6.4.1; see `EngineTuning.leaseReads`). */
  #leaseHolds(): boolean {
    return (
      this.#tuning.leaseReads &&
      this.#transfer === undefined &&
      this.#log.term(this.#commitIndex) === this.#term &&
      this.#lease.holds(this.#reads.confirmedRound(this.#config, this.id), this.#ticks)
    );
  }

  // ---------------------------------------------------------------------------------------------
  // Leader

  #tickLeader(): void {
    this.#heartbeatElapsed++;
    this.#electionElapsed++;
    const transfer = this.#transfer;
    if (transfer !== undefined && ++transfer.elapsed >= transfer.timeoutTicks) {
      this.#logger.warn(
        { target: transfer.target, ticks: transfer.timeoutTicks },
        'the leadership transfer timed out; this leader resumes',
      );
      this.#transfer = undefined;
    }
    if (this.#electionElapsed >= this.#tuning.electionTicks) {
      this.#electionElapsed = 0;
      if (this.#tuning.checkQuorum) {
        // Thesis 6.2: a leader that cannot hear from a quorum steps down, so that clients look
        // for the real leader and its reads stop.
        const active = new Map<NodeId, boolean>([[this.id, true]]);
        for (const [id, pr] of this.#progress) {
          active.set(id, pr.recentActive);
          pr.recentActive = false;
        }
        if (voteResult(this.#config, active) !== 'won') {
          this.#logger.info({ term: this.#term }, 'no quorum heard within an election timeout');
          this.#becomeFollower(this.#term, null);
          return;
        }
      }
    }
    if (this.#heartbeatElapsed >= this.#tuning.heartbeatTicks) {
      this.#heartbeatElapsed = 0;
      this.#broadcastHeartbeat(this.#reads.nextRound());
    }
    this.#membershipDuties();
  }

  #afterLeaderAppend(): void {
    this.#replicationPending = true;
    // A single voter commits as soon as its own write is durable (see advance()).
  }

  /** Sends what proposals and reads accumulated since the last Ready, batched. */
  #flushLeader(): void {
    if (this.#replicationPending) {
      this.#replicationPending = false;
      this.#broadcastAppend();
    }
    const round = this.#reads.takeRoundToSend();
    if (round !== undefined) this.#broadcastHeartbeat(round);
  }

  #broadcastAppend(): void {
    for (const peer of this.#progress.keys()) {
      while (this.#sendAppend(peer, false)) {
        // Keep the pipeline full while the window has room and entries remain.
      }
    }
  }

  #broadcastHeartbeat(round: number): void {
    this.#lease.roundSent(round, this.#ticks);
    for (const [to, pr] of this.#progress) {
      const heartbeat: Heartbeat = {
        type: 'heartbeat',
        from: this.id,
        to,
        term: this.#term,
        commit: Math.min(pr.match, this.#commitIndex),
        round,
      };
      this.#send(heartbeat);
    }
  }

  /**
   * Sends `to` the entries it needs next, or a snapshot when they are compacted away. Returns
   * whether something was sent.
   */
  #sendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const pr = this.#progress.get(to);
    if (pr === undefined || pr.paused) return false;
    const prevIndex = pr.next - 1;
    const prevTerm = this.#log.term(prevIndex);
    const entries = this.#log.slice(
      pr.next,
      this.#log.lastIndex + 1,
      this.#tuning.maxBytesPerMessage,
      this.#tuning.maxEntriesPerMessage,
    );
    if (prevTerm === undefined || entries === undefined) {
      pr.becomeSnapshot(this.#snapshotMeta.index);
      const message: InstallSnapshot = {
        type: 'snapshot',
        from: this.id,
        to,
        term: this.#term,
        snapshot: this.#snapshotMeta,
      };
      this.#send(message);
      this.#logger.info({ to, index: this.#snapshotMeta.index }, 'sending a snapshot');
      return true;
    }
    if (entries.length === 0 && !sendIfEmpty) return false;
    let bytes = 0;
    for (const entry of entries) bytes += entrySize(entry);
    const message: AppendEntries = {
      type: 'append',
      from: this.id,
      to,
      term: this.#term,
      prevIndex,
      prevTerm,
      entries,
      commit: this.#commitIndex,
    };
    this.#send(message);
    pr.sent(prevIndex + entries.length, entries.length, bytes);
    return entries.length > 0;
  }

  #handleFromFollower(
    m: AppendEntriesResponse | HeartbeatResponse | InstallSnapshotResponse,
  ): void {
    if (this.#role !== 'leader') return;
    const pr = this.#progress.get(m.from);
    if (pr === undefined) return;
    pr.recentActive = true;
    switch (m.type) {
      case 'append-response':
        this.#handleAppendResponse(m, pr);
        return;
      case 'heartbeat-response':
        // A heartbeat sent after the follower acknowledged `match`, answered with a shorter log:
        // the follower lost entries it had acknowledged as durable.
        if (m.round > pr.matchRound && m.lastIndex < pr.match) {
          this.#followerLostEntries(m.from, pr.match, m.lastIndex);
          // Replicate to it again from what it holds now, or it would never get those entries.
          pr.match = m.lastIndex;
          pr.becomeProbe();
        }
        if (pr.state === 'snapshot' && m.lastIndex >= pr.pendingSnapshot) {
          // The follower installed the snapshot but its acknowledgement was lost.
          pr.becomeProbe();
        }
        pr.probeSent = false;
        if (pr.state === 'replicate' && pr.inflights.full) pr.inflights.freeFirst();
        if (m.round > 0) {
          this.#reads.acknowledge(m.from, m.round);
          this.#releaseConfirmedReads();
        }
        if (pr.match < this.#log.lastIndex) this.#sendAppend(m.from, true);
        else if (m.from === this.#transfer?.target) this.#sendTimeoutNowIfCaughtUp();
        return;
      case 'snapshot-response':
        if (pr.state !== 'snapshot') return;
        pr.acknowledge(m.index);
        pr.matchRound = this.#reads.sentRound;
        pr.becomeProbe();
        this.#sendAppend(m.from, true);
        return;
    }
  }

  #handleAppendResponse(m: AppendEntriesResponse, pr: Progress): void {
    if (!m.success) {
      // Fast back-tracking: jump past the follower's whole conflicting term in one step.
      const probeLimit =
        m.hint === undefined
          ? m.index - 1
          : this.#log.findConflictByTerm(m.hint.index, m.hint.term).index;
      if (pr.reject(m.index, probeLimit)) {
        if (pr.state === 'replicate') pr.becomeProbe();
        this.#sendAppend(m.from, true);
      }
      return;
    }
    if (m.index > this.#log.lastIndex) {
      throw new InvariantViolationError(
        `${m.from} acknowledged index ${m.index} beyond the leader's last index ${this.#log.lastIndex}`,
      );
    }
    if (!pr.acknowledge(m.index)) return;
    pr.matchRound = this.#reads.sentRound;
    switch (pr.state) {
      case 'probe':
        pr.becomeReplicate();
        break;
      case 'snapshot':
        if (pr.match >= pr.pendingSnapshot) pr.becomeProbe();
        break;
      case 'replicate':
        pr.inflights.freeTo(m.index);
        break;
    }
    if (this.#maybeCommit()) {
      this.#broadcastAppend();
    } else {
      while (this.#sendAppend(m.from, false)) {
        // Refill the window that the acknowledgement opened.
      }
    }
    if (m.from === this.#transfer?.target) this.#sendTimeoutNowIfCaughtUp();
    this.#membershipDuties();
  }

  /** Reports, once per follower and term, a follower that lost entries it had acknowledged. */
  #followerLostEntries(follower: NodeId, acknowledged: number, lastIndex: number): void {
    const key = `${this.#term}\n${follower}`;
    if (this.#lostEntriesReported.has(key)) return;
    this.#lostEntriesReported.add(key);
    this.#logger.error(
      { follower, term: this.#term, acknowledged, lastIndex },
      `follower ${follower} acknowledged entries through index ${acknowledged} but its log now ends at ${lastIndex}: it lost entries it said were durable. Check that its storage keeps what it acknowledges (fsync, synchronous_commit on) and that its database was not restored from an older backup; if it was, remove it and add it back as a new learner (see the README's runbook for replacing a node)`,
    );
    this.#onFollowerLostEntries?.({ follower, term: this.#term, acknowledged, lastIndex });
  }

  /**
   * Advances the commit index to the highest index a quorum holds, but only through an entry
   * of the current term (Raft paper 5.4.2, Figure 8): older entries commit indirectly. The
   * leader counts itself at its persisted index, never at its last index: its AppendEntries
   * leave before its own write is durable (`Ready.earlyMessages`), so followers may acknowledge
   * an entry the leader's disk does not hold yet, and a quorum must hold an entry durably.
   */
  #maybeCommit(): boolean {
    const index = quorumIndex(this.#config, (id) =>
      id === this.id ? this.#persistedIndex : (this.#progress.get(id)?.match ?? 0),
    );
    if (index <= this.#commitIndex || this.#log.term(index) !== this.#term) return false;
    this.#commitTo(index);
    this.#membershipDuties();
    return true;
  }

  #commitTo(index: number): void {
    if (index <= this.#commitIndex) return;
    if (index > this.#log.lastIndex) {
      throw new InvariantViolationError(
        `commit index ${index} beyond the last log index ${this.#log.lastIndex}`,
      );
    }
    if (this.#role === 'leader') {
      for (let i = this.#commitIndex + 1; i <= index; i++) {
        const entry = this.#log.entry(i);
        if (entry?.type === 'command') this.#uncommittedBytes -= entrySize(entry);
      }
      this.#uncommittedBytes = Math.max(0, this.#uncommittedBytes);
    }
    this.#commitIndex = index;
    this.#commitChanged = true;
    if (this.#role === 'leader' && this.#log.term(index) === this.#term) {
      const waiting = this.#readsAwaitingCommit;
      this.#readsAwaitingCommit = [];
      for (const read of waiting) this.#leaderRead(read.id, read.origin);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Follower

  #handleFromLeader(m: AppendEntries | Heartbeat | InstallSnapshot): void {
    if (this.#role === 'leader') {
      throw new InvariantViolationError(
        `two leaders in term ${this.#term}: ${this.id} and ${m.from} (Election Safety)`,
      );
    }
    if (this.#role !== 'follower') this.#becomeFollower(this.#term, m.from);
    if (this.#leaderId !== m.from) {
      this.#failForwardedReads();
      this.#leaderId = m.from;
    }
    this.#electionElapsed = 0;
    switch (m.type) {
      case 'append':
        this.#handleAppend(m);
        return;
      case 'heartbeat':
        this.#commitTo(Math.min(m.commit, this.#log.lastIndex));
        this.#send({
          type: 'heartbeat-response',
          from: this.id,
          to: m.from,
          term: this.#term,
          round: m.round,
          lastIndex: this.#log.lastIndex,
        });
        return;
      case 'snapshot':
        this.#handleSnapshot(m);
        return;
    }
  }

  /** Raft paper, Figure 2, AppendEntries RPC, receiver implementation. */
  #handleAppend(m: AppendEntries): void {
    const reply = (response: {
      success: boolean;
      index: number;
      hint?: { index: number; term: number };
    }) =>
      this.#send({
        type: 'append-response',
        from: this.id,
        to: m.from,
        term: this.#term,
        ...response,
      });

    if (m.prevIndex < this.#commitIndex) {
      // Everything up to our commit index already matches the leader (Log Matching).
      reply({ success: true, index: this.#commitIndex });
      return;
    }
    if (!this.#log.matchTerm(m.prevIndex, m.prevTerm)) {
      // Step 2: reply false, with a hint that skips the conflicting term.
      const hint = this.#log.findConflictByTerm(
        Math.min(m.prevIndex, this.#log.lastIndex),
        m.prevTerm,
      );
      reply({ success: false, index: m.prevIndex, hint });
      return;
    }
    // Steps 3-4: delete a conflicting suffix, append what is new, never touch what matches.
    const conflict = this.#log.findConflict(m.entries);
    if (conflict !== undefined) {
      if (conflict.index <= this.#commitIndex) {
        throw new InvariantViolationError(
          `entry ${conflict.index} conflicts with the committed log (commit index ${this.#commitIndex})`,
        );
      }
      if (conflict.index <= this.#log.lastIndex) this.#truncated(conflict.index);
      const fresh = m.entries.slice(conflict.index - (m.prevIndex + 1));
      this.#log.truncateAndAppend(fresh);
      // Raft paper 6: a configuration acts once in the log; a truncated one no longer does.
      this.#configs.truncatedFrom(conflict.index);
      this.#configs.appended(fresh);
    }
    const lastNew = m.prevIndex + m.entries.length;
    // Step 5: commit index = min(leaderCommit, index of last new entry).
    this.#commitTo(Math.min(m.commit, lastNew));
    reply({ success: true, index: lastNew });
  }

  /** Records that the log was cut at `index`, so nothing from there on counts as persisted. */
  #truncated(index: number): void {
    this.#persistedIndex = Math.min(this.#persistedIndex, index - 1);
    if (this.#inflightWrite !== undefined) {
      this.#inflightWrite.cutAt = Math.min(this.#inflightWrite.cutAt, index);
    }
  }

  /** Raft paper 7, InstallSnapshot RPC, receiver implementation (metadata part). */
  #handleSnapshot(m: InstallSnapshot): void {
    const s = m.snapshot;
    const respond = (index: number) => {
      const response: InstallSnapshotResponse = {
        type: 'snapshot-response',
        from: this.id,
        to: m.from,
        term: this.#term,
        index,
      };
      this.#send(response);
    };
    if (s.index <= this.#commitIndex) {
      respond(this.#commitIndex);
      return;
    }
    if (this.#log.matchTerm(s.index, s.term)) {
      // The log already holds the snapshot's last entry: keep the log, just commit through it.
      this.#commitTo(s.index);
      respond(s.index);
      return;
    }
    this.#logger.info({ index: s.index, term: s.term }, 'installing a snapshot from the leader');
    this.#truncated(this.#log.firstIndex);
    this.#log.restore({ index: s.index, term: s.term });
    this.#configs.restored(s.index, s.config);
    this.#snapshotMeta = s;
    this.#commitIndex = s.index;
    this.#commitChanged = true;
    this.#appliedHandedOut = s.index;
    this.#persistedIndex = s.index;
    this.#snapshotToInstall = s;
    respond(s.index);
  }

  // ---------------------------------------------------------------------------------------------
  // Reads

  #leaderRead(id: string, origin: NodeId): void {
    if (this.#log.term(this.#commitIndex) !== this.#term) {
      // Thesis 6.4 step 1: until an entry of this term commits, the commit index may lag.
      this.#readsAwaitingCommit.push({ id, origin });
      return;
    }
    this.#reads.add(id, origin, this.#commitIndex);
    this.#releaseConfirmedReads();
  }

  #releaseConfirmedReads(): void {
    for (const read of this.#reads.takeConfirmed(this.#config, this.id)) {
      if (read.origin === this.id) {
        this.#readResults.push({ id: read.id, index: read.index });
      } else {
        this.#sendReadIndexResponse(read.origin, read.id, read.index);
      }
    }
  }

  #sendReadIndexResponse(to: NodeId, id: string, index: number | null): void {
    const response: ReadIndexResponse = {
      type: 'read-index-response',
      from: this.id,
      to,
      term: this.#term,
      id,
      index,
    };
    this.#send(response);
  }

  #handleReadIndexRequest(m: ReadIndexRequest): void {
    if (this.#role === 'leader') this.#leaderRead(m.id, m.from);
    else this.#sendReadIndexResponse(m.from, m.id, null);
  }

  #handleReadIndexResponse(m: ReadIndexResponse): void {
    if (!this.#forwardedReads.delete(m.id)) return;
    this.#readResults.push(
      m.index === null ? { id: m.id, error: 'not-leader' } : { id: m.id, index: m.index },
    );
  }

  #failLeaderReads(): void {
    const pending = [
      ...this.#readsAwaitingCommit,
      ...this.#reads.takeAll().map(({ id, origin }) => ({ id, origin })),
    ];
    this.#readsAwaitingCommit = [];
    for (const { id, origin } of pending) {
      if (origin === this.id) this.#readResults.push({ id, error: 'leadership-lost' });
      else this.#sendReadIndexResponse(origin, id, null);
    }
  }

  #failForwardedReads(): void {
    for (const id of this.#forwardedReads) this.#readResults.push({ id, error: 'leadership-lost' });
    this.#forwardedReads.clear();
  }

  // ---------------------------------------------------------------------------------------------
  // Helpers

  /**
   * A message of an older term. Its sender must learn of the newer term: a stale leader steps
   * down on the response, and a pre-candidate stops (etcd's answer to the same situation).
   */
  #answerStaleTerm(m: Message): void {
    if (m.type === 'append' || m.type === 'heartbeat' || m.type === 'snapshot') {
      this.#send({
        type: 'append-response',
        from: this.id,
        to: m.from,
        term: this.#term,
        success: false,
        index: 0,
      });
    } else if (m.type === 'vote') {
      // Figure 2, RequestVote step 1: reply false with the current term, for the candidate to
      // update itself.
      this.#send({
        type: 'vote-response',
        from: this.id,
        to: m.from,
        term: this.#term,
        prevote: m.prevote,
        granted: false,
      });
    } else if (m.type === 'read-index') {
      this.#sendReadIndexResponse(m.from, m.id, null);
    }
  }

  /** Committed entries may be applied once they are durable here too. */
  #applicableIndex(): number {
    return Math.min(this.#commitIndex, this.#persistedIndex);
  }

  #takeCommitted(): LogEntry[] {
    const to = this.#applicableIndex();
    if (to <= this.#appliedHandedOut) return [];
    const entries =
      this.#log.slice(
        this.#appliedHandedOut + 1,
        to + 1,
        this.#tuning.maxApplyBytes,
        Number.POSITIVE_INFINITY,
      ) ?? [];
    const last = entries.at(-1);
    if (last !== undefined) this.#appliedHandedOut = last.index;
    return entries;
  }

  #send(m: Message): void {
    this.#messages.push(m);
  }

  #hardState(): HardState {
    return { term: this.#term, votedFor: this.#votedFor, commitIndex: this.#commitIndex };
  }

  #softState(): SoftState {
    return { role: this.#role, term: this.#term, leaderId: this.#leaderId };
  }
}

function sameSoftState(a: SoftState | undefined, b: SoftState): boolean {
  return a !== undefined && a.role === b.role && a.term === b.term && a.leaderId === b.leaderId;
}

function describe(m: Message): string {
  return `${m.type} ${m.from}->${m.to} term ${m.term}`;
}

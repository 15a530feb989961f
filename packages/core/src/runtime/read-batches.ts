import type { RaftEngine } from '../engine/raft-engine.ts';
import type { ReadResult } from '../engine/ready.ts';
import { ReadUnavailableError } from '../errors.ts';
import type { AppliedIndexWaiters } from './applied-index-waiters.ts';
import type { Clock } from './clock.ts';
import { ReadRequests } from './read-requests.ts';
import { SharedDeadline } from './shared-deadline.ts';

/** Linearizable reads that share one engine read (see {@link ReadBatches.join}). */
interface ReadBatch {
  /** The id of its engine read: a new one each time the batch is asked anew. */
  id: string;
  readonly deadline: AbortSignal;
  /** Answered from the leader's lease when it holds (thesis 6.4.1). */
  readonly lease: boolean;
  /** When the batch opened ({@link Clock.now}): the wait for a leader counts from then. */
  readonly openedAt: number;
  /** `leaderChanges()` when the batch was last handed to the engine. */
  askedUnder: number;
  /**
   * `askedUnder` of the request the engine refused: the batch waits for the leader to change
   * from the one it asked before it asks anew. Undefined before any refusal.
   */
  refusedUnder: number | undefined;
  /** Settles once the node applied up to the batch's read index (set once, at its opening). */
  applied: Promise<void>;
}

/** What read batching needs from the node it serves. */
export interface ReadBatchesOptions {
  readonly engine: RaftEngine;
  readonly appliedWaiters: AppliedIndexWaiters;
  /** Aborted when the node stops. */
  readonly lifetime: AbortSignal;
  /** Measures deadlines. */
  readonly clock: Clock;
  /** How long a read waits for its read index and the apply before it fails. */
  readonly readTimeoutMs: number;
  /**
   * Whether this node knows a leader of its current term (itself included). A batch is handed
   * to the engine only then, or once it waited {@link leaderWaitMs} for one: the engine refuses
   * a read at once when it knows no leader.
   */
  readonly leaderKnown: () => boolean;
  /**
   * How many times the (term, leader) this node knows changed since it started: a batch the
   * engine refused asks anew only once it changed.
   */
  readonly leaderChanges: () => number;
  /**
   * How long after it opened a batch may wait for a leader, and be asked anew after a refusal;
   * past it, the engine's refusal fails its reads.
   */
  readonly leaderWaitMs: number;
  /** Unique to this node incarnation: read ids never repeat across restarts. */
  readonly idPrefix: string;
  /** Makes sure the consensus loop runs (a batch waits to be handed over). */
  readonly kick: () => void;
}

/**
 * Linearizable reads (ReadIndex, thesis 6.4), batched. Reads that arrive before the consensus
 * loop hands their batch to the engine ({@link handOver}) share one ReadIndex request, one
 * heartbeat round and one wait for the applied index.
 *
 * A batch waits for a leader instead of failing at once, up to `leaderWaitMs` after it opened
 * and within its deadline: while this node knows no leader (right after it started, during an
 * election), and after the engine refused it because its leader was lost (the term changed, or
 * the node it asked no longer leads) until the node knows another. Then it is asked anew, under
 * a new id, so a late answer to the old request is ignored. The read index still comes from a
 * leader of the engine's current term, confirmed with a heartbeat round, for a request sent
 * after every read of the batch arrived: only when the request leaves changes.
 */
export class ReadBatches {
  readonly #o: ReadBatchesOptions;
  readonly #deadline: SharedDeadline;
  readonly #requests = new ReadRequests();
  #seq = 0;
  /** Read batches not yet handed to the engine (or to be asked anew), oldest first. */
  #open: ReadBatch[] = [];
  /** Batches handed to the engine, by the id of their engine read, until it answers. */
  readonly #handedOver = new Map<string, ReadBatch>();

  constructor(options: ReadBatchesOptions) {
    this.#o = options;
    this.#deadline = new SharedDeadline(options.lifetime, options.readTimeoutMs, options.clock);
  }

  /**
   * Whether {@link handOver} has a batch to hand over (or one to drop, past its deadline): the
   * consensus loop must run. Batches that wait for a leader do not count; the loop runs anyway
   * when the leader changes (a Ready tells it) and at every tick (which ends a wait).
   */
  get hasDue(): boolean {
    if (this.#open.length === 0) return false;
    const now = this.#o.clock.now();
    return this.#open.some((batch) => !this.#waitsForLeader(batch, now));
  }

  /**
   * The batch this read joins. The engine takes the read index when the batch is handed over,
   * after every read of the batch arrived, so each read sees every write completed before it
   * started. Reads share a batch only when they share a deadline (see {@link SharedDeadline}),
   * so joining never shortens a read's deadline, and only when they ask for the same kind of
   * read (`lease`: answered from the leader's lease when it holds). Settles once this node
   * applied up to the read index, or rejects with ReadUnavailableError.
   */
  join(options: { lease?: boolean } = {}): Promise<void> {
    const o = this.#o;
    const lease = options.lease === true;
    const deadline = this.#deadline.signal();
    const open = this.#open.findLast((batch) => batch.lease === lease);
    if (open !== undefined && open.deadline === deadline) return open.applied;
    const id = this.#nextId();
    const started = performance.now();
    const batch: ReadBatch = {
      id,
      deadline,
      lease,
      openedAt: o.clock.now(),
      askedUnder: 0,
      refusedUnder: undefined,
      applied: Promise.resolve(),
    };
    batch.applied = this.#requests
      .add(id, deadline)
      .then((index) => o.appliedWaiters.wait(index, deadline))
      .catch((error: unknown) => {
        this.#handedOver.delete(batch.id);
        o.engine.abandonRead(batch.id);
        if (!isTimeout(deadline)) throw error;
        throw new ReadUnavailableError(
          `the read could not be confirmed and applied within its deadline (readTimeoutMs ${o.readTimeoutMs} ms; waited ${Math.round(performance.now() - started)} ms)`,
          { cause: error },
        );
      });
    this.#open.push(batch);
    o.kick();
    return batch.applied;
  }

  /**
   * Hands the open batches to the engine, except those past their deadline (settled, dropped)
   * and those that still wait for a leader (kept open, so later reads may still join them).
   */
  handOver(): void {
    if (this.#open.length === 0) return;
    const now = this.#o.clock.now();
    const waiting: ReadBatch[] = [];
    for (const batch of this.#open) {
      if (batch.deadline.aborted) continue;
      if (this.#waitsForLeader(batch, now)) {
        waiting.push(batch);
      } else {
        batch.askedUnder = this.#o.leaderChanges();
        this.#handedOver.set(batch.id, batch);
        this.#o.engine.readIndex(batch.id, { lease: batch.lease });
      }
    }
    this.#open = waiting;
  }

  /**
   * Answers a batch with the engine's result: its read index, or why there is none. A batch
   * refused within `leaderWaitMs` of its opening waits for another leader and is asked anew.
   */
  settle(result: ReadResult): void {
    const batch = this.#handedOver.get(result.id);
    if (batch === undefined) return; // abandoned: its reads settled already
    this.#handedOver.delete(result.id);
    if (!('index' in result) && this.#withinLeaderWait(batch, this.#o.clock.now())) {
      const id = this.#nextId();
      this.#requests.rename(batch.id, id);
      batch.id = id;
      batch.refusedUnder = batch.askedUnder;
      this.#open.push(batch);
      return;
    }
    this.#requests.settle(result);
  }

  /** Fails every batch still waiting for its read index. */
  failAll(error: unknown): void {
    this.#requests.failAll(error);
  }

  /**
   * Whether `batch` stays open at `now`: within its wait for a leader, while this node knows
   * none, or still the one it asked when the engine refused the batch.
   */
  #waitsForLeader(batch: ReadBatch, now: number): boolean {
    if (!this.#withinLeaderWait(batch, now)) return false;
    return !this.#o.leaderKnown() || batch.refusedUnder === this.#o.leaderChanges();
  }

  #withinLeaderWait(batch: ReadBatch, now: number): boolean {
    return !batch.deadline.aborted && now - batch.openedAt < this.#o.leaderWaitMs;
  }

  #nextId(): string {
    return `${this.#o.idPrefix}:${++this.#seq}`;
  }
}

/** Whether `signal` aborted because its deadline passed. */
function isTimeout(signal: AbortSignal): boolean {
  return (
    signal.aborted && signal.reason instanceof DOMException && signal.reason.name === 'TimeoutError'
  );
}

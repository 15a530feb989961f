import type { RaftEngine } from '../engine/raft-engine.ts';
import type { ReadResult } from '../engine/ready.ts';
import { ReadUnavailableError } from '../errors.ts';
import type { AppliedIndexWaiters } from './applied-index-waiters.ts';
import type { Clock } from './clock.ts';
import { ReadRequests } from './read-requests.ts';
import { SharedDeadline } from './shared-deadline.ts';

/** Linearizable reads that share one engine read (see {@link ReadBatches.join}). */
interface ReadBatch {
  readonly id: string;
  readonly deadline: AbortSignal;
  /** Answered from the leader's lease when it holds (thesis 6.4.1). */
  readonly lease: boolean;
  /** When the batch opened ({@link Clock.now}): the wait for a leader counts from then. */
  readonly openedAt: number;
  /** Settles once the node applied up to the batch's read index. */
  readonly applied: Promise<void>;
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
  /** How long a batch waits for a leader to be known before the engine refuses it. */
  readonly leaderWaitMs: number;
  /** Unique to this node incarnation: read ids never repeat across restarts. */
  readonly idPrefix: string;
  /** Makes sure the consensus loop runs (a batch waits to be handed over). */
  readonly kick: () => void;
}

/**
 * Linearizable reads (ReadIndex, thesis 6.4), batched. Reads that arrive before the consensus
 * loop hands their batch to the engine ({@link handOver}) share one ReadIndex request, one
 * heartbeat round and one wait for the applied index. While this node knows no leader (right
 * after it started, during an election), a batch waits for one, up to `leaderWaitMs` and within
 * its deadline, instead of being refused at once: the read index still comes from a leader of
 * the engine's current term, which confirms it with a heartbeat round, so only the time the
 * request leaves changes, and it leaves after every read of the batch arrived.
 */
export class ReadBatches {
  readonly #o: ReadBatchesOptions;
  readonly #deadline: SharedDeadline;
  readonly #requests = new ReadRequests();
  #seq = 0;
  /** Read batches not yet handed to the engine, oldest first. */
  #open: ReadBatch[] = [];

  constructor(options: ReadBatchesOptions) {
    this.#o = options;
    this.#deadline = new SharedDeadline(options.lifetime, options.readTimeoutMs, options.clock);
  }

  /**
   * Whether {@link handOver} has a batch to hand over (or one to drop, past its deadline): the
   * consensus loop must run. Batches that wait for a leader do not count; the loop runs anyway
   * when one becomes known (a Ready tells it) and at every tick (which ends a wait).
   */
  get hasDue(): boolean {
    if (this.#open.length === 0) return false;
    if (this.#o.leaderKnown()) return true;
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
    const id = `${o.idPrefix}:${++this.#seq}`;
    const started = performance.now();
    const applied = this.#requests
      .add(id, deadline)
      .then((index) => o.appliedWaiters.wait(index, deadline))
      .catch((error: unknown) => {
        o.engine.abandonRead(id);
        if (!isTimeout(deadline)) throw error;
        throw new ReadUnavailableError(
          `the read could not be confirmed and applied within its deadline (readTimeoutMs ${o.readTimeoutMs} ms; waited ${Math.round(performance.now() - started)} ms)`,
          { cause: error },
        );
      });
    this.#open.push({ id, deadline, lease, openedAt: this.#o.clock.now(), applied });
    o.kick();
    return applied;
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
      if (this.#waitsForLeader(batch, now)) waiting.push(batch);
      else this.#o.engine.readIndex(batch.id, { lease: batch.lease });
    }
    this.#open = waiting;
  }

  /** Whether `batch` stays open at `now`: no leader known, and its wait for one not over. */
  #waitsForLeader(batch: ReadBatch, now: number): boolean {
    return (
      !batch.deadline.aborted &&
      !this.#o.leaderKnown() &&
      now - batch.openedAt < this.#o.leaderWaitMs
    );
  }

  /** Answers a batch with the engine's result (its read index, or why there is none). */
  settle(result: ReadResult): void {
    this.#requests.settle(result);
  }

  /** Fails every batch still waiting for its read index. */
  failAll(error: unknown): void {
    this.#requests.failAll(error);
  }
}

/** Whether `signal` aborted because its deadline passed. */
function isTimeout(signal: AbortSignal): boolean {
  return (
    signal.aborted && signal.reason instanceof DOMException && signal.reason.name === 'TimeoutError'
  );
}

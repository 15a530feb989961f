import {
  type Logger,
  NodeClosedError,
  noopLogger,
  type RaftNodeEvents,
  type RaftNodeStatus,
  type StoredSnapshot,
} from '@tsraft/core';

/** What the policy needs of a node; a `RaftNode` has it. */
export interface CompactableNode {
  status(): Pick<
    RaftNodeStatus,
    'appliedIndex' | 'snapshotIndex' | 'bytesSinceSnapshot' | 'closed'
  >;
  takeSnapshot(options?: {
    signal?: AbortSignal;
    retainEntries?: number;
  }): Promise<StoredSnapshot | undefined>;
  on(event: 'apply', listener: (...args: RaftNodeEvents['apply']) => void): unknown;
  off(event: 'apply', listener: (...args: RaftNodeEvents['apply']) => void): unknown;
}

/** Options of {@link CompactionPolicy.start}. */
export interface CompactionPolicyOptions {
  /** Take a snapshot once this many entries were applied since the latest. Default 10,000. */
  readonly afterEntries?: number;
  /**
   * Or once the entries applied since the latest snapshot hold this many bytes (`entrySize`).
   * Default 64 MiB.
   */
  readonly afterBytes?: number;
  /**
   * Entries the log keeps behind each snapshot, so that a follower a little behind gets entries
   * instead of the whole snapshot. Default 1,000.
   */
  readonly retainEntries?: number;
  /** After a failed snapshot, wait this long before the next try. Default 1,000 ms. */
  readonly retryAfterMs?: number;
  /** Where the policy logs. Default: the node's own lines only. */
  readonly logger?: Logger;
}

const DEFAULT_AFTER_ENTRIES = 10_000;
const DEFAULT_AFTER_BYTES = 64 * 1024 * 1024;
const DEFAULT_RETAIN_ENTRIES = 1_000;

/**
 * Log compaction by policy (Raft paper 7): takes a snapshot of a node after `afterEntries`
 * applied entries or `afterBytes` of them since its latest snapshot, so that the log (and the
 * node's memory, which holds the log) stays bounded. The node compacts its log once the snapshot
 * is durable, keeping the last `retainEntries` for followers a little behind. One snapshot at a time; `trigger()` takes one now. Taking a snapshot never blocks
 * the node: its state machine exports a consistent view while proposals, heartbeats and applying
 * go on.
 *
 * Failures: a node that stopped ends the policy quietly; any other failure is logged at `error`
 * and tried again after `retryAfterMs` (a failure of a store stops the node, which says why).
 */
export class CompactionPolicy implements AsyncDisposable {
  readonly #node: CompactableNode;
  readonly #afterEntries: number;
  readonly #afterBytes: number;
  readonly #retainEntries: number;
  readonly #retryAfterMs: number;
  readonly #logger: Logger;
  #taking: Promise<StoredSnapshot | undefined> | undefined;
  #notBefore = 0;
  #stopped = false;

  private constructor(node: CompactableNode, options: CompactionPolicyOptions) {
    this.#node = node;
    this.#afterEntries = positive(options.afterEntries ?? DEFAULT_AFTER_ENTRIES, 'afterEntries');
    this.#afterBytes = positive(options.afterBytes ?? DEFAULT_AFTER_BYTES, 'afterBytes');
    this.#retainEntries = options.retainEntries ?? DEFAULT_RETAIN_ENTRIES;
    if (!(Number.isSafeInteger(this.#retainEntries) && this.#retainEntries >= 0)) {
      throw new RangeError(
        `retainEntries must be a non-negative integer, got ${this.#retainEntries}`,
      );
    }
    this.#retryAfterMs = options.retryAfterMs ?? 1000;
    this.#logger = options.logger ?? noopLogger;
  }

  /** Starts watching `node`: a snapshot is taken whenever a bound is passed. */
  static start(node: CompactableNode, options: CompactionPolicyOptions = {}): CompactionPolicy {
    const policy = new CompactionPolicy(node, options);
    node.on('apply', policy.#onApply);
    policy.#onApply();
    return policy;
  }

  /**
   * Takes a snapshot now, after the one being taken if any. Resolves with it, or `undefined` when
   * nothing was applied since the latest one. Rejects with `NodeClosedError` once the node
   * stopped, or with the signal's reason.
   */
  async trigger(options: { signal?: AbortSignal } = {}): Promise<StoredSnapshot | undefined> {
    await this.#taking?.catch(() => {});
    return this.#take(options.signal);
  }

  /** Stops watching the node, and waits for a snapshot being taken. Idempotent. */
  async stop(): Promise<void> {
    if (!this.#stopped) {
      this.#stopped = true;
      this.#node.off('apply', this.#onApply);
    }
    await this.#taking?.catch(() => {});
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  readonly #onApply = (): void => {
    if (this.#stopped || this.#taking !== undefined || Date.now() < this.#notBefore) return;
    const status = this.#node.status();
    if (status.closed) return;
    const entries = status.appliedIndex - status.snapshotIndex;
    if (entries < this.#afterEntries && status.bytesSinceSnapshot < this.#afterBytes) return;
    this.#take(undefined).catch((error: unknown) => {
      if (error instanceof NodeClosedError) {
        void this.stop();
        return;
      }
      this.#notBefore = Date.now() + this.#retryAfterMs;
      this.#logger.error(
        { err: error },
        `the compaction policy could not take a snapshot; it tries again in ${this.#retryAfterMs} ms`,
      );
    });
  };

  #take(signal: AbortSignal | undefined): Promise<StoredSnapshot | undefined> {
    const taking = this.#node.takeSnapshot({
      retainEntries: this.#retainEntries,
      ...(signal === undefined ? {} : { signal }),
    });
    this.#taking = taking;
    const done = (): void => {
      if (this.#taking === taking) this.#taking = undefined;
    };
    taking.then(done, done);
    return taking;
  }
}

function positive(value: number, name: string): number {
  if (!(Number.isSafeInteger(value) && value > 0)) {
    throw new RangeError(`${name} must be a positive integer, got ${value}`);
  }
  return value;
}

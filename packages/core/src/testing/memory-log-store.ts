import { type HardState, INITIAL_HARD_STATE } from '../hard-state.ts';
import { entrySize, type LogEntry, type LogPosition } from '../log-entry.ts';
import type { LogStore, LogStoreState, LogWrite } from '../log-store.ts';
import { type NodeIdentity, validateNodeIdentity } from '../node-identity.ts';
import { delay } from './delay.ts';

/**
 * What a {@link MemoryLogStore} holds "on disk". In a simulation a crash throws the node away and
 * keeps this object; a restarted node opens a new store over it. Treat it as read-only outside
 * the store.
 */
export interface MemoryLogDurableState {
  hardState: HardState;
  /** Position the log starts after. */
  snapshot: LogPosition;
  /** The entries after `snapshot`, contiguous: `entries[i].index === snapshot.index + 1 + i`. */
  entries: LogEntry[];
  /** The node identity, once one was persisted. */
  identity?: NodeIdentity;
}

/** Options of {@link MemoryLogStore}. */
export interface MemoryLogStoreOptions {
  /** The durable state to open, as left by an earlier store. Default: a new, empty one. */
  readonly durable?: MemoryLogDurableState;
  /**
   * Delay, on real timers, before a persist takes effect (an abort during it leaves the store
   * unchanged). Default 0: a persist takes effect at once.
   */
  readonly persistLatencyMs?: number;
}

/**
 * An in-memory {@link LogStore} for tests and simulations. Its durable state is
 * {@link MemoryLogStore.durable}: a persist that resolved is in it, whole; one that rejected left
 * it untouched. Entries are kept by reference (they are immutable).
 *
 * Writes are checked, and a write that breaks the log's shape (entries not contiguous or not
 * following the log, a truncation of compacted entries, a term going back, a second vote in one
 * term) rejects and changes nothing: in a test that is a bug of the caller.
 */
export class MemoryLogStore implements LogStore {
  /** The state that survives a simulated crash; pass it to a new store to "restart". */
  readonly durable: MemoryLogDurableState;
  readonly #persistLatencyMs: number;
  #failNextPersist: Error | undefined;

  constructor(options: MemoryLogStoreOptions = {}) {
    this.durable = options.durable ?? {
      hardState: INITIAL_HARD_STATE,
      snapshot: { index: 0, term: 0 },
      entries: [],
    };
    this.#persistLatencyMs = options.persistLatencyMs ?? 0;
  }

  /** Makes the next `persist` reject with `error`, leaving the store unchanged. */
  failNextPersist(error: Error): void {
    this.#failNextPersist = error;
  }

  async load(options?: { signal?: AbortSignal }): Promise<LogStoreState> {
    options?.signal?.throwIfAborted();
    const { hardState, snapshot, entries, identity } = this.durable;
    return {
      hardState,
      snapshot,
      lastIndex: snapshot.index + entries.length,
      ...(identity === undefined ? {} : { identity }),
    };
  }

  async entries(
    from: number,
    to: number,
    options?: { maxBytes?: number; signal?: AbortSignal },
  ): Promise<LogEntry[]> {
    options?.signal?.throwIfAborted();
    const { snapshot, entries } = this.durable;
    const first = snapshot.index + 1;
    const last = snapshot.index + entries.length;
    if (!Number.isSafeInteger(from) || !Number.isSafeInteger(to) || from > to) {
      throw new RangeError(`invalid entry range [${from}, ${to})`);
    }
    if (from < first || to > last + 1) {
      throw new RangeError(
        `entry range [${from}, ${to}) is outside the log, which holds [${first}, ${last + 1})`,
      );
    }
    const start = from - first;
    const end = to - first;
    const maxBytes = options?.maxBytes;
    if (maxBytes === undefined) return entries.slice(start, end);
    const result: LogEntry[] = [];
    let bytes = 0;
    for (let position = start; position < end; position++) {
      const entry = entries[position] as LogEntry;
      bytes += entrySize(entry);
      if (result.length > 0 && bytes > maxBytes) break;
      result.push(entry);
    }
    return result;
  }

  async persist(write: LogWrite, options?: { signal?: AbortSignal }): Promise<void> {
    const signal = options?.signal;
    signal?.throwIfAborted();
    const injected = this.#failNextPersist;
    if (injected !== undefined) {
      this.#failNextPersist = undefined;
      throw injected;
    }
    if (this.#persistLatencyMs > 0) await delay(this.#persistLatencyMs, signal);
    planWrite(this.durable, write)();
  }

  async purge(upTo: LogPosition, options?: { signal?: AbortSignal }): Promise<void> {
    options?.signal?.throwIfAborted();
    const durable = this.durable;
    const { snapshot, entries } = durable;
    if (upTo.index <= snapshot.index) return;
    const last = snapshot.index + entries.length;
    if (upTo.index > last) {
      throw new RangeError(`cannot purge up to ${upTo.index}: the log ends at ${last}`);
    }
    const term = (entries[upTo.index - snapshot.index - 1] as LogEntry).term;
    if (term !== upTo.term) {
      throw new RangeError(
        `cannot purge up to ${upTo.index}/${upTo.term}: the entry there has term ${term}`,
      );
    }
    durable.snapshot = { index: upTo.index, term: upTo.term };
    durable.entries = entries.slice(upTo.index - snapshot.index);
  }
}

/**
 * Checks `write` against `durable` without changing it, and returns the function that applies it
 * in one synchronous step (so that concurrent reads see all of it or none). Throws on a write
 * that breaks the log's shape.
 */
function planWrite(durable: MemoryLogDurableState, write: LogWrite): () => void {
  let snapshot = durable.snapshot;
  // The log after each step is `durable.entries[keepFrom .. keepTo)` followed by `write.entries`.
  let keepFrom = 0;
  let keepTo = durable.entries.length;
  const base = durable.snapshot.index + 1;
  const lastIndex = (): number => snapshot.index + (keepTo - keepFrom);
  const termAt = (index: number): number =>
    index === snapshot.index ? snapshot.term : (durable.entries[index - base] as LogEntry).term;

  if (write.snapshot !== undefined) {
    const { index, term } = write.snapshot;
    if (!Number.isSafeInteger(index) || index < snapshot.index) {
      throw new RangeError(
        `snapshot ${index}/${term} is older than the log's start ${snapshot.index}/${snapshot.term}`,
      );
    }
    // Raft paper 7, InstallSnapshot steps 6-7: keep the suffix only if the log agrees at `index`.
    if (index <= lastIndex() && termAt(index) === term) keepFrom = index - base + 1;
    else keepFrom = keepTo;
    snapshot = { index, term };
  }

  if (write.truncateFrom !== undefined) {
    const from = write.truncateFrom;
    if (!Number.isSafeInteger(from) || from <= snapshot.index) {
      throw new RangeError(
        `cannot truncate from ${from}: entries up to ${snapshot.index} are compacted into a snapshot`,
      );
    }
    if (from <= lastIndex()) keepTo = keepFrom + (from - snapshot.index - 1);
  }

  const appended = write.entries ?? [];
  let expectedIndex = lastIndex() + 1;
  let previousTerm = keepTo > keepFrom ? termAt(lastIndex()) : snapshot.term;
  for (const entry of appended) {
    if (entry.index !== expectedIndex) {
      throw new RangeError(
        `entries must be contiguous and follow the log: expected index ${expectedIndex}, got ${entry.index}`,
      );
    }
    if (!Number.isSafeInteger(entry.term) || entry.term < previousTerm) {
      throw new RangeError(
        `entry ${entry.index} has term ${entry.term}, below the term ${previousTerm} before it`,
      );
    }
    expectedIndex++;
    previousTerm = entry.term;
  }

  const hardState = write.hardState ?? durable.hardState;
  if (write.hardState !== undefined) {
    const current = durable.hardState;
    if (hardState.term < current.term) {
      throw new RangeError(
        `the hard state's term cannot go back from ${current.term} to ${hardState.term}`,
      );
    }
    if (
      hardState.term === current.term &&
      current.votedFor !== null &&
      hardState.votedFor !== current.votedFor
    ) {
      throw new RangeError(
        `node already voted for ${current.votedFor} in term ${current.term}; cannot change the vote`,
      );
    }
  }
  if (write.identity !== undefined) validateNodeIdentity(write.identity);
  if (previousTerm > hardState.term && appended.length > 0) {
    throw new RangeError(
      `entry term ${previousTerm} is above the current term ${hardState.term}: persist the term first or with them`,
    );
  }

  return () => {
    let entries = durable.entries;
    if (keepFrom > 0) entries = entries.slice(keepFrom, keepTo);
    else entries.length = keepTo;
    for (const entry of appended) entries.push(entry);
    durable.snapshot = snapshot;
    durable.entries = entries;
    durable.hardState = hardState;
    if (write.identity !== undefined) durable.identity = write.identity;
  };
}

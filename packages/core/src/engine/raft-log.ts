import { InvariantViolationError } from '../errors.ts';
import { entrySize, type LogEntry, type LogPosition } from '../log-entry.ts';

/**
 * The engine's in-memory view of the log: every entry after the last snapshot. Log compaction
 * bounds its size (the node drops entries covered by a durable snapshot). It also tracks which
 * suffix has not yet been handed out to be persisted.
 */
export class RaftLog {
  #snapshot: LogPosition;
  /** `#entries[i]` has index `#snapshot.index + 1 + i`. */
  #entries: LogEntry[];
  /** First index not yet handed out for persisting. */
  #unstableFrom: number;
  /** Lowest index truncated since the last hand-out, if any. */
  #pendingTruncate: number | undefined;

  constructor(snapshot: LogPosition, entries: readonly LogEntry[]) {
    this.#snapshot = snapshot;
    this.#entries = [...entries];
    entries.forEach((entry, i) => {
      if (entry.index !== snapshot.index + 1 + i) {
        throw new InvariantViolationError(
          `log entries must be contiguous after the snapshot at ${snapshot.index}; found index ${entry.index} at position ${i}`,
        );
      }
    });
    this.#unstableFrom = this.lastIndex + 1;
  }

  get snapshot(): LogPosition {
    return this.#snapshot;
  }

  get firstIndex(): number {
    return this.#snapshot.index + 1;
  }

  get lastIndex(): number {
    return this.#snapshot.index + this.#entries.length;
  }

  get lastTerm(): number {
    return this.#entries.at(-1)?.term ?? this.#snapshot.term;
  }

  /** Term of the entry at `index`; `undefined` when it is compacted away or beyond the end. */
  term(index: number): number | undefined {
    if (index === this.#snapshot.index) return this.#snapshot.term;
    return this.#entries[index - this.#snapshot.index - 1]?.term;
  }

  entry(index: number): LogEntry | undefined {
    return this.#entries[index - this.#snapshot.index - 1];
  }

  matchTerm(index: number, term: number): boolean {
    return this.term(index) === term;
  }

  /**
   * Whether a log ending at (lastIndex, lastTerm) is at least as up to date as this one
   * (Raft paper 5.4.1: compare last terms, then lengths).
   */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    return lastTerm > this.lastTerm || (lastTerm === this.lastTerm && lastIndex >= this.lastIndex);
  }

  /**
   * Entries with `from <= index < to`, at most `maxCount`, stopping (after at least one) before
   * `maxBytes` would be exceeded. `undefined` when `from` is compacted away.
   */
  slice(from: number, to: number, maxBytes: number, maxCount: number): LogEntry[] | undefined {
    if (from < this.firstIndex) return undefined;
    const end = Math.min(to, this.lastIndex + 1, from + maxCount);
    const out: LogEntry[] = [];
    let bytes = 0;
    for (let index = from; index < end; index++) {
      const entry = this.#entries[index - this.#snapshot.index - 1];
      if (entry === undefined) break;
      bytes += entrySize(entry);
      if (out.length > 0 && bytes > maxBytes) break;
      out.push(entry);
    }
    return out;
  }

  /** Appends entries that continue the log (the leader's own proposals). */
  append(entries: readonly LogEntry[]): void {
    for (const entry of entries) {
      if (entry.index !== this.lastIndex + 1) {
        throw new InvariantViolationError(
          `append of index ${entry.index} does not follow the last index ${this.lastIndex}`,
        );
      }
      this.#entries.push(entry);
    }
  }

  /**
   * The first entry of `entries` that this log does not already hold with the same term, or
   * `undefined` when it holds all of them (Raft paper, Figure 2, AppendEntries step 3).
   */
  findConflict(entries: readonly LogEntry[]): LogEntry | undefined {
    return entries.find((entry) => !this.matchTerm(entry.index, entry.term));
  }

  /**
   * Replaces the suffix starting at `entries[0].index` with `entries`. The caller guarantees that
   * nothing committed is replaced.
   */
  truncateAndAppend(entries: readonly LogEntry[]): void {
    const first = entries[0];
    if (first === undefined) return;
    if (first.index <= this.#snapshot.index || first.index > this.lastIndex + 1) {
      throw new InvariantViolationError(
        `cannot write index ${first.index} into a log spanning ${this.firstIndex}..${this.lastIndex}`,
      );
    }
    if (first.index <= this.lastIndex) {
      this.#entries.length = first.index - this.#snapshot.index - 1;
      if (first.index < this.#unstableFrom) {
        this.#pendingTruncate = Math.min(this.#pendingTruncate ?? first.index, first.index);
        this.#unstableFrom = first.index;
      }
    }
    this.append(entries);
  }

  /**
   * For a conflict hint: the largest index at or below `index` whose term is at most `term`,
   * with its term. Lets a leader skip a whole conflicting term per round trip.
   */
  findConflictByTerm(index: number, term: number): LogPosition {
    let i = Math.min(index, this.lastIndex);
    while (i > this.#snapshot.index) {
      const t = this.term(i) ?? 0;
      if (t <= term) return { index: i, term: t };
      i--;
    }
    return this.#snapshot;
  }

  /** Replaces the whole log with a snapshot's position (a follower installs a snapshot). */
  restore(snapshot: LogPosition): void {
    this.#snapshot = snapshot;
    this.#entries = [];
    this.#unstableFrom = snapshot.index + 1;
    this.#pendingTruncate = undefined;
  }

  /** Drops entries at or below `index`, which a durable snapshot covers (log compaction). */
  compact(index: number): void {
    if (index <= this.#snapshot.index) return;
    const term = this.term(index);
    if (term === undefined || index >= this.#unstableFrom) {
      throw new InvariantViolationError(`cannot compact to ${index}: not durable in this log`);
    }
    this.#entries = this.#entries.slice(index - this.#snapshot.index);
    this.#snapshot = { index, term };
  }

  /**
   * Hands out what must be persisted next: a truncation point, if the log was cut below what
   * was handed out before, and the entries not handed out yet. Marks them handed out.
   */
  takeUnstable(): { truncateFrom: number | undefined; entries: LogEntry[] } {
    const entries = this.#entries.slice(this.#unstableFrom - this.#snapshot.index - 1);
    const truncateFrom = this.#pendingTruncate;
    this.#unstableFrom = this.lastIndex + 1;
    this.#pendingTruncate = undefined;
    return { truncateFrom, entries };
  }

  get hasUnstable(): boolean {
    return this.#unstableFrom <= this.lastIndex || this.#pendingTruncate !== undefined;
  }
}

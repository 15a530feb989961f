import type { HardState } from './hard-state.ts';
import type { LogEntry, LogPosition } from './log-entry.ts';
import type { NodeIdentity } from './node-identity.ts';

/**
 * One atomic write to the log store. Its parts take effect in this order, all or nothing:
 * 1. `snapshot`: the log now starts right after this position. Entries at or below
 *    `snapshot.index` are discarded; if the entry at `snapshot.index` does not have
 *    `snapshot.term`, every entry is discarded (Raft paper 7, InstallSnapshot steps 6-7).
 * 2. `truncateFrom`: entries at this index and above are discarded (a conflicting suffix).
 * 3. `entries`: appended; they are contiguous and start right after the last remaining entry.
 * 4. `hardState`: replaces the saved hard state.
 * 5. `identity`: replaces the saved node identity (see {@link NodeIdentity}).
 */
export interface LogWrite {
  readonly snapshot?: LogPosition;
  readonly truncateFrom?: number;
  readonly entries?: readonly LogEntry[];
  readonly hardState?: HardState;
  readonly identity?: NodeIdentity;
}

/** What a log store holds when a node starts. */
export interface LogStoreState {
  readonly hardState: HardState;
  /** Position the log starts after: the last snapshot's, or 0/0. */
  readonly snapshot: LogPosition;
  /** Index of the last entry held, or `snapshot.index` when the log is empty. */
  readonly lastIndex: number;
  /**
   * The node identity last persisted; absent from a store never given one (a new store, or one
   * written by a version before identities: the node then makes one and persists it).
   */
  readonly identity?: NodeIdentity;
}

/**
 * Durable storage for a node's Raft log, hard state and identity.
 *
 * Contract:
 * - When a promise returned by `persist` resolves, the write is durable: it survives a crash of
 *   the process and of the machine. When it rejects, the store is as if the write never happened.
 *   A crash during `persist` leaves either all of the write or none of it.
 * - Calls to `persist` and `purge` are issued one at a time (the caller awaits each); reads may
 *   run concurrently with them and see either the state before or after a write.
 * - The store never reorders, merges or alters entries: what `entries` returns is what was
 *   persisted, byte for byte.
 * - Entries handed to `persist` are immutable; the store may keep references to them.
 * - Every failure rejects with an error whose `cause` keeps the underlying error.
 * - The identity lives and dies with the rest of the store: it must be lost exactly when the
 *   hard state and the log are (never kept somewhere that outlives them, such as a config file),
 *   else a node whose state vanished would not be recognized.
 */
export interface LogStore {
  /** Reads the state a node starts from. */
  load(options?: { signal?: AbortSignal }): Promise<LogStoreState>;

  /**
   * Entries with `from <= index < to`, in order. Stops early, after at least one entry, once the
   * total of `entrySize` would exceed `maxBytes`. Rejects with a `RangeError` when the range
   * reaches below the first entry held or above the last.
   */
  entries(
    from: number,
    to: number,
    options?: { maxBytes?: number; signal?: AbortSignal },
  ): Promise<LogEntry[]>;

  /** Applies `write` atomically and durably (see {@link LogWrite}). */
  persist(write: LogWrite, options?: { signal?: AbortSignal }): Promise<void>;

  /**
   * Discards entries at or below `upTo.index` after a snapshot covering them is durable (log
   * compaction, Raft paper 7). Never discards entries above `upTo.index`. A purge at or below
   * the current start is a no-op.
   */
  purge(upTo: LogPosition, options?: { signal?: AbortSignal }): Promise<void>;
}

/** A node's identity within a cluster. Stable across restarts; never reused for another node. */
export type NodeId = string;

/**
 * What a log entry carries.
 * - `command`: an application command (opaque bytes to the engine).
 * - `noop`: appended by a new leader so that entries of earlier terms commit (Raft paper 5.4.2, 8).
 * - `config`: a cluster configuration (joint consensus comes with the membership issue).
 */
export type EntryType = 'command' | 'noop' | 'config';

/**
 * One entry of the replicated log. Entries are immutable once created: no component may mutate
 * an entry or its `data` after handing it on.
 */
export interface LogEntry {
  /** Position in the log, starting at 1. */
  readonly index: number;
  /** Term of the leader that created the entry. */
  readonly term: number;
  readonly type: EntryType;
  /** Payload: an encoded command envelope, an encoded configuration, or empty for a no-op. */
  readonly data: Uint8Array;
}

/** A position in the log: an index and the term of the entry there (0/0 is the empty log). */
export interface LogPosition {
  readonly index: number;
  readonly term: number;
}

/** Byte size an entry counts for in batching and memory limits. */
export function entrySize(entry: LogEntry): number {
  return entry.data.byteLength + 24;
}

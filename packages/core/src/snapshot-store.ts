import type { SnapshotMeta } from './message.ts';

/** A stored snapshot: its metadata, byte size and SHA-256 of its data (hex). */
export interface StoredSnapshot extends SnapshotMeta {
  readonly size: number;
  readonly sha256: string;
}

/**
 * Durable storage for snapshots (Raft paper 7).
 *
 * Contract:
 * - `save` consumes the chunks with bounded memory, and resolves once the snapshot and its
 *   metadata are durable; a snapshot is never visible half written. It then becomes `latest()`,
 *   and older snapshots may be removed.
 * - `read` streams back exactly the bytes saved, and rejects (mid-stream if need be) when they no
 *   longer match the recorded checksum.
 */
export interface SnapshotStore {
  latest(options?: { signal?: AbortSignal }): Promise<StoredSnapshot | undefined>;
  save(
    meta: SnapshotMeta,
    chunks: AsyncIterable<Uint8Array>,
    options?: { signal?: AbortSignal },
  ): Promise<StoredSnapshot>;
  read(snapshot: StoredSnapshot, options?: { signal?: AbortSignal }): AsyncIterable<Uint8Array>;
}

import type { SnapshotMeta } from './message.ts';

/** A stored snapshot: its metadata, byte size and SHA-256 of its data (hex). */
export interface StoredSnapshot extends SnapshotMeta {
  readonly size: number;
  readonly sha256: string;
}

/**
 * A snapshot being received from a leader piece by piece (chunked InstallSnapshot): what it will
 * be once whole (`size` bytes with SHA-256 `sha256`), and how many of its first bytes are held.
 */
export interface PartialSnapshot extends StoredSnapshot {
  /** Bytes held durably: always a prefix of the snapshot, at most `size`. */
  readonly received: number;
}

/**
 * Durable storage for snapshots (Raft paper 7).
 *
 * Contract:
 * - `save` consumes the chunks with bounded memory, and resolves once the snapshot and its
 *   metadata are durable; a snapshot is never visible half written. It then becomes `latest()`,
 *   and older snapshots may be removed.
 * - `read` streams back exactly the bytes saved, and rejects (mid-stream if need be) with
 *   `CorruptSnapshotError` when they no longer match the recorded size or checksum (the check of
 *   the whole comes after the last chunk: a consumer must read to the end before trusting it).
 *   Each chunk is the consumer's to keep or forward: the store never writes to it again.
 * - Receiving in pieces: a store holds at most one partial snapshot, beside its complete ones
 *   and invisible to `latest()`. `beginPartial` starts one (discarding any other partial);
 *   `appendPartial` adds the next bytes; `partial` tells what is held, also after a restart. A
 *   crash may lose the last pieces appended (a store need not flush each one; completing does):
 *   what survives is always a prefix, and `partial` says how long; `completePartial` checks the whole against the announced size
 *   and SHA-256 and then makes it a stored snapshot exactly as `save` would (it becomes
 *   `latest()`), or, when they differ, discards it and rejects with `CorruptSnapshotError`.
 *   Memory stays bounded by the bytes of one call whatever the snapshot's size.
 */
export interface SnapshotStore {
  latest(options?: { signal?: AbortSignal }): Promise<StoredSnapshot | undefined>;
  save(
    meta: SnapshotMeta,
    chunks: AsyncIterable<Uint8Array>,
    options?: { signal?: AbortSignal },
  ): Promise<StoredSnapshot>;
  read(snapshot: StoredSnapshot, options?: { signal?: AbortSignal }): AsyncIterable<Uint8Array>;

  /** The partial snapshot held, if any. */
  partial(options?: { signal?: AbortSignal }): Promise<PartialSnapshot | undefined>;
  /** Starts receiving `snapshot` (nothing of it held yet), discarding any partial snapshot. */
  beginPartial(
    snapshot: StoredSnapshot,
    options?: { signal?: AbortSignal },
  ): Promise<PartialSnapshot>;
  /**
   * Appends `data` to the partial snapshot, whose `received` must be `offset` (see above for
   * durability). Rejects with a `RangeError` when there is no partial snapshot, `offset` is not
   * what it holds, or the bytes would exceed its size; then nothing changed.
   */
  appendPartial(
    offset: number,
    data: Uint8Array,
    options?: { signal?: AbortSignal },
  ): Promise<PartialSnapshot>;
  /**
   * Makes the whole partial snapshot a stored snapshot (see above). Rejects with a `RangeError`
   * when there is none or it is not whole yet, and with `CorruptSnapshotError` (discarding it)
   * when its bytes do not have the announced SHA-256.
   */
  completePartial(options?: { signal?: AbortSignal }): Promise<StoredSnapshot>;
}

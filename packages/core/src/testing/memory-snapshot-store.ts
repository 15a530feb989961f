import { createHash } from 'node:crypto';
import { CorruptSnapshotError, StorageError } from '../errors.ts';
import type { SnapshotMeta } from '../message.ts';
import type { PartialSnapshot, SnapshotStore, StoredSnapshot } from '../snapshot-store.ts';

/**
 * What a {@link MemorySnapshotStore} holds "on disk": the latest snapshot and its bytes, as the
 * chunks it was saved in. It survives a simulated crash; tests may corrupt `chunks` on purpose.
 */
export interface MemorySnapshotDurableState {
  latest: { readonly snapshot: StoredSnapshot; readonly chunks: readonly Uint8Array[] } | undefined;
  /** The snapshot being received, and the chunks of it held so far. */
  partial?: { readonly snapshot: StoredSnapshot; readonly chunks: Uint8Array[] } | undefined;
}

/** Options of {@link MemorySnapshotStore}. */
export interface MemorySnapshotStoreOptions {
  /** The durable state to open, as left by an earlier store. Default: a new, empty one. */
  readonly durable?: MemorySnapshotDurableState;
}

/**
 * An in-memory {@link SnapshotStore} for tests and simulations. It keeps only the latest snapshot
 * saved, copies the chunks it is given and the chunks it hands out (the store's bytes never
 * alias a caller's buffer), and verifies the SHA-256 before streaming a snapshot back.
 */
export class MemorySnapshotStore implements SnapshotStore {
  /** The state that survives a simulated crash; pass it to a new store to "restart". */
  readonly durable: MemorySnapshotDurableState;

  constructor(options: MemorySnapshotStoreOptions = {}) {
    this.durable = options.durable ?? { latest: undefined };
  }

  async latest(options?: { signal?: AbortSignal }): Promise<StoredSnapshot | undefined> {
    options?.signal?.throwIfAborted();
    return this.durable.latest?.snapshot;
  }

  async save(
    meta: SnapshotMeta,
    chunks: AsyncIterable<Uint8Array>,
    options?: { signal?: AbortSignal },
  ): Promise<StoredSnapshot> {
    const signal = options?.signal;
    signal?.throwIfAborted();
    const hash = createHash('sha256');
    const copies: Uint8Array[] = [];
    let size = 0;
    for await (const chunk of chunks) {
      signal?.throwIfAborted();
      const copy = chunk.slice();
      hash.update(copy);
      copies.push(copy);
      size += copy.byteLength;
    }
    signal?.throwIfAborted();
    const snapshot: StoredSnapshot = {
      index: meta.index,
      term: meta.term,
      config: meta.config,
      size,
      sha256: hash.digest('hex'),
    };
    this.durable.latest = { snapshot, chunks: copies };
    return snapshot;
  }

  async *read(
    snapshot: StoredSnapshot,
    options?: { signal?: AbortSignal },
  ): AsyncIterable<Uint8Array> {
    const signal = options?.signal;
    signal?.throwIfAborted();
    const stored = this.durable.latest;
    if (
      stored === undefined ||
      stored.snapshot.index !== snapshot.index ||
      stored.snapshot.term !== snapshot.term ||
      stored.snapshot.sha256 !== snapshot.sha256
    ) {
      throw new StorageError(
        `snapshot ${snapshot.index}/${snapshot.term} is not stored (a newer one replaced it?)`,
      );
    }
    const hash = createHash('sha256');
    let size = 0;
    for (const chunk of stored.chunks) {
      hash.update(chunk);
      size += chunk.byteLength;
    }
    const sha256 = hash.digest('hex');
    if (sha256 !== stored.snapshot.sha256 || size !== stored.snapshot.size) {
      throw new CorruptSnapshotError(
        `snapshot ${snapshot.index}/${snapshot.term} is corrupt: its data has SHA-256 ${sha256} ` +
          `and ${size} bytes, but ${stored.snapshot.sha256} and ${stored.snapshot.size} were recorded`,
      );
    }
    for (const chunk of stored.chunks) {
      signal?.throwIfAborted();
      yield chunk.slice();
    }
  }

  async partial(options?: { signal?: AbortSignal }): Promise<PartialSnapshot | undefined> {
    options?.signal?.throwIfAborted();
    const partial = this.durable.partial;
    return partial === undefined ? undefined : withReceived(partial.snapshot, partial.chunks);
  }

  async beginPartial(
    snapshot: StoredSnapshot,
    options?: { signal?: AbortSignal },
  ): Promise<PartialSnapshot> {
    options?.signal?.throwIfAborted();
    const { index, term, config, size, sha256 } = snapshot;
    this.durable.partial = { snapshot: { index, term, config, size, sha256 }, chunks: [] };
    return { index, term, config, size, sha256, received: 0 };
  }

  async appendPartial(
    offset: number,
    data: Uint8Array,
    options?: { signal?: AbortSignal },
  ): Promise<PartialSnapshot> {
    options?.signal?.throwIfAborted();
    const partial = this.durable.partial;
    if (partial === undefined) throw new RangeError('no partial snapshot to append to');
    const held = withReceived(partial.snapshot, partial.chunks);
    if (offset !== held.received) {
      throw new RangeError(`the partial snapshot holds ${held.received} bytes, not ${offset}`);
    }
    if (offset + data.byteLength > held.size) {
      throw new RangeError(`${offset + data.byteLength} bytes exceed the snapshot's ${held.size}`);
    }
    partial.chunks.push(data.slice());
    return { ...held, received: held.received + data.byteLength };
  }

  async completePartial(options?: { signal?: AbortSignal }): Promise<StoredSnapshot> {
    const signal = options?.signal;
    signal?.throwIfAborted();
    const partial = this.durable.partial;
    if (partial === undefined) throw new RangeError('no partial snapshot to complete');
    const held = withReceived(partial.snapshot, partial.chunks);
    if (held.received !== held.size) {
      throw new RangeError(`the partial snapshot holds ${held.received} of ${held.size} bytes`);
    }
    const hash = createHash('sha256');
    for (const chunk of partial.chunks) hash.update(chunk);
    const sha256 = hash.digest('hex');
    if (sha256 !== held.sha256) {
      this.durable.partial = undefined;
      throw new CorruptSnapshotError(
        `the received snapshot ${held.index}/${held.term} has SHA-256 ${sha256}, not the announced ${held.sha256}`,
      );
    }
    this.durable.latest = { snapshot: partial.snapshot, chunks: partial.chunks };
    this.durable.partial = undefined;
    return partial.snapshot;
  }
}

function withReceived(snapshot: StoredSnapshot, chunks: readonly Uint8Array[]): PartialSnapshot {
  return { ...snapshot, received: chunks.reduce((sum, chunk) => sum + chunk.byteLength, 0) };
}

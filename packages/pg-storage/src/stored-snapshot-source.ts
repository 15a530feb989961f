import type { StoredSnapshot } from '@tsraft/core';
import type { AnyKysely } from './any-kysely.ts';
import type { RaftTables } from './raft-tables.ts';

/**
 * Where a snapshot stream of `PostgresSnapshotStore.read` comes from: the snapshot `snapshot` in
 * the chunk rows of `tables` on `db`. A state machine on the same `db` may restore the snapshot
 * from there instead of reading the stream (`stored-snapshot-restore.ts`).
 */
export interface StoredSnapshotSource {
  readonly db: AnyKysely;
  readonly tables: RaftTables;
  readonly snapshot: StoredSnapshot;
}

const SOURCE = Symbol('@tsraft/pg-storage: stored snapshot source');

type WithSource = AsyncIterable<Uint8Array> & { [SOURCE]?: StoredSnapshotSource };

/** `chunks`, labelled as the stream of the stored snapshot `source`. */
export function withStoredSource(
  chunks: AsyncIterable<Uint8Array>,
  source: StoredSnapshotSource,
): AsyncIterable<Uint8Array> {
  return Object.assign(chunks, { [SOURCE]: source });
}

/** Where `chunks` is stored, when it is a stream labelled by {@link withStoredSource}. */
export function storedSnapshotSource(
  chunks: AsyncIterable<Uint8Array>,
): StoredSnapshotSource | undefined {
  return (chunks as WithSource)[SOURCE];
}

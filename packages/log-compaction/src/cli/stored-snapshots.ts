import { PostgresSnapshotStore, type SnapshotRecord } from '@tsraft/pg-storage';
import { CliError, EXIT } from './cli-error.ts';
import type { NodeDatabase } from './node-database.ts';

/**
 * The snapshot store of a node's database, opened for reading: a database whose sessions run
 * with `synchronous_commit = off` is fine to read from.
 */
export function openSnapshotStore(
  database: NodeDatabase,
  schema: string,
  signal: AbortSignal,
): Promise<PostgresSnapshotStore> {
  return PostgresSnapshotStore.open({
    db: database.db,
    schema,
    allowSynchronousCommitOff: true,
    signal,
  });
}

/** Whether `target` names a stored snapshot (an id or `latest`) rather than a file. */
export function isSnapshotId(target: string): boolean {
  return target === 'latest' || /^\d+$/.test(target);
}

/**
 * The complete snapshot `target` names: `latest`, or a row id as `list` shows it.
 *
 * @throws CliError `notFound` when there is none, `refused` when it is still being saved.
 */
export async function findSnapshot(
  store: PostgresSnapshotStore,
  target: string,
  database: NodeDatabase,
  signal: AbortSignal,
): Promise<SnapshotRecord & { size: number; sha256: string }> {
  let record: SnapshotRecord | undefined;
  if (target === 'latest') {
    record = (await store.list({ signal })).find((candidate) => candidate.complete);
    if (record === undefined) {
      throw new CliError(
        EXIT.notFound,
        `${database.name} holds no complete snapshot`,
        "take one first: tsraft-snapshot create --admin <the node's tRPC URL>",
      );
    }
  } else {
    record = await store.get(Number(target), { signal });
    if (record === undefined) {
      throw new CliError(
        EXIT.notFound,
        `${database.name} holds no snapshot ${target}`,
        'list the snapshots it holds with tsraft-snapshot list, or use "latest"',
      );
    }
  }
  if (!record.complete || record.size === undefined || record.sha256 === undefined) {
    throw new CliError(
      EXIT.refused,
      `snapshot ${record.id} is not complete: it is being saved, or its save failed`,
      'wait for it to complete, or use "latest" (the newest complete snapshot)',
    );
  }
  return { ...record, size: record.size, sha256: record.sha256 };
}

import { writeSnapshotFile } from '../../file/snapshot-file-writer.ts';
import type { CommandContext, DatabaseOptions } from '../command-context.ts';
import { writeOutput } from '../file-io.ts';
import { openNodeDatabase } from '../node-database.ts';
import { formatBytes } from '../reporter.ts';
import { findSnapshot, openSnapshotStore } from '../stored-snapshots.ts';

/** `export <id|latest> <file|->`: a stored snapshot to a snapshot file. */
export async function exportCommand(
  target: string,
  path: string,
  options: DatabaseOptions,
  context: CommandContext,
): Promise<void> {
  const { signal, reporter } = context;
  await using database = await openNodeDatabase({ ...options, requireRaftSchema: true, signal });
  const store = await openSnapshotStore(database, options.schema, signal);
  const record = await findSnapshot(store, target, database, signal);
  const progress = reporter.progress(`export ${record.index}/${record.term}`, record.size);
  try {
    await writeOutput(
      path,
      writeSnapshotFile({
        header: {
          index: record.index,
          term: record.term,
          config: record.config,
          createdAt: new Date().toISOString(),
          source: { kind: 'export', snapshotId: record.id, schema: options.schema },
          size: record.size,
          sha256: record.sha256,
        },
        chunks: store.read(record, { signal }),
        onProgress: (bytes) => progress.update(bytes),
        signal,
      }),
      context,
    );
  } finally {
    progress.stop();
  }
  reporter.result(
    `exported snapshot ${record.id} (${record.index}/${record.term}, ${formatBytes(record.size)}) to ${path}`,
    {
      file: path,
      snapshot: {
        id: record.id,
        index: record.index,
        term: record.term,
        size: record.size,
        sha256: record.sha256,
      },
    },
  );
}

import type { CommandContext, DatabaseOptions } from '../command-context.ts';
import { openNodeDatabase } from '../node-database.ts';
import { formatBytes } from '../reporter.ts';
import { openSnapshotStore } from '../stored-snapshots.ts';

/** `list`: the snapshots a node's database holds, newest first. */
export async function listCommand(
  options: DatabaseOptions,
  context: CommandContext,
): Promise<void> {
  const { signal } = context;
  await using database = await openNodeDatabase({ ...options, requireRaftSchema: true, signal });
  const store = await openSnapshotStore(database, options.schema, signal);
  const records = await store.list({ signal });
  const rows = records.map((record) => [
    String(record.id),
    String(record.index),
    String(record.term),
    formatBytes(record.size ?? record.storedBytes),
    record.sha256?.slice(0, 12) ?? '-',
    record.createdAt.toISOString(),
    record.complete ? 'complete' : record.receiving ? 'receiving' : 'incomplete',
  ]);
  const text =
    records.length === 0
      ? `${database.name} holds no snapshot`
      : table(['ID', 'INDEX', 'TERM', 'SIZE', 'SHA-256', 'CREATED', 'STATE'], rows);
  context.reporter.result(text, {
    snapshots: records.map((record) => ({ ...record, createdAt: record.createdAt.toISOString() })),
  });
}

/** Columns padded to their widest cell. */
function table(head: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = head.map((cell, i) =>
    Math.max(cell.length, ...rows.map((row) => row[i]?.length ?? 0)),
  );
  return [head, ...rows]
    .map((row) =>
      row
        .map((cell, i) => cell.padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

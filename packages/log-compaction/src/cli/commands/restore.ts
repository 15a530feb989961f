import { NodeNotEmptyError, restoreNode, summarizeStateSnapshot } from '@tsraft/pg-storage';
import type { SnapshotFileHeader } from '../../file/snapshot-file-format.ts';
import { openSnapshotFile } from '../../file/snapshot-file-reader.ts';
import { CliError, EXIT } from '../cli-error.ts';
import type { CommandContext, DatabaseOptions } from '../command-context.ts';
import { openInput } from '../file-io.ts';
import { assertNotInUse, openNodeDatabase } from '../node-database.ts';
import { formatBytes } from '../reporter.ts';

/** Options of `restore`. */
export interface RestoreOptions extends DatabaseOptions {
  /** The replicated tables, as the node's state machine declares them. */
  readonly tables: readonly string[];
  /** Replace the state of a node that holds some. */
  readonly replace: boolean;
  /** Skip the check that no other client uses the database. */
  readonly force: boolean;
}

/**
 * `restore <file>`: a stopped node's database starts from the snapshot in `file`. The file is
 * read whole and checked first; then one transaction replaces the node's tables, sessions,
 * applied position, snapshots, log and hard state (pg-storage's `restoreNode`): a failure at any
 * point leaves the database as it was.
 */
export async function restoreCommand(
  path: string,
  options: RestoreOptions,
  context: CommandContext,
): Promise<void> {
  const { signal, reporter } = context;
  if (path === '-') {
    throw new CliError(
      EXIT.usage,
      'restore reads its file twice (a check, then the restore): standard input cannot be used',
      'save the snapshot to a file first and pass its path',
    );
  }
  const header = await checkFile(path, context);
  await using database = await openNodeDatabase({ ...options, requireRaftSchema: false, signal });
  await assertNotInUse(database, { force: options.force, signal });
  const input = await openInput(path, context);
  await using file = await openSnapshotFile(input.chunks, { signal });
  const progress = reporter.progress(`restore ${header.index}/${header.term}`, header.size);
  let stored: Awaited<ReturnType<typeof restoreNode>>;
  try {
    stored = await restoreNode({
      db: database.db,
      schema: options.schema,
      tables: options.tables,
      snapshot: { index: header.index, term: header.term, config: header.config },
      chunks: counted(file.data, (bytes) => progress.update(bytes)),
      replace: options.replace,
      signal,
    });
  } catch (error) {
    if (error instanceof NodeNotEmptyError) {
      throw new CliError(
        EXIT.refused,
        `${database.name}: ${error.message}; nothing was changed`,
        'restore into a new node, or pass --replace if this node must start over from the file (every node of its cluster must then be restored from the same file: see the runbook)',
        { cause: error },
      );
    }
    throw error;
  } finally {
    progress.stop();
  }
  reporter.result(
    `restored snapshot ${stored.index}/${stored.term} (${formatBytes(stored.size)}) into ${database.name}; start the node with the configuration ${JSON.stringify(stored.config)}`,
    { restored: stored, database: database.name },
  );
}

/** Reads the file whole: every checksum and the state's structure. Returns its header. */
async function checkFile(path: string, context: CommandContext): Promise<SnapshotFileHeader> {
  const { signal, reporter } = context;
  const input = await openInput(path, context);
  await using file = await openSnapshotFile(input.chunks, { signal });
  const progress = reporter.progress(`check ${path}`, file.header.size);
  try {
    const summary = await summarizeStateSnapshot(
      counted(file.data, (bytes) => progress.update(bytes)),
      { signal },
    );
    const { position } = summary.header;
    if (position.index !== file.header.index || position.term !== file.header.term) {
      throw new CliError(
        EXIT.corrupt,
        `the state inside ${path} is at ${position.index}/${position.term}, but the file records ${file.header.index}/${file.header.term}`,
        'the file was put together wrongly; use another copy',
      );
    }
  } finally {
    progress.stop();
  }
  return file.header;
}

async function* counted(
  chunks: AsyncIterable<Uint8Array>,
  onBytes: (bytes: number) => void,
): AsyncGenerator<Uint8Array> {
  let bytes = 0;
  for await (const chunk of chunks) {
    bytes += chunk.byteLength;
    onBytes(bytes);
    yield chunk;
  }
}

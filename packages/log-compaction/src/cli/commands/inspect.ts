import {
  isStateSnapshot,
  readStateSnapshotHeader,
  type StateSnapshotHeader,
} from '@tsraft/pg-storage';
import { openSnapshotFile } from '../../file/snapshot-file-reader.ts';
import { CliError, EXIT } from '../cli-error.ts';
import type { CommandContext } from '../command-context.ts';
import { openInput } from '../file-io.ts';
import { openNodeDatabase } from '../node-database.ts';
import { formatBytes } from '../reporter.ts';
import { findSnapshot, isSnapshotId, openSnapshotStore } from '../stored-snapshots.ts';

/** Options of `inspect`. */
export interface InspectOptions {
  readonly db?: string;
  readonly schema: string;
}

/**
 * `inspect <id|latest|file>`: a snapshot's metadata and the header of the state inside (its
 * position, session clock and tables), reading only the start of its data. `verify` reads all.
 */
export async function inspectCommand(
  target: string,
  options: InspectOptions,
  context: CommandContext,
): Promise<void> {
  const { signal, reporter } = context;
  if (options.db !== undefined && isSnapshotId(target)) {
    await using database = await openNodeDatabase({
      db: options.db,
      schema: options.schema,
      requireRaftSchema: true,
      signal,
    });
    const store = await openSnapshotStore(database, options.schema, signal);
    const record = await findSnapshot(store, target, database, signal);
    const state = await stateHeader(store.read(record, { signal }));
    reporter.result(
      describe(
        `snapshot ${record.id} of ${database.name}`,
        { ...record, createdAt: record.createdAt.toISOString() },
        state,
      ),
      { snapshot: { ...record, createdAt: record.createdAt.toISOString() }, state: state ?? null },
    );
    return;
  }
  if (isSnapshotId(target)) {
    throw new CliError(
      EXIT.usage,
      `"${target}" names a stored snapshot, but no --db says where`,
      "pass --db <the node's database URL>, or the path of a snapshot file",
    );
  }
  const input = await openInput(target, context);
  await using file = await openSnapshotFile(input.chunks, { signal });
  const state = await stateHeader(file.data);
  reporter.result(
    describe(`snapshot file ${target}`, { ...file.header, fileSize: input.size }, state),
    {
      file: target,
      header: file.header,
      state: state ?? null,
    },
  );
}

/** The state header at the start of `chunks`, when they are a Postgres state machine snapshot. */
async function stateHeader(
  chunks: AsyncIterable<Uint8Array>,
): Promise<StateSnapshotHeader | undefined> {
  const iterator = chunks[Symbol.asyncIterator]();
  try {
    const first = await iterator.next();
    if (first.done === true || !isStateSnapshot(first.value)) return undefined;
    const rest = (async function* () {
      yield first.value;
      for (let next = await iterator.next(); next.done !== true; next = await iterator.next()) {
        yield next.value;
      }
    })();
    return await readStateSnapshotHeader(rest);
  } finally {
    await iterator.return?.();
  }
}

function describe(
  title: string,
  meta: {
    index: number;
    term: number;
    config: unknown;
    size?: number | undefined;
    sha256?: string | undefined;
    createdAt: string;
    fileSize?: number | undefined;
  },
  state: StateSnapshotHeader | undefined,
): string {
  return [
    `${title}`,
    `  index/term:    ${meta.index}/${meta.term}`,
    `  configuration: ${JSON.stringify(meta.config)}`,
    ...(meta.size === undefined
      ? []
      : [`  size:          ${formatBytes(meta.size)} (${meta.size} bytes)`]),
    ...(meta.sha256 === undefined ? [] : [`  SHA-256:       ${meta.sha256}`]),
    ...(meta.fileSize === undefined ? [] : [`  file size:     ${formatBytes(meta.fileSize)}`]),
    `  created:       ${meta.createdAt}`,
    ...(state === undefined
      ? ['  state:         not a Postgres state machine snapshot']
      : [
          `  state:         tsraft-pg-state at ${state.position.index}/${state.position.term}, session clock ${new Date(state.now).toISOString()}`,
          `  tables:        ${state.tables.join(', ')}`,
        ]),
  ].join('\n');
}

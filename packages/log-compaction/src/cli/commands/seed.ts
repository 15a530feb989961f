import { type ClusterConfig, validateConfig } from '@tsraft/core';
import { NodeNotEmptyError, restoreNode, SEED_POSITION, seedSnapshot } from '@tsraft/pg-storage';
import { openSnapshotFile } from '../../file/snapshot-file-reader.ts';
import { writeSnapshotFile } from '../../file/snapshot-file-writer.ts';
import { CliError, EXIT } from '../cli-error.ts';
import type { CommandContext, DatabaseOptions } from '../command-context.ts';
import { openInput, writeOutput } from '../file-io.ts';
import { assertNotInUse, openNodeDatabase } from '../node-database.ts';
import { formatBytes } from '../reporter.ts';

/** Options of `seed`. */
export interface SeedOptions extends DatabaseOptions {
  readonly tables: readonly string[];
  /** The new cluster's voters (and learners). */
  readonly voters: readonly string[];
  readonly learners: readonly string[];
  /** The seed file to write. */
  readonly out: string;
  readonly force: boolean;
}

/**
 * `seed`: starts a new cluster from the existing tables of the node `--db` (whose rows are the
 * truth): writes them as the cluster's first snapshot to `--out` (index 1, term 1, the given
 * configuration), then restores that file into this node. The other nodes are restored from the
 * same file (`restore`). The node must be new (no Raft state) and stopped.
 */
export async function seedCommand(options: SeedOptions, context: CommandContext): Promise<void> {
  const { signal, reporter } = context;
  const config: ClusterConfig = {
    voters: options.voters,
    ...(options.learners.length === 0 ? {} : { learners: options.learners }),
  };
  try {
    validateConfig(config);
  } catch (error) {
    throw new CliError(
      EXIT.usage,
      `--voters/--learners: ${(error as Error).message}`,
      'list the node ids of the new cluster, e.g. --voters n1,n2,n3',
      { cause: error },
    );
  }
  if (options.out === '-') {
    throw new CliError(
      EXIT.usage,
      'seed restores its file into the node after writing it: --out cannot be standard output',
      'pass the path of the seed file to write',
    );
  }
  await using database = await openNodeDatabase({ ...options, requireRaftSchema: false, signal });
  await assertNotInUse(database, { force: options.force, signal });
  let seed: Awaited<ReturnType<typeof seedSnapshot>>;
  try {
    seed = await seedSnapshot({
      db: database.db,
      schema: options.schema,
      tables: options.tables,
      signal,
    });
  } catch (error) {
    if (error instanceof NodeNotEmptyError) {
      throw new CliError(
        EXIT.refused,
        `${database.name}: ${error.message}`,
        'seed only a new node (one that never ran tsraft); to copy a running cluster, use create and export instead',
        { cause: error },
      );
    }
    throw error;
  }
  const written = reporter.progress(`seed ${options.out}`, undefined);
  let size = 0;
  try {
    await writeOutput(
      options.out,
      writeSnapshotFile({
        header: {
          ...SEED_POSITION,
          config,
          createdAt: new Date().toISOString(),
          source: { kind: 'seed', schema: options.schema },
        },
        chunks: seed.chunks,
        onProgress: (bytes) => {
          size = bytes;
          written.update(bytes);
        },
        signal,
      }),
      context,
    );
  } finally {
    written.stop();
  }
  const input = await openInput(options.out, context);
  await using file = await openSnapshotFile(input.chunks, { signal });
  const restored = reporter.progress(`install into ${database.name}`, size);
  let installed = 0;
  try {
    await restoreNode({
      db: database.db,
      schema: options.schema,
      tables: options.tables,
      snapshot: { ...SEED_POSITION, config },
      chunks: (async function* () {
        for await (const chunk of file.data) {
          installed += chunk.byteLength;
          restored.update(installed);
          yield chunk;
        }
      })(),
      signal,
    });
  } catch (error) {
    throw new CliError(
      EXIT.unavailable,
      `the seed file ${options.out} was written, but installing it into ${database.name} failed (nothing was changed there): ${(error as Error).message}`,
      'fix the cause and run seed again (it writes the file anew)',
      { cause: error },
    );
  } finally {
    restored.stop();
  }
  const tables = options.tables.join(',');
  reporter.result(
    [
      `seeded a new cluster from ${database.name}: snapshot 1/1 (${formatBytes(size)}) written to ${options.out} and installed in this node.`,
      'Next, on every other node (stopped, new):',
      `  tsraft-snapshot restore ${options.out} --db <its database> --tables ${tables}`,
      `then start every node with the configuration ${JSON.stringify(config)}.`,
    ].join('\n'),
    { seeded: { ...SEED_POSITION, config, size }, file: options.out, database: database.name },
  );
}

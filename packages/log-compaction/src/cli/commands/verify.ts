import {
  isStateSnapshot,
  type StateSnapshotSummary,
  summarizeStateSnapshot,
} from '@tsraft/pg-storage';
import { openSnapshotFile } from '../../file/snapshot-file-reader.ts';
import { CliError, EXIT } from '../cli-error.ts';
import type { CommandContext } from '../command-context.ts';
import { openInput } from '../file-io.ts';
import { formatBytes, type Progress } from '../reporter.ts';

/**
 * `verify <file|->`: every frame's CRC-32, the size and SHA-256 of the whole, and, for a Postgres
 * state machine snapshot, its structure and that it is at the position the file records.
 */
export async function verifyCommand(path: string, context: CommandContext): Promise<void> {
  const { signal, reporter } = context;
  const input = await openInput(path, context);
  let progress: Progress | undefined;
  let summary: StateSnapshotSummary | undefined;
  let read = 0;
  const counted = (async function* () {
    for await (const chunk of input.chunks) {
      read += chunk.byteLength;
      progress?.update(read);
      yield chunk;
    }
  })();
  try {
    await using file = await openSnapshotFile(counted, { signal });
    const { header } = file;
    // Bytes of the file (the data's size stands in for standard input).
    progress = reporter.progress(`verify ${path}`, input.size ?? header.size);
    const [first, data] = await peek(file.data);
    if (first !== undefined && isStateSnapshot(first)) {
      summary = await summarizeStateSnapshot(data, { signal });
      const position = summary.header.position;
      if (position.index !== header.index || position.term !== header.term) {
        throw new CliError(
          EXIT.corrupt,
          `the state inside is at ${position.index}/${position.term}, but the file records ${header.index}/${header.term}`,
          'the file was put together wrongly; use another copy',
        );
      }
    } else {
      for await (const _ of data) {
        // Drained for its checks: a snapshot of another state machine's format.
      }
    }
    const end = file.end();
    if (end === undefined) throw new Error('the snapshot file was not read to its end');
    const { size, sha256 } = end;
    progress.stop();
    const lines = [
      `${path}: OK, snapshot ${header.index}/${header.term} (${formatBytes(size)}, SHA-256 ${sha256})`,
      `  configuration: ${JSON.stringify(header.config)}`,
      `  source: ${header.source.kind}, written ${header.createdAt}`,
      ...(summary === undefined
        ? ['  state: not a Postgres state machine snapshot (checked as bytes only)']
        : summary.rows.map(({ table, rows }) => `  ${table}: ${rows} rows`)),
    ];
    reporter.result(lines.join('\n'), {
      ok: true,
      file: path,
      header,
      size,
      sha256,
      state:
        summary === undefined
          ? null
          : { format: summary.format, position: summary.header.position, tables: summary.rows },
    });
  } catch (error) {
    progress?.stop();
    throw error;
  }
}

/** The stream's first chunk, and the whole stream again (that chunk included). */
async function peek(
  chunks: AsyncIterable<Uint8Array>,
): Promise<[Uint8Array | undefined, AsyncIterable<Uint8Array>]> {
  const iterator = chunks[Symbol.asyncIterator]();
  const first = await iterator.next();
  const rest = (async function* () {
    if (first.done === true) return;
    yield first.value;
    for (let next = await iterator.next(); next.done !== true; next = await iterator.next()) {
      yield next.value;
    }
  })();
  return [first.done === true ? undefined : first.value, rest];
}

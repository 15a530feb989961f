import {
  CorruptSnapshotError,
  lines,
  parseHeader,
  STATE_SNAPSHOT_FORMAT,
  type StateSnapshotHeader,
} from './state-snapshot-format.ts';

/** What a Postgres state machine snapshot holds, as {@link summarizeStateSnapshot} counts it. */
export interface StateSnapshotSummary {
  readonly format: typeof STATE_SNAPSHOT_FORMAT;
  /** Its header: the applied position, the session clock, the tables in order. */
  readonly header: StateSnapshotHeader;
  /** Rows per table, in the header's order (the session tables first). */
  readonly rows: readonly { readonly table: string; readonly rows: number }[];
}

/** Whether `bytes` (the start of a snapshot) begin like a Postgres state machine snapshot. */
export function isStateSnapshot(bytes: Uint8Array): boolean {
  const prefix = `#${STATE_SNAPSHOT_FORMAT} `;
  return new TextDecoder().decode(bytes.subarray(0, prefix.length)) === prefix;
}

/**
 * Reads the header line of a Postgres state machine snapshot, and no more of the stream.
 *
 * @throws CorruptSnapshotError when it does not start with this format's header.
 */
export async function readStateSnapshotHeader(
  chunks: AsyncIterable<Uint8Array>,
): Promise<StateSnapshotHeader> {
  for await (const line of lines(chunks)) return parseHeader(line);
  return parseHeader(undefined);
}

/**
 * Reads a whole Postgres state machine snapshot (`tsraft-pg-state/1`) and checks its structure
 * without a database: the header, the sections in the header's order, one JSON object per row
 * line, and the end line's row count. Memory stays at one chunk and one line. Whether each row
 * fits its table is checked only by a restore.
 *
 * @throws CorruptSnapshotError at the first check that fails.
 */
export async function summarizeStateSnapshot(
  chunks: AsyncIterable<Uint8Array>,
  options: { signal?: AbortSignal } = {},
): Promise<StateSnapshotSummary> {
  let header: StateSnapshotHeader | undefined;
  let counts: number[] = [];
  let section = -1;
  let total = 0;
  let ended = false;
  for await (const line of lines(chunks)) {
    options.signal?.throwIfAborted();
    if (header === undefined) {
      header = parseHeader(line);
      counts = header.tables.map(() => 0);
      continue;
    }
    if (ended) throw new CorruptSnapshotError('corrupt snapshot: data after its end');
    if (line.startsWith('{')) {
      if (section < 0 || !line.endsWith('}')) {
        throw new CorruptSnapshotError(
          `corrupt snapshot: malformed row line ${JSON.stringify(line.slice(0, 60))}`,
        );
      }
      counts[section] = (counts[section] ?? 0) + 1;
      total++;
    } else if (line.startsWith('#table ')) {
      const n = Number(line.slice('#table '.length));
      if (!Number.isSafeInteger(n) || n <= section || n >= header.tables.length) {
        throw new CorruptSnapshotError(`corrupt snapshot: unexpected section "${line}"`);
      }
      section = n;
    } else if (line.startsWith('#end ')) {
      let end: { rows?: unknown };
      try {
        end = JSON.parse(line.slice('#end '.length)) as { rows?: unknown };
      } catch (error) {
        throw new CorruptSnapshotError('corrupt snapshot: malformed end line', { cause: error });
      }
      if (end.rows !== total) {
        throw new CorruptSnapshotError(
          `corrupt snapshot: it holds ${total} rows, its end line says ${String(end.rows)}`,
        );
      }
      ended = true;
    } else {
      throw new CorruptSnapshotError(
        `corrupt snapshot: unexpected line ${JSON.stringify(line.slice(0, 60))}`,
      );
    }
  }
  if (header === undefined) throw new CorruptSnapshotError('corrupt snapshot: it is empty');
  if (!ended) throw new CorruptSnapshotError('corrupt snapshot: it is truncated (no end line)');
  const tables = header.tables;
  return {
    format: STATE_SNAPSHOT_FORMAT,
    header,
    rows: tables.map((table, i) => ({ table, rows: counts[i] ?? 0 })),
  };
}

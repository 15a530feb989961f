import {
  CorruptSnapshotError,
  lines,
  parseHeader,
  STATE_SNAPSHOT_FORMAT,
  type StateSnapshotHeader,
} from './state-snapshot-format.ts';
import { statePages } from './state-snapshot-pages.ts';

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
 * without a database (see {@link statePages}). Memory stays at one chunk and one page of rows.
 * Whether each row fits its table is checked only by a restore.
 *
 * @throws CorruptSnapshotError at the first check that fails.
 */
export async function summarizeStateSnapshot(
  chunks: AsyncIterable<Uint8Array>,
  options: { signal?: AbortSignal } = {},
): Promise<StateSnapshotSummary> {
  const pages = statePages(chunks, {
    pageRows: SUMMARY_PAGE_ROWS,
    pageBytes: SUMMARY_PAGE_BYTES,
    ...(options.signal === undefined ? {} : { signal: options.signal }),
  });
  let header: StateSnapshotHeader | undefined;
  for (let next = await pages.next(); ; next = await pages.next()) {
    if (next.done === true) {
      const counts = next.value;
      if (header === undefined) throw new CorruptSnapshotError('corrupt snapshot: it is empty');
      return {
        format: STATE_SNAPSHOT_FORMAT,
        header,
        rows: header.tables.map((table, i) => ({ table, rows: counts[i] ?? 0 })),
      };
    }
    if (next.value.kind === 'header') header = next.value.header;
  }
}

/** Pages of a summary: only counted, never held long. */
const SUMMARY_PAGE_ROWS = 10_000;
const SUMMARY_PAGE_BYTES = 1024 * 1024;

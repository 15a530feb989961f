import {
  CorruptSnapshotError,
  lines,
  parseHeader,
  type StateSnapshotHeader,
} from './state-snapshot-format.ts';

/** What {@link statePages} yields: the header first, then pages of one section's row lines. */
export type StateSnapshotItem =
  | { readonly kind: 'header'; readonly header: StateSnapshotHeader }
  | {
      readonly kind: 'page';
      /** The section (index into the header's tables). */
      readonly section: number;
      /** Row lines: one JSON object each. */
      readonly rows: readonly string[];
    };

/** Options of {@link statePages}. */
export interface StatePagesOptions {
  /** Rows per page at most. */
  readonly pageRows: number;
  /** Characters of rows per page at most (a page holds at least one row). */
  readonly pageChars: number;
  readonly signal?: AbortSignal;
}

/**
 * Reads a Postgres state machine snapshot (`tsraft-pg-state/1`) and checks its structure as it
 * goes: the header, the sections in increasing order, one JSON object per row line, the end
 * line's row count, nothing after it. Yields the header, then the rows in pages; returns the rows
 * of each section. Memory: one source chunk, one partial line and one page.
 *
 * @throws CorruptSnapshotError at the first check that fails (whether each row fits its table is
 * for Postgres to say when it is inserted).
 */
export async function* statePages(
  chunks: AsyncIterable<Uint8Array>,
  options: StatePagesOptions,
): AsyncGenerator<StateSnapshotItem, readonly number[]> {
  let header: StateSnapshotHeader | undefined;
  let counts: number[] = [];
  let section = -1;
  let total = 0;
  let ended = false;
  let rows: string[] = [];
  let chars = 0;
  const page = (): StateSnapshotItem => {
    const out: StateSnapshotItem = { kind: 'page', section, rows };
    rows = [];
    chars = 0;
    return out;
  };
  for await (const line of lines(chunks)) {
    options.signal?.throwIfAborted();
    if (header === undefined) {
      header = parseHeader(line);
      counts = header.tables.map(() => 0);
      yield { kind: 'header', header };
      continue;
    }
    if (ended) throw new CorruptSnapshotError('corrupt snapshot: data after its end');
    if (line.startsWith('{')) {
      if (section < 0 || !line.endsWith('}')) {
        throw new CorruptSnapshotError(
          `corrupt snapshot: malformed row line ${JSON.stringify(line.slice(0, 60))}`,
        );
      }
      if (
        rows.length >= options.pageRows ||
        (rows.length > 0 && chars + line.length > options.pageChars)
      ) {
        yield page();
      }
      rows.push(line);
      chars += line.length;
      counts[section] = (counts[section] ?? 0) + 1;
      total++;
    } else if (line.startsWith('#table ')) {
      if (rows.length > 0) yield page();
      const n = Number(line.slice('#table '.length));
      if (!Number.isSafeInteger(n) || n <= section || n >= header.tables.length) {
        throw new CorruptSnapshotError(`corrupt snapshot: unexpected section "${line}"`);
      }
      section = n;
    } else if (line.startsWith('#end ')) {
      if (rows.length > 0) yield page();
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
  return counts;
}

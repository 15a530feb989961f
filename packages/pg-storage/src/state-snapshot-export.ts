import type { LogPosition } from '@tsraft/core';
import { SnapshotExportRefusedError, StorageError } from '@tsraft/core';
import { type ControlledTransaction, type RawBuilder, sql } from 'kysely';
import type { AnyKysely } from './any-kysely.ts';
import { toSafeInteger } from './int8.ts';
import type { RaftTables } from './raft-tables.ts';
import type { ReplicatedTable } from './replicated-tables.ts';
import { SnapshotTextChunks } from './state-snapshot-chunks.ts';
import { headerLine, SESSION_SECTIONS, type StateSnapshotHeader } from './state-snapshot-format.ts';
import { runStorageOperation } from './storage-failure.ts';

/** What a snapshot of the Postgres state machine covers, and how it is read and written. */
export interface StateSnapshotScope {
  /** The node's own Postgres (a pool or PGlite). */
  readonly db: AnyKysely;
  /** The Raft schema's tables: the applied position, the sessions, the restore staging table. */
  readonly tables: RaftTables;
  /** The Raft schema's name. */
  readonly schema: string;
  /** The application's replicated tables, in their order. */
  readonly appTables: readonly ReplicatedTable[];
  /** Rows per cursor fetch of an export, and per staging row of a restore. */
  readonly pageRows: number;
  /** Connections an export reads plain tables with on a server. */
  readonly exportConnections: number;
}

/**
 * Characters of rows an export's page of table blocks aims at (adaptive). Pages this large cost
 * few round trips and statements, and few, short-lived large strings.
 */
const PAGE_CHARS = 1024 * 1024;
/**
 * Bytes of each chunk an export emits. Rows are encoded straight into the chunk being filled
 * (one at a time), instead of joining pages into a larger string and encoding that: the only
 * string of a page is the driver's value, with no flattened copy of the joined text beside it.
 */
const CHUNK_BYTES = 1024 * 1024;
/**
 * A row `t` as JSON, which may hold raw newlines: `to_json` (a third cheaper than `to_jsonb`)
 * prints the values of `json` columns as they were stored, where a raw newline can only be
 * whitespace between tokens (JSON strings escape theirs). `t.*`, not `t`: Postgres resolves a
 * bare `t` to a column named `t` before the table alias.
 */
const ROW_JSON_RAW = sql`to_json(t.*)::text`;
/** A row `t` as one line of JSON: {@link ROW_JSON_RAW} with its raw newlines turned to spaces. */
const ROW_JSON = sql`replace(${ROW_JSON_RAW}, E'\n', ' ')`;
/** Table blocks of an export's first page of a table, and the most of any page. */
const FIRST_PAGE_BLOCKS = 8;
const MAX_PAGE_BLOCKS = 16_384;
/** Pages of table blocks an export requests ahead of the one it hands on. */
const PAGES_AHEAD = 4;

let exportCounter = 0;

/**
 * Exports the state of `scope` at its applied position (`tsraft-pg-state/1`, see
 * `state-snapshot-format.ts`): one `REPEATABLE READ, READ ONLY` transaction (plus, with
 * `exportConnections > 1`, helpers in its view), read page by page while the stream is consumed.
 * The transactions end when the stream ends or is abandoned.
 */
export async function exportStateSnapshot(
  scope: StateSnapshotScope,
  options?: {
    signal?: AbortSignal;
    /**
     * The position the snapshot says it is at, instead of the applied position: seeding a new
     * cluster from a node's existing tables (`seedSnapshot`), which no log explains yet.
     */
    seedPosition?: LogPosition;
  },
): Promise<{ position: LogPosition; chunks: AsyncIterable<Uint8Array> }> {
  const signal = options?.signal;
  const seedPosition = options?.seedPosition;
  // PGlite has one connection: a transaction held open while the stream is read would block
  // whoever consumes it. There the cursors are declared WITH HOLD (Postgres materializes them
  // at commit) and read after the transaction ends.
  const single = scope.db.getExecutor().adapter.supportsMultipleConnections === false;
  const id = `tsraft_export_${process.pid}_${++exportCounter}`;
  const sections: ExportSection[] = [
    {
      name: `${scope.schema}.client_session`,
      id: scope.tables.clientSession,
      regclass: `${scope.schema}.client_session`,
    },
    {
      name: `${scope.schema}.client_result`,
      id: scope.tables.clientResult,
      regclass: `${scope.schema}.client_result`,
    },
    ...scope.appTables,
  ];
  const trx = await runStorageOperation('starting a snapshot export', signal, () =>
    scope.db
      .startTransaction()
      .setIsolationLevel('repeatable read')
      .setAccessMode('read only')
      .execute(),
  );
  const parallel = !single && scope.exportConnections > 1;
  // Transactions of the other connections of a parallel export, in the view of `trx`.
  const helpers: ControlledTransaction<unknown>[] = [];
  const endAll = async (): Promise<void> => {
    for (const transaction of [...helpers, trx]) {
      await transaction
        .rollback()
        .execute()
        .catch(() => {});
    }
  };
  let header: StateSnapshotHeader;
  let sources: ExportSource[];
  try {
    ({ header, sources } = await runStorageOperation(
      'starting a snapshot export',
      signal,
      async () => {
        // The first query takes the transaction's snapshot: everything below reads this view.
        const { rows } = await sql<Record<string, unknown>>`
          select index, term, now ${parallel ? sql`, pg_export_snapshot() as snapshot` : sql``}
          from ${scope.tables.appliedState}
        `.execute(trx);
        const row = rows[0];
        if (row === undefined) throw new StorageError('the applied_state row is missing');
        const blockCounts = single ? [] : await exportBlockCounts(trx, sections);
        const sources = sections.map(
          (section, i): ExportSource =>
            blockCounts[i] === undefined
              ? { kind: 'cursor', name: section.name, table: section.id, cursor: `${id}_${i}` }
              : {
                  kind: 'blocks',
                  name: section.name,
                  table: section.id,
                  blocks: blockCounts[i],
                },
        );
        if (parallel && sources.some((source) => source.kind === 'blocks')) {
          // Opened while `trx` holds its snapshot and its locks, and ended before it.
          for (let n = 1; n < scope.exportConnections; n++) {
            const helper = await scope.db
              .startTransaction()
              .setIsolationLevel('repeatable read')
              .setAccessMode('read only')
              .execute();
            helpers.push(helper);
            await sql`set transaction snapshot ${sql.lit(String(row.snapshot))}`.execute(helper);
          }
        }
        for (const source of sources) {
          if (source.kind !== 'cursor') continue;
          await sql`
            declare ${sql.id(source.cursor)} no scroll cursor ${single ? sql`with hold` : sql``}
            for select ${ROW_JSON} as line from ${source.table} t
          `.execute(trx);
        }
        if (single) await trx.commit().execute();
        return {
          header: {
            position: seedPosition ?? {
              index: toSafeInteger(row.index, 'applied_state.index'),
              term: toSafeInteger(row.term, 'applied_state.term'),
            },
            now: toSafeInteger(row.now, 'applied_state.now'),
            tables: [...SESSION_SECTIONS, ...scope.appTables.map((table) => table.name)],
          },
          sources,
        };
      },
    ));
  } catch (error) {
    await endAll();
    throw error;
  }
  const reader: AnyKysely = single ? scope.db : trx;
  const blockReaders: readonly AnyKysely[] = [trx, ...helpers];
  const pageRows = scope.pageRows;
  const read = <T>(body: () => Promise<T>): Promise<T> =>
    runStorageOperation('exporting a snapshot', signal, body);
  async function* chunks(): AsyncGenerator<Uint8Array> {
    const out = new SnapshotTextChunks(CHUNK_BYTES);
    const open = new Set(
      sources.flatMap((source) => (source.kind === 'cursor' ? [source.cursor] : [])),
    );
    let done = false;
    try {
      out.line(headerLine(header));
      let rows = 0;
      for (const [i, source] of sources.entries()) {
        out.line(`#table ${i}`);
        const pages =
          source.kind === 'cursor'
            ? cursorPages(reader, source, pageRows, read)
            : blockPages(blockReaders, source, read);
        for await (const page of pages) {
          rows += page.rows;
          for (const lines of page.lines) out.line(lines);
          yield* out.take();
        }
        if (source.kind === 'cursor') {
          await read(() => sql`close ${sql.id(source.cursor)}`.execute(reader));
          open.delete(source.cursor);
        }
      }
      out.line(`#end ${JSON.stringify({ rows })}`);
      yield* out.end();
      if (!single) {
        for (const helper of helpers) await helper.commit().execute();
        await trx.commit().execute();
      }
      done = true;
    } finally {
      if (!done) {
        if (single) {
          for (const cursor of open) {
            await sql`close ${sql.id(cursor)}`.execute(reader).catch(() => {});
          }
        } else {
          await endAll();
        }
      }
    }
  }
  return { position: header.position, chunks: chunks() };
}

/** A table an export reads: its name, its SQL identifier and its name for a `regclass` cast. */
type ExportSection = Pick<ReplicatedTable, 'name' | 'id' | 'regclass'>;

/**
 * How an export reads one table: by ranges of its heap blocks (`ctid`), each range's rows as one
 * aggregated text value, or through a cursor (PGlite, where the transaction cannot stay open, and
 * relations that are not plain tables).
 */
type ExportSource = BlocksSource | CursorSource;

interface BlocksSource {
  readonly kind: 'blocks';
  /** The table's name, for errors. */
  readonly name: string;
  readonly table: RawBuilder<unknown>;
  readonly blocks: number;
}

interface CursorSource {
  readonly kind: 'cursor';
  /** The table's name, for errors. */
  readonly name: string;
  readonly table: RawBuilder<unknown>;
  readonly cursor: string;
}

/** Rows of an export: texts of one or more snapshot lines each, without the last newline. */
interface ExportPage {
  readonly lines: readonly string[];
  readonly rows: number;
}

type ExportRead = <T>(body: () => Promise<T>) => Promise<T>;

/**
 * Locks the sections (ACCESS SHARE: no rewrite of a table can move its rows while the export
 * reads it by block ranges) and returns, for each plain table, its number of heap blocks; for
 * other relations, or a server older than 14 (no TID range scans), `undefined` (read through a
 * cursor). Called after the transaction's snapshot was taken: every row it sees lies below that
 * size, since rows visible to the snapshot cannot be removed while it is held.
 */
async function exportBlockCounts(
  trx: AnyKysely,
  sections: readonly ExportSection[],
): Promise<(number | undefined)[]> {
  await sql`lock table ${sql.join(sections.map((section) => section.id))} in access share mode`.execute(
    trx,
  );
  const names = JSON.stringify(sections.map((section) => section.regclass));
  const { rows } = await sql<Record<string, unknown>>`
    select c.relkind, pg_relation_size(c.oid) / current_setting('block_size')::int8 as blocks,
      current_setting('server_version_num')::int4 as version
    from jsonb_array_elements_text(cast(${names} as jsonb)) with ordinality as x(name, ord)
    join pg_class c on c.oid = x.name::regclass
    order by x.ord
  `.execute(trx);
  return rows.map((row) =>
    row.relkind === 'r' && Number(row.version) >= 140_000
      ? toSafeInteger(row.blocks, 'relation size')
      : undefined,
  );
}

/**
 * Pages of a cursor's rows, `pageRows` at a time.
 *
 * @throws StorageError if a row's line is not a string (never a snapshot with a line missing).
 */
async function* cursorPages(
  reader: AnyKysely,
  source: CursorSource,
  pageRows: number,
  read: ExportRead,
): AsyncGenerator<ExportPage> {
  for (;;) {
    const page = await read(() =>
      sql<{ line: unknown }>`
        fetch forward ${sql.raw(String(pageRows))} from ${sql.id(source.cursor)}
      `.execute(reader),
    );
    if (page.rows.length === 0) return;
    const lines = page.rows.map((row) => {
      if (typeof row.line !== 'string') throw rowsNotLines(source.name);
      assertRestorable(row.line, source.name);
      return row.line;
    });
    yield { lines, rows: lines.length };
  }
}

/**
 * Pages of a table read by ranges of its `blocks` heap blocks (TID range scans), each page's rows
 * fetched as ONE text value: one round trip and one driver value per page instead of one per
 * row. The range adapts to aim at {@link PAGE_CHARS} characters per page, and up to
 * {@link PAGES_AHEAD} pages (at least two per reader) are requested before the current one is
 * handed on, so that Postgres keeps producing them while the stream's consumer works (at most
 * that many pages in memory). Page `k` is read through `readers[k % readers.length]`:
 * connections in one view, whose backends print their pages at the same time; pages are handed
 * on in order.
 *
 * Rows are read as {@link ROW_JSON_RAW}, without a `replace` per row: a page whose text holds
 * more newlines than the ones between its rows (a `json` value printed with raw newlines) is read
 * again, with {@link ROW_JSON}, in the same transaction (the same rows).
 *
 * @throws StorageError if a page's text is still not one line per row after that (never a
 *   snapshot with rows missing or merged).
 */
async function* blockPages(
  readers: readonly AnyKysely[],
  source: BlocksSource,
  read: ExportRead,
): AsyncGenerator<ExportPage> {
  const { table, blocks } = source;
  let span = FIRST_PAGE_BLOCKS;
  let from = 0;
  const readPage = (
    reader: AnyKysely,
    rowJson: RawBuilder<unknown>,
    start: number,
    end: number,
  ): Promise<BlockPage> =>
    read(async () => {
      const { rows } = await sql<Record<string, unknown>>`
        select string_agg(${rowJson}, E'\n') as text, count(*) as rows from ${table} t
        where t.ctid >= cast(${`(${start},0)`} as tid) and t.ctid < cast(${`(${end},0)`} as tid)
      `.execute(reader);
      const row = rows[0];
      return {
        text: typeof row?.text === 'string' ? row.text : null,
        rows: Number(row?.rows ?? 0),
      };
    });
  const pending: {
    reader: AnyKysely;
    from: number;
    to: number;
    result: Promise<BlockPage>;
  }[] = [];
  let requested = 0;
  const requestAhead = (): void => {
    while (pending.length < Math.max(PAGES_AHEAD, 2 * readers.length) && from < blocks) {
      const to = Math.min(blocks, from + span);
      const reader = readers[requested++ % readers.length] as AnyKysely;
      const result = readPage(reader, ROW_JSON_RAW, from, to);
      // Awaited below, or abandoned when the stream stops early: never an unhandled rejection.
      result.catch(() => {});
      pending.push({ reader, from, to, result });
      from = to;
    }
  };
  requestAhead();
  for (let current = pending.shift(); current !== undefined; current = pending.shift()) {
    let page = await current.result;
    if (!linePerRow(page)) {
      page = await readPage(current.reader, ROW_JSON, current.from, current.to);
      if (!linePerRow(page)) throw rowsNotLines(source.name);
    }
    const text = page.text ?? '';
    assertRestorable(text, source.name);
    const rows = page.rows;
    const currentSpan = current.to - current.from;
    span =
      text.length === 0
        ? Math.min(MAX_PAGE_BLOCKS, span * 2)
        : Math.max(
            1,
            Math.min(MAX_PAGE_BLOCKS, Math.floor((PAGE_CHARS * currentSpan) / text.length)),
          );
    requestAhead();
    if (rows > 0) yield { lines: [text], rows };
  }
}

/** A page of rows read by block ranges: their lines joined by newlines (`null`: no lines). */
interface BlockPage {
  readonly text: string | null;
  readonly rows: number;
}

/** Whether `page` holds one line per row. */
function linePerRow(page: BlockPage): boolean {
  return page.rows === 0 || (page.text !== null && lineBreaks(page.text) === page.rows - 1);
}

/** An export refused because the rows of `table` did not come out as one JSON line each. */
function rowsNotLines(table: string): StorageError {
  return new StorageError(
    `the snapshot export read rows of ${table} that are not one line of JSON each; the export is refused (a bug: please report it with the table's definition)`,
  );
}

/** The JSON escape `\u0000` (its backslash not escaped by one before it). */
const NUL_ESCAPE = /(?<!\\)(?:\\\\)*\\u0000/;

/**
 * Checks that the exported rows `text` of `table` can be restored: a `json` value (the type keeps
 * its text as written) may hold the escape `\u0000`, which `json_populate_recordset` refuses to
 * decode ("unsupported Unicode escape sequence"), so such a snapshot could never be installed.
 * Refusing it here fails the snapshot, not the node: it goes on, and keeps its log.
 *
 * @throws SnapshotExportRefusedError naming the table and what to do.
 */
function assertRestorable(text: string, table: string): void {
  if (text.includes('\\u0000') && NUL_ESCAPE.test(text)) {
    throw new SnapshotExportRefusedError(
      `the snapshot export is refused: a json value of ${table} holds the escape \\u0000 (the NUL character), which Postgres cannot restore from a snapshot ("unsupported Unicode escape sequence"). Take it out of the table's json values (jsonb refuses it on input), then snapshot again; until then the log is kept`,
    );
  }
}

/** The number of newlines in `text`. */
function lineBreaks(text: string): number {
  let count = 0;
  for (let at = text.indexOf('\n'); at !== -1; at = text.indexOf('\n', at + 1)) count++;
  return count;
}

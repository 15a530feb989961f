import type { LogPosition } from '@tsraft/core';
import { StorageError } from '@tsraft/core';
import { type RawBuilder, sql } from 'kysely';
import type { AnyKysely } from './any-kysely.ts';
import type { StateSnapshotScope } from './state-snapshot-export.ts';
import {
  CorruptSnapshotError,
  SESSION_SECTIONS,
  type StateSnapshotHeader,
} from './state-snapshot-format.ts';
import { statePages } from './state-snapshot-pages.ts';
import { runStorageOperation } from './storage-failure.ts';

/** What a restore works on. */
export type RestoreScope = Pick<StateSnapshotScope, 'db' | 'tables' | 'appTables' | 'pageRows'>;

/** Bytes of rows per statement (and per staging row) of a restore. */
const PAGE_BYTES = 512 * 1024;

/** Bytes of the block whose allocation raises a server backend's malloc thresholds. */
const MALLOC_RAISE_BYTES = 16 * 1024 * 1024;

/**
 * Replaces the state of `scope` with the snapshot `chunks` at `position`, all or nothing: the
 * replicated and session tables, the applied position and the session clock. A snapshot that is
 * not in the format, is truncated, or holds a row that does not fit rejects with
 * `CorruptSnapshotError` and changes nothing.
 *
 * On a server (a pool) this is ONE transaction that inserts the rows page by page as they are
 * read ({@link restoreStateIn}); the stream may come from the same database on another
 * connection (the snapshot store). On PGlite (one connection, which a transaction would hold
 * while the stream needs it) the rows are first staged in `restore_staging` (unlogged), then one
 * transaction moves them into place.
 */
export async function restoreStateSnapshot(
  scope: RestoreScope,
  position: LogPosition,
  chunks: AsyncIterable<Uint8Array>,
  options?: { signal?: AbortSignal },
): Promise<void> {
  const signal = options?.signal;
  const single = scope.db.getExecutor().adapter.supportsMultipleConnections === false;
  try {
    if (single) {
      await restoreStaged(scope, position, chunks, signal);
    } else {
      await runStorageOperation('restoring a snapshot', signal, () =>
        scope.db
          .transaction()
          .execute((trx) => restoreStateIn(trx, scope, position, chunks, signal)),
      );
    }
  } catch (error) {
    if (error instanceof StorageError && error.cause instanceof CorruptSnapshotError) {
      throw error.cause;
    }
    throw error;
  }
}

/**
 * Inside the caller's transaction `trx`: truncates the replicated and session tables, inserts the
 * snapshot's rows page by page as they are read (one statement in flight while the next page is
 * parsed; memory: a chunk and three pages), and sets the applied position and session clock.
 * Returns the snapshot's header.
 *
 * @throws CorruptSnapshotError for a snapshot that is damaged, not at `position`, or of other
 * tables; the caller rolls back.
 */
export async function restoreStateIn(
  trx: AnyKysely,
  scope: RestoreScope,
  position: LogPosition,
  chunks: AsyncIterable<Uint8Array>,
  signal: AbortSignal | undefined,
): Promise<StateSnapshotHeader> {
  const targets = sectionTables(scope);
  await sql`truncate ${sql.join(targets)}`.execute(trx);
  // A server (a pool), not PGlite (one connection, in this process' WebAssembly).
  const server = trx.getExecutor().adapter.supportsMultipleConnections !== false;
  if (server) await raiseMallocThresholds(trx);
  const pages = statePages(chunks, {
    pageRows: scope.pageRows,
    pageBytes: PAGE_BYTES,
    ...(signal === undefined ? {} : { signal }),
  });
  // `pg` sends a `Uint8Array` parameter in binary format, which for `json` is its text: the
  // rows never become JavaScript strings. PGlite (one connection) would take it for `bytea`:
  // it gets the text.
  const decoder = new TextDecoder();
  let header: StateSnapshotHeader | undefined;
  let inFlight: Promise<void> | undefined;
  try {
    for (let next = await pages.next(); next.done !== true; next = await pages.next()) {
      const item = next.value;
      if (item.kind === 'header') {
        header = checkHeader(item.header, scope, position);
        continue;
      }
      const target = targets[item.section] as RawBuilder<unknown>;
      const name = header?.tables[item.section] ?? String(item.section);
      const payload = server ? item.json : decoder.decode(item.json);
      await inFlight;
      inFlight = insertRows(
        trx,
        target,
        name,
        sql`select r.* from json_populate_recordset(cast(null as ${target}), cast(${payload} as json)) r`,
        item.rows,
      );
      // Awaited before the next statement; a failure meanwhile must not go unhandled.
      inFlight.catch(() => {});
    }
    await inFlight;
  } finally {
    await closePages(pages);
  }
  if (header === undefined) throw new CorruptSnapshotError('corrupt snapshot: it is empty');
  await setApplied(trx, scope, position, header);
  return header;
}

/**
 * Makes the server backend that `trx` runs on keep the memory it frees (up to 32 MiB) instead
 * of giving it back to the kernel after each statement: glibc's malloc (the one of Postgres on
 * Linux, as packaged) trims its heap once the free memory at its top passes a threshold that
 * starts at 128 KiB, and raises it to twice the size of the largest block it freed that it had
 * mapped on its own (up to 32 MiB; mallopt(3), "dynamic mmap threshold"). Each insert of a
 * restore allocates a few MiB (the page, its parsed rows, the tuples), which went back to the
 * kernel after the statement and came again page fault by page fault: a quarter of the
 * backend's CPU (100 MiB of 1 KiB rows on a new connection: 1.15-1.21 s, 0.81-0.93 s after
 * this). One block of {@link MALLOC_RAISE_BYTES}, allocated and freed, raises the thresholds for
 * the rest of the backend's life (a backend that already freed large blocks, such as one that
 * stored a snapshot's pieces, has them raised already). Another malloc, or thresholds the
 * operator set, ignore it.
 */
export async function raiseMallocThresholds(trx: AnyKysely): Promise<void> {
  await sql`select length(repeat('x', ${MALLOC_RAISE_BYTES}))`.execute(trx);
}

/** PGlite: stages the rows outside any transaction, then moves them into place in one. */
async function restoreStaged(
  scope: RestoreScope,
  position: LogPosition,
  chunks: AsyncIterable<Uint8Array>,
  signal: AbortSignal | undefined,
): Promise<void> {
  const t = scope.tables;
  const db = scope.db;
  try {
    await runStorageOperation('clearing the restore staging table', signal, () =>
      sql`truncate ${t.restoreStaging}`.execute(db),
    );
    const pages = statePages(chunks, {
      pageRows: scope.pageRows,
      pageBytes: PAGE_BYTES,
      ...(signal === undefined ? {} : { signal }),
    });
    let header: StateSnapshotHeader | undefined;
    let seq = 0;
    const decoder = new TextDecoder();
    let next = await pages.next();
    try {
      for (; next.done !== true; next = await pages.next()) {
        const item = next.value;
        if (item.kind === 'header') {
          header = checkHeader(item.header, scope, position);
          continue;
        }
        const at = seq++;
        const payload = decoder.decode(item.json);
        await runStorageOperation('staging a snapshot', signal, () =>
          sql`
            insert into ${t.restoreStaging} (section, seq, row_count, payload)
            values (${item.section}, ${at}, ${item.rows}, ${payload})
          `.execute(db),
        );
      }
    } finally {
      await closePages(pages);
    }
    const counts = next.value;
    if (header === undefined) throw new CorruptSnapshotError('corrupt snapshot: it is empty');
    const staged = header;
    const targets = sectionTables(scope);
    await runStorageOperation('restoring a snapshot', signal, () =>
      db.transaction().execute(async (trx) => {
        await sql`truncate ${sql.join(targets)}`.execute(trx);
        for (const [i, target] of targets.entries()) {
          const expected = counts[i] ?? 0;
          if (expected === 0) continue;
          signal?.throwIfAborted();
          await insertRows(
            trx,
            target,
            staged.tables[i] ?? String(i),
            sql`
              select r.* from ${t.restoreStaging} s
              cross join lateral json_populate_recordset(cast(null as ${target}), cast(s.payload as json)) r
              where s.section = ${i}
              order by s.seq
            `,
            expected,
          );
        }
        await setApplied(trx, scope, position, staged);
        await sql`truncate ${t.restoreStaging}`.execute(trx);
      }),
    );
  } catch (error) {
    await sql`truncate ${t.restoreStaging}`.execute(db).catch(() => {});
    throw error;
  }
}

/** The tables a snapshot's sections go into, in the sections' order. */
export function sectionTables(scope: RestoreScope): RawBuilder<unknown>[] {
  return [
    scope.tables.clientSession,
    scope.tables.clientResult,
    ...scope.appTables.map((table) => table.id),
  ];
}

export function checkHeader(
  header: StateSnapshotHeader,
  scope: RestoreScope,
  position: LogPosition,
): StateSnapshotHeader {
  const expectedTables = [...SESSION_SECTIONS, ...scope.appTables.map((table) => table.name)];
  if (header.position.index !== position.index || header.position.term !== position.term) {
    throw new CorruptSnapshotError(
      `the snapshot is at ${header.position.index}/${header.position.term}, not at ${position.index}/${position.term} as expected`,
    );
  }
  if (JSON.stringify(header.tables) !== JSON.stringify(expectedTables)) {
    throw new CorruptSnapshotError(
      `the snapshot holds the tables ${header.tables.join(', ')}, but this state machine replicates ${expectedTables.join(', ')}`,
    );
  }
  return header;
}

/** Inserts the rows `select` gives into `target` (named `name`), checking their count. */
async function insertRows(
  trx: AnyKysely,
  target: RawBuilder<unknown>,
  name: string,
  select: RawBuilder<unknown>,
  expected: number,
): Promise<void> {
  let inserted: bigint | undefined;
  try {
    const result = await sql`insert into ${target} overriding system value ${select}`.execute(trx);
    inserted = result.numAffectedRows;
  } catch (error) {
    throw rowsFailure(error, name) ?? error;
  }
  if (inserted !== undefined && Number(inserted) !== expected) {
    throw new CorruptSnapshotError(
      `corrupt snapshot: ${expected} lines of ${name} hold ${inserted} rows`,
    );
  }
}

export async function setApplied(
  trx: AnyKysely,
  scope: RestoreScope,
  position: LogPosition,
  header: StateSnapshotHeader,
): Promise<void> {
  await sql`
    update ${scope.tables.appliedState}
    set index = ${position.index}, term = ${position.term}, now = ${header.now}
  `.execute(trx);
}

/**
 * The `CorruptSnapshotError` for `error`, Postgres' refusal of the rows of the table `name`, or
 * `undefined` when it is not a refusal of the rows (a data exception or constraint violation).
 */
export function rowsFailure(error: unknown, name: string): CorruptSnapshotError | undefined {
  if (isUntranslatable(error)) {
    return new CorruptSnapshotError(
      `the rows of ${name} cannot be restored: a json value holds a \\u escape that Postgres cannot decode into this database, most likely \\u0000 (the NUL character) in a snapshot taken before exports refused it, or a character the database's encoding cannot hold; the snapshot's bytes are not the problem. Take such values out of ${name} on the leader, then let it take a new snapshot (${describe(error)})`,
      { cause: error },
    );
  }
  if (isDataError(error)) {
    return new CorruptSnapshotError(
      `corrupt snapshot: the rows of ${name} cannot be restored: ${describe(error)}`,
      { cause: error },
    );
  }
  return undefined;
}

/** SQLSTATE 22P05 (untranslatable character): a JSON `\u` escape Postgres cannot decode. */
function isUntranslatable(error: unknown): boolean {
  return (error as { code?: unknown } | null)?.code === '22P05';
}

/** SQLSTATE classes 22 (data exception) and 23 (integrity constraint violation). */
function isDataError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^2[23]/.test(code);
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Ends `pages` if a restore stops before reading it to the end (an error), so that the snapshot
 * stream under it is ended too (a store's read gives back what it holds); nothing once it ended.
 * A failure to end it is ignored: the restore's own error is the one to report.
 */
async function closePages(pages: AsyncGenerator<unknown, readonly number[]>): Promise<void> {
  await pages.return([]).catch(() => {});
}

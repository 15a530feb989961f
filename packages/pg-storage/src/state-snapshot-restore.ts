import type { LogPosition } from '@tsraft/core';
import { StorageError } from '@tsraft/core';
import { type RawBuilder, sql } from 'kysely';
import type { StateSnapshotScope } from './state-snapshot-export.ts';
import {
  CorruptSnapshotError,
  lines,
  parseHeader,
  SESSION_SECTIONS,
  type StateSnapshotHeader,
} from './state-snapshot-format.ts';
import { runStorageOperation } from './storage-failure.ts';

/** Characters of rows per staging row of a restore. */
const STAGING_CHARS = 1024 * 1024;

/**
 * Replaces the state of `scope` with the snapshot `chunks` at `position`: stages its rows in
 * `restore_staging` (unlogged) page by page, checking the format as it goes, then in ONE
 * transaction truncates the replicated and session tables, inserts the staged rows and sets the
 * applied position and the session clock. A snapshot that is not in the format, is truncated,
 * or holds a row that does not fit rejects with `CorruptSnapshotError` and changes nothing.
 */
export async function restoreStateSnapshot(
  scope: Pick<StateSnapshotScope, 'db' | 'tables' | 'appTables' | 'pageRows'>,
  position: LogPosition,
  chunks: AsyncIterable<Uint8Array>,
  options?: { signal?: AbortSignal },
): Promise<void> {
  const signal = options?.signal;
  const t = scope.tables;
  const db = scope.db;
  try {
    await runStorageOperation('clearing the restore staging table', signal, () =>
      sql`truncate ${t.restoreStaging}`.execute(db),
    );
    const { header, counts } = await stage(scope, position, chunks, signal);
    const sections: RawBuilder<unknown>[] = [
      t.clientSession,
      t.clientResult,
      ...scope.appTables.map((table) => table.id),
    ];
    await runStorageOperation('restoring a snapshot', signal, () =>
      db.transaction().execute(async (trx) => {
        await sql`truncate ${sql.join(sections)}`.execute(trx);
        for (const [i, target] of sections.entries()) {
          const expected = counts[i] ?? 0;
          if (expected === 0) continue;
          signal?.throwIfAborted();
          let inserted: bigint | undefined;
          try {
            const result = await sql`
              insert into ${target} overriding system value
              select r.* from ${t.restoreStaging} s
              cross join lateral jsonb_populate_recordset(cast(null as ${target}), cast(s.payload as jsonb)) r
              where s.section = ${i}
              order by s.seq
            `.execute(trx);
            inserted = result.numAffectedRows;
          } catch (error) {
            if (isDataError(error)) {
              throw new CorruptSnapshotError(
                `corrupt snapshot: the rows of ${header.tables[i]} cannot be restored: ${describe(error)}`,
                { cause: error },
              );
            }
            throw error;
          }
          if (inserted !== undefined && Number(inserted) !== expected) {
            throw new CorruptSnapshotError(
              `corrupt snapshot: ${expected} lines of ${header.tables[i]} hold ${inserted} rows`,
            );
          }
        }
        await sql`
          update ${t.appliedState}
          set index = ${position.index}, term = ${position.term}, now = ${header.now}
        `.execute(trx);
        await sql`truncate ${t.restoreStaging}`.execute(trx);
      }),
    );
  } catch (error) {
    await sql`truncate ${t.restoreStaging}`.execute(db).catch(() => {});
    if (error instanceof StorageError && error.cause instanceof CorruptSnapshotError) {
      throw error.cause;
    }
    throw error;
  }
}

/**
 * Reads the snapshot stream into the staging table, checking its format; returns its header
 * and the number of rows of each section. Writes nothing but staging rows.
 */
async function stage(
  scope: Pick<StateSnapshotScope, 'db' | 'tables' | 'appTables' | 'pageRows'>,
  position: LogPosition,
  chunks: AsyncIterable<Uint8Array>,
  signal: AbortSignal | undefined,
): Promise<{ header: StateSnapshotHeader; counts: number[] }> {
  const t = scope.tables;
  const expectedTables = [...SESSION_SECTIONS, ...scope.appTables.map((table) => table.name)];
  const iterator = lines(chunks)[Symbol.asyncIterator]();
  const header = parseHeader((await iterator.next()).value ?? undefined);
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
  const counts = expectedTables.map(() => 0);
  let section = -1;
  let seq = 0;
  let pending: string[] = [];
  let pendingChars = 0;
  let ended: number | undefined;
  let total = 0;
  const flush = async (): Promise<void> => {
    if (pending.length === 0) return;
    const payload = `[${pending.join(',')}]`;
    const rowCount = pending.length;
    pending = [];
    pendingChars = 0;
    const at = seq++;
    await runStorageOperation('staging a snapshot', signal, () =>
      sql`
        insert into ${t.restoreStaging} (section, seq, row_count, payload)
        values (${section}, ${at}, ${rowCount}, ${payload})
      `.execute(scope.db),
    );
  };
  for (let next = await iterator.next(); !next.done; next = await iterator.next()) {
    const line = next.value;
    signal?.throwIfAborted();
    if (ended !== undefined) throw new CorruptSnapshotError('corrupt snapshot: data after its end');
    if (line.startsWith('{')) {
      if (section < 0 || !line.endsWith('}')) {
        throw new CorruptSnapshotError(
          `corrupt snapshot: malformed row line ${JSON.stringify(line.slice(0, 60))}`,
        );
      }
      pending.push(line);
      pendingChars += line.length;
      counts[section] = (counts[section] ?? 0) + 1;
      total++;
      if (pending.length >= scope.pageRows || pendingChars >= STAGING_CHARS) await flush();
    } else if (line.startsWith('#table ')) {
      await flush();
      const n = Number(line.slice('#table '.length));
      if (!Number.isSafeInteger(n) || n <= section || n >= expectedTables.length) {
        throw new CorruptSnapshotError(`corrupt snapshot: unexpected section "${line}"`);
      }
      section = n;
    } else if (line.startsWith('#end ')) {
      await flush();
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
      ended = total;
    } else {
      throw new CorruptSnapshotError(
        `corrupt snapshot: unexpected line ${JSON.stringify(line.slice(0, 60))}`,
      );
    }
  }
  if (ended === undefined)
    throw new CorruptSnapshotError('corrupt snapshot: it is truncated (no end line)');
  return { header, counts };
}

/** SQLSTATE classes 22 (data exception) and 23 (integrity constraint violation). */
function isDataError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^2[23]/.test(code);
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

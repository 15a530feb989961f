import { Buffer } from 'node:buffer';
import type { LogPosition } from '@tsraft/core';
import { StorageError } from '@tsraft/core';
import { sql } from 'kysely';
import type { AnyKysely } from './any-kysely.ts';
import { fromBytea } from './bytea.ts';
import { toSafeInteger } from './int8.ts';
import { CorruptSnapshotError, parseHeader } from './state-snapshot-format.ts';
import {
  checkHeader,
  type RestoreScope,
  raiseMallocThresholds,
  rowsFailure,
  sectionTables,
  setApplied,
} from './state-snapshot-restore.ts';
import { runStorageOperation } from './storage-failure.ts';
import type { StoredSnapshotSource } from './stored-snapshot-source.ts';

/** What a restore from stored chunks works on: a restore's, and the Raft schema's name. */
export type StoredRestoreScope = RestoreScope & { readonly schema: string };

/** SQLSTATE the restore function raises for a damaged snapshot. */
const CORRUPT = 'TSR01';
/** SQLSTATE the restore function raises when the snapshot was deleted meanwhile. */
const GONE = 'TSR02';

const NEWLINE = 0x0a;

/**
 * Restores the snapshot that `source` says is stored in this database, inside Postgres: one
 * transaction truncates the replicated and session tables, inserts the rows read from the stored
 * chunk rows by a PL/pgSQL function (`pg_temp`, made for this restore), and sets the applied
 * position and session clock. The rows never go through this process: Postgres checks each
 * chunk's digest (`snapshot-chunk-digest.ts`), the order and size of the chunks, and the format
 * as `statePages` does, and parses the rows as the stream's restore does
 * (`json_populate_recordset`).
 *
 * Resolves `false`, having changed nothing, when a chunk of the snapshot has no digest (stored
 * by an older version): the caller restores from the stream then.
 *
 * @throws CorruptSnapshotError for a damaged snapshot, one not at `position` or of other tables
 * (nothing changed); StorageError when it is not stored (any more) or Postgres fails.
 */
export async function restoreStoredSnapshot(
  scope: StoredRestoreScope,
  position: LogPosition,
  source: StoredSnapshotSource,
  signal: AbortSignal | undefined,
): Promise<boolean> {
  const { snapshot, tables } = source;
  const name = `snapshot ${snapshot.index}/${snapshot.term}`;
  const found = await runStorageOperation(`reading ${name}`, signal, async () => {
    const { rows } = await sql<Record<string, unknown>>`
      select s.id, s.size,
        exists (select 1 from ${tables.snapshotChunk} c where c.snapshot_id = s.id and c.sha256 is null) as undigested
      from ${tables.snapshot} s
      where s.complete and s.index = ${snapshot.index} and s.term = ${snapshot.term}
        and s.sha256 = ${snapshot.sha256}
      order by s.id desc limit 1
    `.execute(scope.db);
    return rows[0];
  });
  if (found === undefined) {
    throw new StorageError(`${name} is not stored (a newer snapshot replaced it?)`);
  }
  if (found.undigested === true) return false;
  const id = toSafeInteger(found.id, 'snapshot.id');
  const size = toSafeInteger(found.size, 'snapshot.size');
  if (size !== snapshot.size) {
    throw new StorageError(
      `${name} is recorded with ${size} bytes, not the ${snapshot.size} expected`,
    );
  }
  try {
    await runStorageOperation('restoring a snapshot', signal, () =>
      scope.db.transaction().execute(async (trx) => {
        const header = checkHeader(
          parseHeader(await headerLine(trx, source, id, name)),
          scope,
          position,
        );
        const targets = sectionTables(scope);
        await sql`truncate ${sql.join(targets)}`.execute(trx);
        if (trx.getExecutor().adapter.supportsMultipleConnections !== false) {
          await raiseMallocThresholds(trx);
        }
        await sql.raw(restoreFunction(scope, source)).execute(trx);
        try {
          await sql`select pg_temp.tsraft_restore_stored(${id}, ${size}, ${header.tables.length})`.execute(
            trx,
          );
        } catch (error) {
          throw restoreFailure(error, name, header.tables);
        }
        await sql`drop function pg_temp.tsraft_restore_stored(int8, int8, int4)`.execute(trx);
        await setApplied(trx, scope, position, header);
      }),
    );
  } catch (error) {
    if (error instanceof StorageError && error.cause instanceof CorruptSnapshotError) {
      throw error.cause;
    }
    throw error;
  }
  return true;
}

/**
 * The first line of snapshot `id` (named `name`), read from its first chunk rows (the function
 * checks their digests after); `undefined` when there is none.
 *
 * @throws StorageError when the snapshot was deleted meanwhile (a newer one replaced it).
 */
async function headerLine(
  trx: AnyKysely,
  source: StoredSnapshotSource,
  id: number,
  name: string,
): Promise<string | undefined> {
  const parts: Uint8Array[] = [];
  for (let seq = 0; ; seq++) {
    const { rows } = await sql<{ data: unknown }>`
      select data from ${source.tables.snapshotChunk} where snapshot_id = ${id} and seq = ${seq}
    `.execute(trx);
    const row = rows[0];
    if (row === undefined) {
      const { rows: still } = await sql`
        select 1 from ${source.tables.snapshot} where id = ${id}
      `.execute(trx);
      if (still.length === 0) {
        throw new StorageError(
          `${name} was deleted while it was read (a newer snapshot replaced it)`,
        );
      }
      return undefined;
    }
    const data = fromBytea(row.data, 'snapshot_chunk.data');
    const end = data.indexOf(NEWLINE);
    parts.push(end === -1 ? data : data.subarray(0, end));
    if (end !== -1) break;
  }
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(parts));
  } catch (error) {
    throw new CorruptSnapshotError('corrupt snapshot: not valid UTF-8', { cause: error });
  }
}

/**
 * The error for a failure of the restore function, which names the section it was restoring in
 * the error's `table` field (`tables`: the sections' tables, as the header names them).
 */
function restoreFailure(error: unknown, name: string, tables: readonly string[]): unknown {
  const { code, message, table } = (error ?? {}) as {
    code?: unknown;
    message?: unknown;
    table?: unknown;
  };
  const detail = typeof message === 'string' ? message : String(error);
  if (code === CORRUPT) return new CorruptSnapshotError(detail, { cause: error });
  if (code === GONE) return new StorageError(`${name} ${detail}`, { cause: error });
  const section = typeof table === 'string' && /^[0-9]+$/.test(table) ? Number(table) : -1;
  return rowsFailure(error, tables[section] ?? 'the snapshot') ?? error;
}

function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

function quoteLiteral(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}

/**
 * The source of `pg_temp.tsraft_restore_stored(snapshot_id, size, sections)`: reads the chunk
 * rows of the snapshot in order (one query; each row's bytes fetched when its turn comes),
 * checks each one's digest and `seq`, cuts them into runs of whole lines (a line cut at a
 * chunk's end is carried to the next), and inserts each run of row lines of a section in one
 * statement (`json_populate_recordset` over the lines joined into a JSON array). The first line
 * (the header, checked by the caller) is skipped; section and end lines are checked as
 * `statePages` does, as are the total size, the end and the rows the end line counts.
 * Static statements per section table, so that Postgres plans each once.
 */
function restoreFunction(scope: StoredRestoreScope, source: StoredSnapshotSource): string {
  const chunks = source.tables.snapshotChunk.compile(scope.db).sql;
  const snapshots = source.tables.snapshot.compile(scope.db).sql;
  const targets = [
    `${quoteIdent(scope.schema)}.${quoteIdent('client_session')}`,
    `${quoteIdent(scope.schema)}.${quoteIdent('client_result')}`,
    ...scope.appTables.map((table) => table.regclass),
  ];
  const inserts = targets
    .map(
      (target, i) => `
          when ${i} then
            insert into ${target} overriding system value
            select r.* from json_populate_recordset(cast(null as ${target}), page) r;`,
    )
    .join('');
  const corrupt = (message: string, ...args: string[]): string =>
    `raise exception ${quoteLiteral(message)}${args.map((arg) => `, ${arg}`).join('')} using errcode = '${CORRUPT}';`;
  return `
create function pg_temp.tsraft_restore_stored(p_snapshot int8, p_size int8, p_sections int4)
returns void language plpgsql as $tsraft$
declare
  c record;
  next_seq int4 := 0;
  bytes int8 := 0;
  d bytea;
  pending bytea := '';
  seg bytea;
  nl int4;
  started bool := false;
  section int4 := -1;
  total int8 := 0;
  ended bool := false;
  off int4;
  len int4;
  e int4;
  rest bytea;
  line text;
  page json;
  n int8;
  ending json;
  failed_state text;
  failed_message text;
  failed_detail text;
begin
  for c in
    select x.seq, x.data, x.sha256 from (
      select k.seq, k.data, k.sha256, false as last from ${chunks} k where k.snapshot_id = p_snapshot
      union all select null, null, null, true
    ) x order by x.last, x.seq
  loop
    if c.data is null then
      -- after the last chunk: its size, then the lines left
      if bytes <> p_size then
        perform 1 from ${snapshots} s where s.id = p_snapshot;
        if not found then
          raise exception 'was deleted while it was read (a newer snapshot replaced it)' using errcode = '${GONE}';
        end if;
        ${corrupt('corrupt snapshot: % bytes are stored, not the recorded %', 'bytes', 'p_size')}
      end if;
      if octet_length(pending) = 0 then exit; end if;
      if get_byte(pending, octet_length(pending) - 1) <> 10 then
        ${corrupt('corrupt snapshot: it ends in the middle of a line')}
      end if;
      seg := pending;
      pending := '';
    else
      if c.seq <> next_seq then
        ${corrupt('corrupt snapshot: chunk % is missing', 'next_seq')}
      end if;
      next_seq := next_seq + 1;
      d := substring(c.data from 1);
      bytes := bytes + octet_length(d);
      if bytes > p_size then
        ${corrupt('corrupt snapshot: more than its recorded % bytes are stored', 'p_size')}
      end if;
      if c.sha256 is null or sha256(int4send(c.seq) || d) <> c.sha256 then
        ${corrupt('corrupt snapshot: its chunk % does not match its digest', 'c.seq')}
      end if;
      nl := position('\\x0a'::bytea in d);
      if nl = 0 then
        pending := pending || d;
        continue;
      end if;
      seg := pending || substring(d from 1 for nl);
      pending := substring(d from nl + 1);
    end if;
    -- seg: whole lines, each ending with a newline
    off := 0;
    len := octet_length(seg);
    while off < len loop
      if not started then
        -- the header, checked by the caller
        off := position('\\x0a'::bytea in seg);
        started := true;
      elsif ended then
        ${corrupt('corrupt snapshot: data after its end')}
      elsif get_byte(seg, off) = 123 then
        if section < 0 then
          ${corrupt('corrupt snapshot: a row before any section')}
        end if;
        rest := case when off = 0 then seg else substring(seg from off + 1) end;
        e := position('\\x0a23'::bytea in rest);
        if e = 0 then e := octet_length(rest); end if;
        page := cast('[' || replace(convert_from(substring(rest from 1 for e - 1), 'UTF8'), E'\\n', ',') || ']' as json);
        case section${inserts}
        end case;
        get diagnostics n = row_count;
        total := total + n;
        off := off + e;
      else
        rest := substring(seg from off + 1);
        e := position('\\x0a'::bytea in rest);
        line := convert_from(substring(rest from 1 for e - 1), 'UTF8');
        if line ~ '^#table (0|[1-9][0-9]{0,8})$' then
          n := cast(substr(line, 8) as int8);
          if n <= section or n >= p_sections then
            ${corrupt('corrupt snapshot: unexpected section "%"', 'line')}
          end if;
          section := n;
        elsif starts_with(line, '#end ') then
          begin
            ending := cast(substr(line, 6) as json);
          exception when others then
            ${corrupt('corrupt snapshot: malformed end line')}
          end;
          if json_typeof(ending -> 'rows') is distinct from 'number'
            or cast(ending ->> 'rows' as numeric) <> total then
            ${corrupt('corrupt snapshot: it holds % rows, its end line says %', 'total', "coalesce(ending ->> 'rows', 'undefined')")}
          end if;
          ended := true;
        else
          ${corrupt('corrupt snapshot: unexpected line %', 'to_json(left(line, 60))')}
        end if;
        off := off + e;
      end if;
    end loop;
  end loop;
  if not started then
    ${corrupt('corrupt snapshot: it is empty')}
  end if;
  if not ended then
    ${corrupt('corrupt snapshot: it is truncated (no end line)')}
  end if;
exception when others then
  -- the same error, saying in which section (one subtransaction for the whole restore)
  get stacked diagnostics failed_state = returned_sqlstate, failed_message = message_text,
    failed_detail = pg_exception_detail;
  raise exception using errcode = failed_state, message = failed_message,
    detail = failed_detail, table = section;
end
$tsraft$`;
}

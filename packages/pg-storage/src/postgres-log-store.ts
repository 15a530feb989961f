import {
  type EntryType,
  type HardState,
  type LogEntry,
  type LogPosition,
  type LogStore,
  type LogStoreState,
  type LogWrite,
  type NodeIdentity,
  StorageError,
  validateNodeIdentity,
} from '@tsraft/core';
import { sql } from 'kysely';
import type { AnyKysely } from './any-kysely.ts';
import { fromBytea } from './bytea.ts';
import { assertPosition, toSafeInteger, toSafeIntegerOrNull } from './int8.ts';
import { migrateRaftSchema } from './migrations.ts';
import { type RaftFunctions, type RaftTables, raftFunctions, raftTables } from './raft-tables.ts';
import { DEFAULT_SCHEMA, validateSchemaName } from './schema-name.ts';
import { runStorageOperation } from './storage-failure.ts';
import { assertSynchronousCommit } from './synchronous-commit.ts';

/** Options of {@link PostgresLogStore.open}. */
export interface PostgresLogStoreOptions {
  /**
   * Any Kysely instance on Postgres: `PostgresDialect` over a `pg` Pool in production, or
   * `PGliteDialect` for an embedded database. The store never closes it.
   */
  readonly db: AnyKysely;
  /**
   * Schema of the Raft tables, created and migrated by `open`. One schema holds one node's log;
   * use one schema per Raft group sharing a database. Default `raft`.
   */
  readonly schema?: string;
  /**
   * Accept a database whose sessions run with `synchronous_commit = off`. Default `false`: `open`
   * rejects, because Postgres could then lose acknowledged entries and votes in a crash.
   */
  readonly allowSynchronousCommitOff?: boolean;
  /** Aborts `open` (checked before the migration and the durability check). Default: none. */
  readonly signal?: AbortSignal;
}

/** Rows per multi-row `INSERT` of entries (4 parameters each; Postgres allows 65,535). */
const INSERT_ROWS = 1_000;
/** Payload bytes per multi-row `INSERT`, so one statement never holds a huge batch in memory. */
const INSERT_BYTES = 8 * 1024 * 1024;
/** What a log entry counts for in `entrySize` beyond its data (see `@tsraft/core`). */
const ENTRY_OVERHEAD = 24;
const ENTRY_TYPES: readonly EntryType[] = ['command', 'noop', 'config'];

/**
 * A {@link LogStore} in Postgres, through Kysely: entries in `<schema>.log_entry`, the log's start
 * in `<schema>.log_meta`, the hard state in `<schema>.hard_state`.
 *
 * Contract (beyond {@link LogStore}'s):
 * - Durable means committed: `persist` and `purge` resolve once their single transaction commits,
 *   so with `synchronous_commit = on` (the default; `open` checks it) an acknowledged write
 *   survives a crash of Postgres and of the machine.
 * - Every database failure rejects with a `StorageError` whose `cause` is the driver's error; a
 *   write that breaks the log's shape (entries not following the log, a truncation of compacted
 *   entries) rejects with a `RangeError`; an aborted signal rejects with its reason. In every one
 *   of those cases the transaction rolled back and nothing changed.
 * - A signal aborted while a `persist` or `purge` runs rolls its transaction back at the next
 *   statement boundary; once the commit has been sent the write completes and resolves.
 * - `load` and `entries` are single statements (a consistent view), read the log's bounds
 *   through the primary key index (never a scan of the log), and wait for a `persist` or `purge`
 *   of this instance that is in flight, so that a reader never mixes the states before and after
 *   one write.
 * - Indexes and terms are safe integers (at most 2^53 - 1); a stored value beyond that rejects
 *   with a `StorageError` instead of being rounded.
 */
export class PostgresLogStore implements LogStore {
  readonly #db: AnyKysely;
  readonly #tables: RaftTables;
  readonly #functions: RaftFunctions;
  /** Settles when the write in flight (if any) has committed or rolled back. */
  #writing: Promise<void> | undefined;

  private constructor(db: AnyKysely, schema: string) {
    this.#db = db;
    this.#tables = raftTables(schema);
    this.#functions = raftFunctions(schema);
  }

  /**
   * Migrates `options.schema` to the current version (see `migrateRaftSchema`), checks the
   * durability setting, and returns a store over it.
   *
   * @throws TypeError for an invalid schema name; StorageError when Postgres fails or runs with
   * `synchronous_commit = off` (unless allowed).
   */
  static async open(options: PostgresLogStoreOptions): Promise<PostgresLogStore> {
    const schema = validateSchemaName(options.schema ?? DEFAULT_SCHEMA);
    const { db, signal } = options;
    await migrateRaftSchema({ db, schema, ...(signal ? { signal } : {}) });
    await runStorageOperation('checking synchronous_commit', signal, () =>
      assertSynchronousCommit(db, options.allowSynchronousCommitOff ?? false),
    );
    return new PostgresLogStore(db, schema);
  }

  async load(options?: { signal?: AbortSignal }): Promise<LogStoreState> {
    return this.#read('load', options?.signal, async () => {
      const t = this.#tables;
      const { rows } = await sql<Record<string, unknown>>`
        select h.term, h.voted_for, h.commit_index, h.identity, m.snapshot_index, m.snapshot_term,
          (select max(index) from ${t.logEntry}) as last_index
        from ${t.hardState} h cross join ${t.logMeta} m
      `.execute(this.#db);
      const row = rows[0];
      if (row === undefined) throw missingRow('hard_state or log_meta');
      const snapshotIndex = toSafeInteger(row.snapshot_index, 'log_meta.snapshot_index');
      return {
        hardState: {
          term: toSafeInteger(row.term, 'hard_state.term'),
          votedFor: row.voted_for === null ? null : String(row.voted_for),
          commitIndex: toSafeInteger(row.commit_index, 'hard_state.commit_index'),
        },
        snapshot: {
          index: snapshotIndex,
          term: toSafeInteger(row.snapshot_term, 'log_meta.snapshot_term'),
        },
        lastIndex: toSafeIntegerOrNull(row.last_index, 'max(log_entry.index)') ?? snapshotIndex,
        ...(row.identity === null || row.identity === undefined
          ? {}
          : { identity: toNodeIdentity(row.identity) }),
      };
    });
  }

  async entries(
    from: number,
    to: number,
    options?: { maxBytes?: number; signal?: AbortSignal },
  ): Promise<LogEntry[]> {
    if (!Number.isSafeInteger(from) || !Number.isSafeInteger(to) || from > to) {
      throw new RangeError(`invalid entry range [${from}, ${to})`);
    }
    const maxBytes = options?.maxBytes;
    const budget =
      maxBytes !== undefined && Number.isFinite(maxBytes) ? Math.floor(maxBytes) : null;
    // Each entry counts at least ENTRY_OVERHEAD bytes, so no more rows than this can fit the budget:
    // the LIMIT bounds the rows Postgres reads however wide the range.
    const limit =
      budget === null ? to - from : Math.min(to - from, Math.max(0, budget) / ENTRY_OVERHEAD + 1);
    return this.#read('reading entries', options?.signal, async () => {
      const t = this.#tables;
      // One statement: the bounds and the rows come from one snapshot of the database.
      const { rows } = await sql<Record<string, unknown>>`
        select m.snapshot_index, (select max(index) from ${t.logEntry}) as last_index,
          e.index, e.term, e.type, e.data
        from ${t.logMeta} m
        left join lateral (
          select w.index, w.term, w.type, w.data
          from (
            select index, term, type, data,
              sum(octet_length(data) + ${ENTRY_OVERHEAD}) over (order by index) as running
            from ${t.logEntry}
            where index >= ${from} and index < ${to}
            order by index
            limit ${Math.floor(limit)}
          ) w
          where w.index = ${from} or cast(${budget} as int8) is null
            or w.running <= cast(${budget} as int8)
        ) e on true
        order by e.index
      `.execute(this.#db);
      const first = rows[0];
      if (first === undefined) throw missingRow('log_meta');
      const snapshotIndex = toSafeInteger(first.snapshot_index, 'log_meta.snapshot_index');
      const lastIndex =
        toSafeIntegerOrNull(first.last_index, 'max(log_entry.index)') ?? snapshotIndex;
      if (from <= snapshotIndex || to > lastIndex + 1) {
        throw new RangeError(
          `entry range [${from}, ${to}) is outside the log, which holds [${snapshotIndex + 1}, ${lastIndex + 1})`,
        );
      }
      const result: LogEntry[] = [];
      for (const row of rows) {
        if (row.index === null || row.index === undefined) continue;
        result.push(toLogEntry(row));
      }
      return result;
    });
  }

  async persist(write: LogWrite, options?: { signal?: AbortSignal }): Promise<void> {
    const signal = options?.signal;
    const appended = write.entries ?? [];
    validateWrite(write, appended);
    await this.#write('persist', signal, async () => {
      const t = this.#tables;
      const batches = [...insertBatches(appended)];
      if (
        write.snapshot === undefined &&
        write.truncateFrom === undefined &&
        write.identity === undefined &&
        batches.length <= 1
      ) {
        await this.#append(appended, write.hardState);
        return;
      }
      await this.#db.transaction().execute(async (trx) => {
        if (
          write.snapshot !== undefined ||
          write.truncateFrom !== undefined ||
          appended.length > 0
        ) {
          const bounds = await this.#lockBounds(trx, write.snapshot?.index);
          let { startIndex, lastIndex } = bounds;
          // 1. The log now starts after the snapshot (Raft paper 7, InstallSnapshot steps 6-7).
          if (write.snapshot !== undefined) {
            const { index, term } = write.snapshot;
            if (index < startIndex) {
              throw new RangeError(
                `snapshot ${index}/${term} is older than the log's start ${startIndex}/${bounds.startTerm}`,
              );
            }
            const agrees =
              (index === startIndex && term === bounds.startTerm) ||
              (index > startIndex && index <= lastIndex && bounds.termAtSnapshot === term);
            signal?.throwIfAborted();
            if (agrees) {
              if (index > startIndex) {
                await sql`delete from ${t.logEntry} where index <= ${index}`.execute(trx);
              }
            } else {
              if (lastIndex > startIndex) await sql`delete from ${t.logEntry}`.execute(trx);
              lastIndex = index;
            }
            await sql`
              update ${t.logMeta} set snapshot_index = ${index}, snapshot_term = ${term}
            `.execute(trx);
            startIndex = index;
          }
          // 2. A conflicting suffix goes (Raft paper 5.3).
          if (write.truncateFrom !== undefined) {
            const from = write.truncateFrom;
            if (from <= startIndex) {
              throw new RangeError(
                `cannot truncate from ${from}: entries up to ${startIndex} are compacted into a snapshot`,
              );
            }
            if (from <= lastIndex) {
              signal?.throwIfAborted();
              await sql`delete from ${t.logEntry} where index >= ${from}`.execute(trx);
              lastIndex = from - 1;
            }
          }
          // 3. The new entries follow the log.
          const firstNew = appended[0];
          if (firstNew !== undefined && firstNew.index !== lastIndex + 1) {
            throw new RangeError(
              `entries must be contiguous and follow the log: expected index ${lastIndex + 1}, got ${firstNew.index}`,
            );
          }
          for (const batch of batches) {
            signal?.throwIfAborted();
            await sql`
              insert into ${t.logEntry} (index, term, type, data)
              values ${sql.join(batch.map((e) => sql`(${e.index}, ${e.term}, ${e.type}, ${e.data})`))}
            `.execute(trx);
          }
        }
        // 4. The hard state (Raft paper, Figure 2: durable before answering any RPC).
        const hard = write.hardState;
        if (hard !== undefined) {
          signal?.throwIfAborted();
          await sql`
            update ${t.hardState}
            set term = ${hard.term}, voted_for = ${hard.votedFor}, commit_index = ${hard.commitIndex}
          `.execute(trx);
        }
        // 5. The node identity, in the same row.
        if (write.identity !== undefined) {
          signal?.throwIfAborted();
          await sql`
            update ${t.hardState} set identity = ${JSON.stringify(write.identity)}::jsonb
          `.execute(trx);
        }
        signal?.throwIfAborted();
      });
    });
  }

  async purge(upTo: LogPosition, options?: { signal?: AbortSignal }): Promise<void> {
    const signal = options?.signal;
    assertPosition(upTo.index, 'purge index');
    assertPosition(upTo.term, 'purge term');
    await this.#write('purge', signal, async () => {
      const t = this.#tables;
      await this.#db.transaction().execute(async (trx) => {
        const { startIndex, lastIndex, termAtSnapshot } = await this.#lockBounds(trx, upTo.index);
        if (upTo.index <= startIndex) return;
        if (upTo.index > lastIndex) {
          throw new RangeError(`cannot purge up to ${upTo.index}: the log ends at ${lastIndex}`);
        }
        if (termAtSnapshot !== upTo.term) {
          throw new RangeError(
            `cannot purge up to ${upTo.index}/${upTo.term}: the entry there has term ${termAtSnapshot}`,
          );
        }
        signal?.throwIfAborted();
        await sql`delete from ${t.logEntry} where index <= ${upTo.index}`.execute(trx);
        await sql`
          update ${t.logMeta} set snapshot_index = ${upTo.index}, snapshot_term = ${upTo.term}
        `.execute(trx);
        signal?.throwIfAborted();
      });
    });
  }

  /**
   * The common write, entries appended (at most one `INSERT`'s worth) and the hard state, as ONE
   * call of the schema's `tsraft_append` function in its own implicit transaction: one round trip
   * instead of five (`begin`, the bounds, the insert, the hard state, `commit`), planned once per
   * connection, and committed, hence durable, when it returns (the same contract as the
   * transaction). It locks the meta row, and inserts and updates only if the entries follow the
   * log; otherwise it changes nothing and a `RangeError` says why.
   */
  async #append(entries: readonly LogEntry[], hard: HardState | undefined): Promise<void> {
    const first = entries[0];
    if (first === undefined && hard === undefined) return;
    const starts: number[] = [];
    let size = 0;
    for (const entry of entries) {
      starts.push(size + 1);
      size += entry.data.byteLength;
    }
    const data = new Uint8Array(size);
    for (const [i, entry] of entries.entries()) data.set(entry.data, (starts[i] as number) - 1);
    const { rows } = await sql<Record<string, unknown>>`
      select ${this.#functions.append}(
        cast(${first?.index ?? null} as int8),
        cast(${entries.map((e) => e.term)} as int8[]),
        cast(${entries.map((e) => e.type)} as text[]),
        cast(${data} as bytea),
        cast(${starts} as int4[]),
        cast(${entries.map((e) => e.data.byteLength)} as int4[]),
        cast(${hard?.term ?? null} as int8),
        cast(${hard?.votedFor ?? null} as text),
        cast(${hard?.commitIndex ?? null} as int8)
      ) as last_index
    `.execute(this.#db);
    const lastIndex = toSafeIntegerOrNull(rows[0]?.last_index, 'max(log_entry.index)');
    if (lastIndex !== null) {
      throw new RangeError(
        `entries must be contiguous and follow the log: expected index ${lastIndex + 1}, got ${first?.index}`,
      );
    }
  }

  /**
   * Locks the log's meta row for the rest of `trx` (another store instance on the same schema
   * waits) and reads the log's bounds and the term of the entry at `at`, in one statement.
   */
  async #lockBounds(
    trx: AnyKysely,
    at: number | undefined,
  ): Promise<{
    startIndex: number;
    startTerm: number;
    lastIndex: number;
    termAtSnapshot: number | null;
  }> {
    const t = this.#tables;
    const { rows } = await sql<Record<string, unknown>>`
      select m.snapshot_index, m.snapshot_term,
        (select max(index) from ${t.logEntry}) as last_index,
        (select term from ${t.logEntry} where index = ${at ?? null}) as term_at
      from ${t.logMeta} m
      for update of m
    `.execute(trx);
    const row = rows[0];
    if (row === undefined) throw missingRow('log_meta');
    const startIndex = toSafeInteger(row.snapshot_index, 'log_meta.snapshot_index');
    return {
      startIndex,
      startTerm: toSafeInteger(row.snapshot_term, 'log_meta.snapshot_term'),
      lastIndex: toSafeIntegerOrNull(row.last_index, 'max(log_entry.index)') ?? startIndex,
      termAtSnapshot: toSafeIntegerOrNull(row.term_at, 'log_entry.term'),
    };
  }

  /** Runs a read once the write in flight, if any, has settled. */
  async #read<T>(operation: string, signal: AbortSignal | undefined, body: () => Promise<T>) {
    if (this.#writing !== undefined) await this.#writing;
    return runStorageOperation(operation, signal, body);
  }

  /** Runs a write, letting reads that start meanwhile wait for it to settle. */
  async #write(operation: string, signal: AbortSignal | undefined, body: () => Promise<void>) {
    const running = runStorageOperation(operation, signal, body);
    const settled = running.then(
      () => undefined,
      () => undefined,
    );
    this.#writing = settled;
    try {
      await running;
    } finally {
      if (this.#writing === settled) this.#writing = undefined;
    }
  }
}

/**
 * Checks what can be checked without the database; throws a `RangeError` (a `TypeError` for a
 * malformed identity) on a caller's bug.
 */
function validateWrite(write: LogWrite, appended: readonly LogEntry[]): void {
  if (write.snapshot !== undefined) {
    assertPosition(write.snapshot.index, 'snapshot index');
    assertPosition(write.snapshot.term, 'snapshot term');
  }
  if (write.truncateFrom !== undefined) assertPosition(write.truncateFrom, 'truncateFrom');
  let previous: LogEntry | undefined;
  for (const entry of appended) {
    assertPosition(entry.index, 'entry index');
    assertPosition(entry.term, 'entry term');
    if (!ENTRY_TYPES.includes(entry.type)) {
      throw new RangeError(`entry ${entry.index} has unknown type ${String(entry.type)}`);
    }
    if (!(entry.data instanceof Uint8Array)) {
      throw new RangeError(`entry ${entry.index} has data that is not a Uint8Array`);
    }
    if (previous !== undefined && entry.index !== previous.index + 1) {
      throw new RangeError(
        `entries must be contiguous: ${entry.index} follows ${previous.index} in one write`,
      );
    }
    previous = entry;
  }
  const hard: HardState | undefined = write.hardState;
  if (hard !== undefined) {
    assertPosition(hard.term, 'hard state term');
    assertPosition(hard.commitIndex, 'hard state commit index');
  }
  if (write.identity !== undefined) validateNodeIdentity(write.identity);
}

/** The node identity read back from `hard_state.identity` (jsonb: an object, or JSON text). */
function toNodeIdentity(value: unknown): NodeIdentity {
  try {
    return validateNodeIdentity(typeof value === 'string' ? JSON.parse(value) : value);
  } catch (error) {
    throw new StorageError(
      `hard_state.identity is malformed: the Raft schema was altered outside @tsraft/pg-storage (${String(error)})`,
      { cause: error },
    );
  }
}

/** Splits entries into multi-row `INSERT`s bounded by rows and bytes. */
function* insertBatches(entries: readonly LogEntry[]): Generator<LogEntry[]> {
  let batch: LogEntry[] = [];
  let bytes = 0;
  for (const entry of entries) {
    if (
      batch.length > 0 &&
      (batch.length >= INSERT_ROWS || bytes + entry.data.byteLength > INSERT_BYTES)
    ) {
      yield batch;
      batch = [];
      bytes = 0;
    }
    batch.push(entry);
    bytes += entry.data.byteLength;
  }
  if (batch.length > 0) yield batch;
}

function toLogEntry(row: Record<string, unknown>): LogEntry {
  const index = toSafeInteger(row.index, 'log_entry.index');
  const type = row.type as EntryType;
  if (!ENTRY_TYPES.includes(type)) {
    throw new StorageError(`log entry ${index} has unknown type ${String(row.type)}`);
  }
  return {
    index,
    term: toSafeInteger(row.term, 'log_entry.term'),
    type,
    data: fromBytea(row.data, 'log_entry.data'),
  };
}

function missingRow(table: string): StorageError {
  return new StorageError(
    `the single row of ${table} is missing: the Raft schema was altered outside @tsraft/pg-storage`,
  );
}

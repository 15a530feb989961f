import { StorageError } from '@tsraft/core';
import { sql } from 'kysely';
import { type Migration, type MigrationProvider, Migrator } from 'kysely/migration';
import type { AnyKysely } from './any-kysely.ts';
import { raftFunctions, raftTables, TABLE_NAMES } from './raft-tables.ts';
import { DEFAULT_SCHEMA, validateSchemaName } from './schema-name.ts';
import { runStorageOperation } from './storage-failure.ts';

/** Options of {@link migrateRaftSchema}. */
export interface MigrateRaftSchemaOptions {
  /** Any Kysely instance on Postgres (`PostgresDialect` on a `pg` Pool, or `PGliteDialect`). */
  readonly db: AnyKysely;
  /** Schema that holds the Raft tables and their migration bookkeeping. Default `raft`. */
  readonly schema?: string;
  /** Checked before starting; a migration in progress runs to its end (it is one transaction). */
  readonly signal?: AbortSignal;
}

/**
 * Brings the Raft tables of `schema` up to date, creating the schema if needed. Safe to call on
 * every start and from several processes at once.
 *
 * The package's migrations are recorded in its own tables (`<schema>.tsraft_migration` and
 * `<schema>.tsraft_migration_lock`), so they never mix with the application's Kysely migrations.
 * When everything is already applied (the usual start) this is one query and takes no lock, so
 * it never waits on an application migration in progress; only when a migration must actually run
 * does it go through Kysely's `Migrator`, whose lock (one Postgres advisory lock shared by every
 * Kysely migrator on the database) it then shares with the application's.
 *
 * @throws TypeError for an invalid schema name; StorageError (cause kept) when Postgres fails or
 * the schema was migrated by a newer version of this package.
 */
export async function migrateRaftSchema(options: MigrateRaftSchemaOptions): Promise<void> {
  const schema = validateSchemaName(options.schema ?? DEFAULT_SCHEMA);
  const { db, signal } = options;
  const migrations = raftMigrations(schema);
  await runStorageOperation(`migrating schema "${schema}"`, signal, async () => {
    const applied = await appliedMigrations(db, schema);
    const unknown = applied.filter((name) => !(name in migrations));
    if (unknown.length > 0) {
      throw new StorageError(
        `schema "${schema}" was migrated by a newer @tsraft/pg-storage (unknown migrations: ` +
          `${unknown.join(', ')}); upgrade the package`,
      );
    }
    if (Object.keys(migrations).every((name) => applied.includes(name))) return;
    signal?.throwIfAborted();
    const provider: MigrationProvider = { getMigrations: async () => migrations };
    const migrator = new Migrator({
      db,
      provider,
      migrationTableSchema: schema,
      migrationTableName: TABLE_NAMES.migration,
      migrationLockTableName: TABLE_NAMES.migrationLock,
    });
    const { error } = await migrator.migrateToLatest();
    if (error !== undefined) {
      throw new StorageError(
        `could not migrate schema "${schema}": ${error instanceof Error ? error.message : String(error)}`,
        { cause: error },
      );
    }
  });
}

/**
 * Where a database's Raft schema stands for this version of the package:
 * - `missing`: no Raft tables in the schema (a new node, or the wrong database or schema);
 * - `outdated`: migrated by an older version; `migrateRaftSchema` (any store's `open`) updates it;
 * - `current`: up to date;
 * - `newer`: migrated by a newer version of this package; upgrade before using it.
 */
export type RaftSchemaStatus = 'missing' | 'outdated' | 'current' | 'newer';

/**
 * Reads where the Raft schema stands without changing anything (tools that must not create or
 * migrate a schema by accident check this first).
 *
 * @throws TypeError for an invalid schema name; StorageError (cause kept) when Postgres fails.
 */
export async function raftSchemaStatus(
  options: MigrateRaftSchemaOptions,
): Promise<RaftSchemaStatus> {
  const schema = validateSchemaName(options.schema ?? DEFAULT_SCHEMA);
  const migrations = raftMigrations(schema);
  return runStorageOperation(`reading schema "${schema}"`, options.signal, async () => {
    const applied = await appliedMigrations(options.db, schema);
    if (applied.length === 0) return 'missing';
    if (applied.some((name) => !(name in migrations))) return 'newer';
    return Object.keys(migrations).every((name) => applied.includes(name)) ? 'current' : 'outdated';
  });
}

/** Names of the migrations recorded in `schema`, or none when its migration table is missing. */
async function appliedMigrations(db: AnyKysely, schema: string): Promise<string[]> {
  const found = await sql<{ present: boolean }>`
    select to_regclass(${`${schema}.${TABLE_NAMES.migration}`}) is not null as present
  `.execute(db);
  if (found.rows[0]?.present !== true) return [];
  const { rows } = await sql<{ name: string }>`
    select name from ${raftTables(schema).migration}
  `.execute(db);
  return rows.map((row) => row.name);
}

/**
 * The migrations, in order of their names. Never edit one that was released: add a new one.
 *
 * `log_meta` and `hard_state` hold exactly one row each (a boolean key that can only be true),
 * created here so that the stores only ever update them.
 */
function raftMigrations(schema: string): Record<string, Migration> {
  const t = raftTables(schema);
  const f = raftFunctions(schema);
  return {
    '0001_raft_log_and_snapshots': {
      async up(db: AnyKysely): Promise<void> {
        await sql`
          create table ${t.logEntry} (
            index int8 primary key,
            term int8 not null,
            type text not null check (type in ('command', 'noop', 'config')),
            data bytea not null
          )`.execute(db);
        await sql`
          create table ${t.logMeta} (
            id boolean primary key default true check (id),
            snapshot_index int8 not null,
            snapshot_term int8 not null
          )`.execute(db);
        await sql`insert into ${t.logMeta} (snapshot_index, snapshot_term) values (0, 0)`.execute(
          db,
        );
        await sql`
          create table ${t.hardState} (
            id boolean primary key default true check (id),
            term int8 not null,
            voted_for text,
            commit_index int8 not null
          )`.execute(db);
        await sql`
          insert into ${t.hardState} (term, voted_for, commit_index) values (0, null, 0)
        `.execute(db);
        await sql`
          create table ${t.snapshot} (
            id int8 generated always as identity primary key,
            index int8 not null,
            term int8 not null,
            config jsonb not null,
            size int8,
            sha256 text,
            created_at timestamptz not null default now(),
            complete boolean not null default false,
            check (not complete or (size is not null and sha256 is not null))
          )`.execute(db);
        await sql`
          create table ${t.snapshotChunk} (
            snapshot_id int8 not null references ${t.snapshot} (id) on delete cascade,
            seq int4 not null,
            data bytea not null,
            primary key (snapshot_id, seq)
          )`.execute(db);
      },
    },
    '0002_state_machine': {
      async up(db: AnyKysely): Promise<void> {
        // The applied position and the session clock (latest entry timestamp) of the state
        // machine, updated in the transaction that applies each batch.
        await sql`
          create table ${t.appliedState} (
            id boolean primary key default true check (id),
            index int8 not null,
            term int8 not null,
            now int8 not null
          )`.execute(db);
        await sql`insert into ${t.appliedState} (index, term, now) values (0, 0, 0)`.execute(db);
        await sql`
          create table ${t.clientSession} (
            client_id text primary key,
            last_active int8 not null,
            floor int8 not null,
            highest_seq int8 not null
          )`.execute(db);
        await sql`
          create index client_session_last_active on ${t.clientSession} (last_active)
        `.execute(db);
        await sql`
          create table ${t.clientResult} (
            client_id text not null,
            seq int8 not null,
            result jsonb not null,
            primary key (client_id, seq)
          )`.execute(db);
        // Rows of a snapshot being restored, before the one transaction that installs them.
        await sql`
          create unlogged table ${t.restoreStaging} (
            section int4 not null,
            seq int4 not null,
            row_count int4 not null,
            payload text not null,
            primary key (section, seq)
          )`.execute(db);
      },
    },
    '0003_partial_snapshots': {
      async up(db: AnyKysely): Promise<void> {
        // A snapshot being received from a leader in pieces (at most one): incomplete, with the
        // size and SHA-256 its leader announced; its chunk rows hold the bytes received so far.
        await sql`
          alter table ${t.snapshot} add column receiving boolean not null default false
        `.execute(db);
        await sql`
          create unique index snapshot_one_partial on ${t.snapshot} (receiving) where receiving
        `.execute(db);
      },
    },
    '0004_snapshot_chunks_uncompressed': {
      async up(db: AnyKysely): Promise<void> {
        // Snapshot chunks stored out of line without compression: pglz compressed each 1 MiB
        // chunk on every write at a few tens of MB/s, the slowest step of taking, sending and
        // receiving a snapshot. (New rows only; older ones stay as they are.)
        await sql`
          alter table ${t.snapshotChunk} alter column data set storage external
        `.execute(db);
      },
    },
    '0005_client_result_digest': {
      async up(db: AnyKysely): Promise<void> {
        // The digest of the command each recorded result answers: a stamp used again for a
        // different command is refused (SessionConflictError) instead of being answered with the
        // other command's result. Null for results recorded before.
        await sql`alter table ${t.clientResult} add column command_digest text`.execute(db);
      },
    },
    '0006_node_identity': {
      async up(db: AnyKysely): Promise<void> {
        // The node's durable identity (cluster id, incarnation, the incarnations it knows of its
        // peers), in the row of the hard state: written in the same transactions, lost with it.
        // Null in a database migrated from before: the node makes an incarnation at its next
        // start (core README, "Node identity", on upgrading).
        await sql`alter table ${t.hardState} add column identity jsonb`.execute(db);
      },
    },
    '0007_write_functions': {
      async up(db: AnyKysely): Promise<void> {
        // The two writes of every Raft round as functions, so that Postgres plans their
        // statements once per connection instead of once per call (a call is one short
        // statement); names inside are schema-qualified, so `search_path` does not matter.
        //
        // tsraft_append: the common persist (log store). Locks the log's meta row; when entries
        // are given (`first_index` not null: `terms`, `types` and the byte ranges `starts` and
        // `sizes` of `data`, one per entry) and do not follow the log, changes nothing and
        // returns the log's last index; otherwise inserts them, updates the hard state when
        // `hard_term` is not null, and returns null.
        await sql`
          create function ${f.append}(
            first_index int8, terms int8[], types text[], data bytea, starts int4[], sizes int4[],
            hard_term int8, hard_voted_for text, hard_commit_index int8
          ) returns int8 language plpgsql as $$
          declare
            last_index int8;
          begin
            select coalesce((select max(e.index) from ${t.logEntry} e), m.snapshot_index)
              into last_index
              from ${t.logMeta} m for update of m;
            if not found then
              raise exception 'the single row of log_meta is missing: the Raft schema was altered outside @tsraft/pg-storage';
            end if;
            if first_index is not null then
              if first_index <> last_index + 1 then
                return last_index;
              end if;
              insert into ${t.logEntry} (index, term, type, data)
              select first_index + k - 1, terms[k], types[k], substring(data from starts[k] for sizes[k])
              from generate_subscripts(terms, 1) as k;
            end if;
            if hard_term is not null then
              update ${t.hardState}
              set term = hard_term, voted_for = hard_voted_for, commit_index = hard_commit_index;
            end if;
            return null;
          end
          $$`.execute(db);
        // tsraft_finish_batch: the state machine's last statement of a batch. Moves the applied
        // position to (index, term, now) only from `expected_index`, and only then upserts the
        // batch's sessions, inserts its results and deletes the results below raised floors
        // (JSON arrays, null when there are none); returns whether the position moved.
        await sql`
          create function ${f.finishBatch}(
            expected_index int8, new_index int8, new_term int8, new_now int8,
            sessions jsonb, results jsonb, raised jsonb
          ) returns boolean language plpgsql as $$
          begin
            update ${t.appliedState} set index = new_index, term = new_term, now = new_now
            where index = expected_index;
            if not found then
              return false;
            end if;
            if sessions is not null then
              insert into ${t.clientSession} (client_id, last_active, floor, highest_seq)
              select x.c, x.a, x.f, x.h
              from jsonb_to_recordset(sessions) as x(c text, a int8, f int8, h int8)
              on conflict (client_id) do update set last_active = excluded.last_active,
                floor = excluded.floor, highest_seq = excluded.highest_seq;
            end if;
            if results is not null then
              insert into ${t.clientResult} (client_id, seq, result, command_digest)
              select x.c, x.s, x.r, x.d
              from jsonb_to_recordset(results) as x(c text, s int8, r jsonb, d text);
            end if;
            if raised is not null then
              -- One range scan of the primary key per client, over the results that just fell
              -- below its floor; offset 0 keeps the subquery from being flattened into a join
              -- that may scan the whole table.
              delete from ${t.clientResult} where ctid = any (array(
                select r.ctid
                from jsonb_to_recordset(raised) as x(c text, l int8, f int8),
                  lateral (
                    select cr.ctid from ${t.clientResult} cr
                    where cr.client_id = x.c and cr.seq > x.l and cr.seq <= x.f offset 0
                  ) r
              ));
            end if;
            return true;
          end
          $$`.execute(db);
      },
    },
    '0008_snapshot_chunk_digest': {
      async up(db: AnyKysely): Promise<void> {
        // Each snapshot chunk's digest (`snapshot-chunk-digest.ts`): SHA-256 of its seq and its
        // bytes, computed by the node that wrote it from the bytes it sent, so that a stored
        // snapshot can be checked and restored inside Postgres. Null for chunks written before.
        await sql`alter table ${t.snapshotChunk} add column sha256 bytea`.execute(db);
      },
    },
  };
}

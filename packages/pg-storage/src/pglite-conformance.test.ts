import { createHash, randomUUID } from 'node:crypto';
import { PGlite } from '@electric-sql/pglite';
import { StorageError } from '@tsraft/core';
import {
  describeLogStoreConformance,
  describeSnapshotStoreConformance,
} from '@tsraft/core/testing/conformance';
import { Kysely, PGliteDialect, sql } from 'kysely';
import { Migrator } from 'kysely/migration';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AnyKysely } from './any-kysely.ts';
import { CrashingProcess } from './crashing-dialect.test-helpers.ts';
import { migrateRaftSchema, raftSchemaStatus } from './migrations.ts';
import { PostgresLogStore } from './postgres-log-store.ts';
import { PostgresSnapshotStore } from './postgres-snapshot-store.ts';

// One in-memory PGlite for the file (a cold start takes seconds); each fixture gets a schema of
// its own, dropped when it is disposed. "Reopen" is a new store over the same database.
let db: AnyKysely;
let dialect: PGliteDialect;

beforeAll(async () => {
  dialect = new PGliteDialect({ pglite: new PGlite() });
  db = new Kysely({ dialect });
  await sql`select 1`.execute(db);
});

afterAll(async () => {
  await db?.destroy();
});

function freshSchema(): string {
  return `raft_${randomUUID().replaceAll('-', '').slice(0, 16)}`;
}

async function dropSchema(schema: string): Promise<void> {
  await sql`drop schema if exists ${sql.id(schema)} cascade`.execute(db);
}

// Each store runs in a process of its own: a Kysely over the file's PGlite whose connection the
// suite can kill between statements (an open transaction then rolls back, as in Postgres).
describeLogStoreConformance('Postgres on PGlite', async () => {
  const schema = freshSchema();
  let process = new CrashingProcess();
  const open = () =>
    PostgresLogStore.open({ db: new Kysely({ dialect: process.dialect(dialect) }), schema });
  const store = await open();
  return {
    store,
    reopen: () => {
      process = new CrashingProcess();
      return open();
    },
    crashAfter: (steps) => process.crashAfter(steps),
    [Symbol.asyncDispose]: () => dropSchema(schema),
  };
});

describeSnapshotStoreConformance('Postgres on PGlite', async () => {
  const schema = freshSchema();
  // Small chunk rows, so that the suite's snapshots span many of them.
  const open = () => PostgresSnapshotStore.open({ db, schema, chunkBytes: 64 * 1024 });
  return {
    store: await open(),
    reopen: open,
    corrupt: async (snapshot) => {
      await sql`
        update ${sql.id(schema, 'snapshot_chunk')}
        set data = set_byte(data, 0, get_byte(data, 0) # 255)
        where seq = 0 and snapshot_id = (
          select id from ${sql.id(schema, 'snapshot')}
          where complete and index = ${snapshot.index} and term = ${snapshot.term}
        )
      `.execute(db);
    },
    [Symbol.asyncDispose]: () => dropSchema(schema),
  };
});

describe('PostgresLogStore on PGlite', () => {
  it('rejects with a StorageError an index stored beyond 2^53 - 1, instead of rounding it', async () => {
    const schema = freshSchema();
    const store = await PostgresLogStore.open({ db, schema });
    await sql`update ${sql.id(schema, 'log_meta')} set snapshot_index = 9007199254740993`.execute(
      db,
    );
    const failure = store.load();
    await expect(failure).rejects.toThrow(StorageError);
    await expect(failure).rejects.toThrow(/9007199254740993n?.*2\^53 - 1/);
    await dropSchema(schema);
  });

  it('rejects a write that does not follow the log with a RangeError and changes nothing', async () => {
    const schema = freshSchema();
    const store = await PostgresLogStore.open({ db, schema });
    const data = new Uint8Array([1]);
    await store.persist({
      entries: [{ index: 1, term: 1, type: 'command', data }],
      hardState: { term: 1, votedFor: null, commitIndex: 0 },
    });
    await expect(
      store.persist({
        entries: [{ index: 3, term: 1, type: 'command', data }],
        hardState: { term: 2, votedFor: 'n1', commitIndex: 1 },
      }),
    ).rejects.toThrow(RangeError);
    expect(await store.load()).toEqual({
      hardState: { term: 1, votedFor: null, commitIndex: 0 },
      snapshot: { index: 0, term: 0 },
      lastIndex: 1,
    });
    await dropSchema(schema);
  });

  it('rejects with a StorageError, cause kept, when the database fails', async () => {
    const schema = freshSchema();
    const store = await PostgresLogStore.open({ db, schema });
    await sql`drop table ${sql.id(schema, 'hard_state')}`.execute(db);
    const error = await store.load().catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(StorageError);
    expect((error as StorageError).message).toMatch(/load failed/);
    expect((error as StorageError).cause).toBeInstanceOf(Error);
    await dropSchema(schema);
  });
});

describe('migrations on PGlite', () => {
  it("keep to their own tables and schema, beside the application's own Kysely migrations", async () => {
    const schema = freshSchema();
    const app = new Migrator({
      db,
      provider: {
        getMigrations: async () => ({
          '2024_accounts': {
            up: async (trx: AnyKysely) => {
              await sql`create table if not exists public.accounts (id int primary key)`.execute(
                trx,
              );
            },
          },
        }),
      },
    });
    expect((await app.migrateToLatest()).error).toBeUndefined();
    await PostgresLogStore.open({ db, schema });
    await PostgresSnapshotStore.open({ db, schema });
    const { rows: tables } = await sql<{ table_name: string }>`
      select table_name from information_schema.tables where table_schema = ${schema}
      order by table_name
    `.execute(db);
    expect(tables.map((row) => row.table_name)).toEqual([
      'applied_state',
      'client_result',
      'client_session',
      'hard_state',
      'log_entry',
      'log_meta',
      'restore_staging',
      'snapshot',
      'snapshot_chunk',
      'tsraft_migration',
      'tsraft_migration_lock',
    ]);
    const { rows: appMigrations } = await sql<{ name: string }>`
      select name from public.kysely_migration
    `.execute(db);
    expect(appMigrations.map((row) => row.name)).toEqual(['2024_accounts']);
    // The application's migrator still sees exactly its own migrations.
    expect((await app.migrateToLatest()).error).toBeUndefined();
    await dropSchema(schema);
  });

  it('refuse a schema name that is not a plain identifier', async () => {
    for (const schema of ['Raft', 'raft; drop table x', '1raft', 'pg_raft', '', 'a'.repeat(64)]) {
      await expect(PostgresLogStore.open({ db, schema })).rejects.toThrow(TypeError);
    }
  });

  it('keep two schemas apart', async () => {
    const [a, b] = [freshSchema(), freshSchema()];
    const storeA = await PostgresLogStore.open({ db, schema: a });
    const storeB = await PostgresLogStore.open({ db, schema: b });
    await storeA.persist({ hardState: { term: 7, votedFor: 'x', commitIndex: 0 } });
    expect((await storeB.load()).hardState.term).toBe(0);
    expect((await storeA.load()).hardState.term).toBe(7);
    await dropSchema(a);
    await dropSchema(b);
  });
});

describe('PostgresSnapshotStore on PGlite', () => {
  it('stores a snapshot as rows of chunkBytes and rejects one with a chunk missing', async () => {
    const schema = freshSchema();
    const store = await PostgresSnapshotStore.open({ db, schema, chunkBytes: 1000 });
    async function* chunks(): AsyncIterable<Uint8Array> {
      for (let i = 0; i < 10; i++) yield new Uint8Array(350).fill(i);
    }
    const saved = await store.save({ index: 3, term: 1, config: { voters: ['a'] } }, chunks());
    expect(saved.size).toBe(3500);
    const { rows } = await sql<{ size: number }>`
      select octet_length(data) as size from ${sql.id(schema, 'snapshot_chunk')} order by seq
    `.execute(db);
    expect(rows.map((row) => row.size)).toEqual([1000, 1000, 1000, 500]);
    await sql`delete from ${sql.id(schema, 'snapshot_chunk')} where seq = 1`.execute(db);
    const read = async (): Promise<void> => {
      for await (const _ of store.read(saved)) {
        // drain
      }
    };
    await expect(read()).rejects.toThrow(/corrupt: chunk 1 is missing/);
    await dropSchema(schema);
  });

  it('appends a received piece in one statement, yet finds out when the database lost the last pieces', async () => {
    const schema = freshSchema();
    const store = await PostgresSnapshotStore.open({ db, schema });
    const data = new Uint8Array(300).map((_, i) => i % 251);
    const announced = {
      index: 4,
      term: 2,
      config: { voters: ['a'] },
      size: data.byteLength,
      sha256: createHash('sha256').update(data).digest('hex'),
    };
    await store.beginPartial(announced);
    for (let offset = 0; offset < 200; offset += 50) {
      await store.appendPartial(offset, data.subarray(offset, offset + 50));
    }
    // What a crash of Postgres with `synchronous_commit = off` may do: the last pieces go.
    await sql`delete from ${sql.id(schema, 'snapshot_chunk')} where seq >= 2`.execute(db);
    await expect(store.appendPartial(200, data.subarray(200, 250))).rejects.toThrow(
      /holds 100 bytes, not 200/,
    );
    expect((await store.partial())?.received).toBe(100);
    for (let offset = 100; offset < 300; offset += 50) {
      await store.appendPartial(offset, data.subarray(offset, offset + 50));
    }
    expect(await store.completePartial()).toEqual(announced);
    const read: Uint8Array[] = [];
    for await (const chunk of store.read(announced)) read.push(chunk);
    expect(Buffer.concat(read)).toEqual(Buffer.from(data));
    await dropSchema(schema);
  });

  it('stores a received piece larger than chunkBytes as rows of chunkBytes, also after a restart', async () => {
    const schema = freshSchema();
    const open = () => PostgresSnapshotStore.open({ db, schema, chunkBytes: 40 });
    const data = new Uint8Array(300).map((_, i) => (i * 7) % 251);
    const announced = {
      index: 5,
      term: 2,
      config: { voters: ['a'] },
      size: data.byteLength,
      sha256: createHash('sha256').update(data).digest('hex'),
    };
    const first = await open();
    await first.beginPartial(announced);
    // The instance that wrote the piece before appends in one statement...
    await first.appendPartial(0, data.subarray(0, 100));
    await first.appendPartial(100, data.subarray(100, 130));
    // ...and one that did not (this node restarted) reads what is held first.
    const second = await open();
    await second.appendPartial(130, data.subarray(130, 300));
    const { rows } = await sql<{ seq: string; size: number }>`
      select seq, octet_length(data) as size from ${sql.id(schema, 'snapshot_chunk')} order by seq
    `.execute(db);
    expect(rows.map((row) => [Number(row.seq), row.size])).toEqual([
      [0, 40],
      [1, 40],
      [2, 20],
      [3, 30],
      [4, 40],
      [5, 40],
      [6, 40],
      [7, 40],
      [8, 10],
    ]);
    expect(await second.completePartial()).toEqual(announced);
    const read: Uint8Array[] = [];
    for await (const chunk of second.read(announced)) read.push(chunk);
    expect(Buffer.concat(read)).toEqual(Buffer.from(data));
    await dropSchema(schema);
  });

  it('deletes older snapshots and rows of failed saves once a newer one is complete', async () => {
    const schema = freshSchema();
    const store = await PostgresSnapshotStore.open({ db, schema });
    const config = { voters: ['a'] };
    async function* one(byte: number): AsyncIterable<Uint8Array> {
      yield new Uint8Array(10).fill(byte);
    }
    await store.save({ index: 1, term: 1, config }, one(1));
    // A save that crashed midway leaves an incomplete row behind.
    await sql`
      insert into ${sql.id(schema, 'snapshot')} (index, term, config) values (2, 1, '{"voters":[]}')
    `.execute(db);
    const newest = await store.save({ index: 3, term: 1, config }, one(3));
    const { rows } = await sql<{ index: number; complete: boolean }>`
      select index, complete from ${sql.id(schema, 'snapshot')}
    `.execute(db);
    expect(rows).toEqual([{ index: 3, complete: true }]);
    expect(await store.latest()).toEqual(newest);
    await dropSchema(schema);
  });

  it('lists snapshot rows newest first, complete or still being saved, and finds one by id', async () => {
    const schema = freshSchema();
    const store = await PostgresSnapshotStore.open({ db, schema, chunkBytes: 4 });
    const config = { voters: ['a', 'b'] };
    async function* bytes(n: number): AsyncIterable<Uint8Array> {
      yield new Uint8Array(n).fill(7);
    }
    const saved = await store.save({ index: 5, term: 2, config }, bytes(10));
    await sql`
      insert into ${sql.id(schema, 'snapshot')} (index, term, config) values (9, 3, '{"voters":["a"]}')
    `.execute(db);
    const listed = await store.list();
    expect(
      listed.map(({ index, complete, size, storedBytes }) => ({
        index,
        complete,
        size,
        storedBytes,
      })),
    ).toEqual([
      { index: 9, complete: false, size: undefined, storedBytes: 0 },
      { index: 5, complete: true, size: 10, storedBytes: 10 },
    ]);
    const [, complete] = listed;
    expect(complete).toMatchObject({ term: 2, config, sha256: saved.sha256 });
    expect(complete?.createdAt).toBeInstanceOf(Date);
    expect(await store.get(complete?.id ?? -1)).toEqual(complete);
    expect(await store.get(123_456)).toBeUndefined();
    await dropSchema(schema);
  });
});

describe('raftSchemaStatus', () => {
  it('tells a missing, current and newer schema apart without creating anything', async () => {
    const schema = freshSchema();
    expect(await raftSchemaStatus({ db, schema })).toBe('missing');
    const { rows } = await sql`select 1 from pg_namespace where nspname = ${schema}`.execute(db);
    expect(rows).toEqual([]);
    await migrateRaftSchema({ db, schema });
    expect(await raftSchemaStatus({ db, schema })).toBe('current');
    await sql`
      delete from ${sql.id(schema, 'tsraft_migration')} where name = '0002_state_machine'
    `.execute(db);
    expect(await raftSchemaStatus({ db, schema })).toBe('outdated');
    await sql`
      insert into ${sql.id(schema, 'tsraft_migration')} (name, timestamp) values ('9999_future', now())
    `.execute(db);
    expect(await raftSchemaStatus({ db, schema })).toBe('newer');
    await dropSchema(schema);
  });
});

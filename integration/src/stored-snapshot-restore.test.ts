import { type AppliedEntry, CorruptSnapshotError } from '@tsraft/core';
import {
  type CommandOf,
  createPostgresStateMachine,
  guardPoolErrors,
  PostgresSnapshotStore,
} from '@tsraft/pg-storage';
import { type PostgresServer, selectProvider } from '@tsraft/testing';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kvTableCommands } from './fixtures/kv-table.ts';

// A follower installs the snapshot it received, stored in its own database, inside Postgres
// (`@tsraft/pg-storage`, "A snapshot stored in the same database"), here on the provider's
// server (Postgres 15 with the testcontainers provider): every value as it was, rows and
// characters cut at the stored chunks' ends; a changed chunk refused, changing nothing.

// biome-ignore lint/suspicious/noExplicitAny: the stores take a Kysely of any database type.
type AnyKysely = Kysely<any>;

let server: PostgresServer;
let db: AnyKysely;

beforeAll(async () => {
  server = await (await selectProvider()).start();
  const pool = new pg.Pool({ connectionString: server.url, max: 4 });
  guardPoolErrors(pool); // connections ended by the server's shutdown in afterAll
  db = new Kysely({ dialect: new PostgresDialect({ pool }) });
});

afterAll(async () => {
  await db?.destroy();
  await server?.[Symbol.asyncDispose]();
});

function puts(first: number, count: number): AppliedEntry<CommandOf<typeof kvTableCommands>>[] {
  return Array.from({ length: count }, (_, i) => ({
    kind: 'command' as const,
    index: first + i,
    term: 3,
    timestamp: 1_700_000_000_000 + first + i,
    command: { name: 'put' as const, input: { key: `k${first + i}`, value: `v${first + i}` } },
    session: { clientId: `c${(first + i) % 2}`, seq: first + i },
  }));
}

/** The replicated tables' and session tables' rows and the applied position, as text. */
async function dump(schema: string): Promise<string> {
  const { rows } = await sql<{ t: string }>`
    select concat_ws(E'\n',
      (select string_agg(x::text, E'\n' order by x.key) from kv x),
      (select string_agg(x::text, E'\n' order by x.id) from typed x),
      (select string_agg(x::text, E'\n' order by x.client_id) from ${sql.id(schema, 'client_session')} x),
      (select string_agg(x::text, E'\n' order by x.client_id, x.seq) from ${sql.id(schema, 'client_result')} x),
      (select string_agg(x::text, E'\n') from ${sql.id(schema, 'applied_state')} x)) as t
  `.execute(db);
  return rows[0]?.t ?? '';
}

describe('restoring a snapshot stored in the same database, on a Postgres server', () => {
  /** A state machine and store in a fresh schema; a snapshot at 8/3, then changed tables. */
  async function stored(schema: string) {
    await sql`drop table if exists kv, typed`.execute(db);
    await sql`create table kv (key text primary key, value text not null)`.execute(db);
    await sql`
      create table typed (id int8 primary key, label text, j json, jb jsonb, b bytea, n numeric)
    `.execute(db);
    const machine = await createPostgresStateMachine({
      db,
      schema,
      commands: kvTableCommands,
      tables: ['kv', 'typed'],
    });
    const store = await PostgresSnapshotStore.open({ db, schema, chunkBytes: 700 });
    await machine.apply(puts(1, 8));
    await sql`
      insert into typed
      select g, repeat('ä€😀', g % 5) || repeat('y', case when g % 40 = 0 then 1800 else g % 70 end),
        case when g % 3 = 0 then cast('{"a": [1, 2.0], "s": "ü\\t"}' as json) end,
        case when g % 4 = 0 then jsonb_build_object('g', g, 'e', '😀') end,
        case when g % 5 <> 0 then decode(md5(g::text), 'hex') end,
        case when g % 2 = 0 then cast('98765432109876543210.' || g as numeric) end
      from generate_series(1, 200) g
    `.execute(db);
    const before = await dump(schema);
    const exported = await machine.exportSnapshot();
    const snapshot = await store.save(
      { ...exported.position, config: { voters: ['n1'] } },
      exported.chunks,
    );
    await machine.apply(puts(9, 3));
    await sql`delete from typed where id < 100`.execute(db);
    return { machine, store, snapshot, before, position: exported.position };
  }

  it('restores every value as it was, with rows and characters cut at the chunks ends', async () => {
    const schema = 'raft_stored_equal';
    const { machine, store, snapshot, before, position } = await stored(schema);
    const { rows } = await sql<{ cut: number; spanned: number }>`
      select count(*) filter (where get_byte(data, 0) between 128 and 191)::int4 as cut,
        count(*) filter (where position('\\x0a'::bytea in data) = 0)::int4 as spanned
      from ${sql.id(schema, 'snapshot_chunk')}
    `.execute(db);
    expect(rows[0]?.cut).toBeGreaterThan(0);
    expect(rows[0]?.spanned).toBeGreaterThan(0);
    expect(await dump(schema)).not.toBe(before);
    await machine.restoreSnapshot(position, store.read(snapshot));
    expect(await dump(schema)).toBe(before);
    expect(await machine.lastApplied()).toEqual({ index: 8, term: 3 });
  });

  it('refuses a snapshot whose stored chunk changed, changing nothing', async () => {
    const schema = 'raft_stored_damaged';
    const { machine, store, snapshot, position } = await stored(schema);
    await sql`
      update ${sql.id(schema, 'snapshot_chunk')}
      set data = overlay(data placing '\\x21'::bytea from 20 for 1) where seq = 4
    `.execute(db);
    const changed = await dump(schema);
    const restoring = machine.restoreSnapshot(position, store.read(snapshot));
    await expect(restoring).rejects.toThrow(CorruptSnapshotError);
    await expect(restoring).rejects.toThrow(/chunk 4 does not match its digest/);
    expect(await dump(schema)).toBe(changed);
    expect(await machine.lastApplied()).toEqual({ index: 11, term: 3 });
  });
});

import { PGlite } from '@electric-sql/pglite';
import { type AppliedEntry, CorruptSnapshotError, type StoredSnapshot } from '@tsraft/core';
import { streamOf } from '@tsraft/core/testing';
import { Kysely, PGliteDialect, PostgresDialect, sql, type Transaction } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import type { AnyKysely } from './any-kysely.ts';
import { type CommandOf, defineCommand } from './command-definition.ts';
import {
  startThrowawayPostgres,
  type ThrowawayPostgres,
} from './embedded-postgres.test-helpers.ts';
import { guardPoolErrors } from './pool-errors.ts';
import { PostgresSnapshotStore } from './postgres-snapshot-store.ts';
import { createPostgresStateMachine } from './postgres-state-machine.ts';
import { raftTables } from './raft-tables.ts';
import { headerLine } from './state-snapshot-format.ts';
import { withStoredSource } from './stored-snapshot-source.ts';

// A snapshot stored in the state machine's own database is restored inside Postgres, from its
// chunk rows (`stored-snapshot-restore.ts`): on PGlite and on a Postgres server.

const commands = {
  put: defineCommand({
    input: z.object({ id: z.number().int(), label: z.string() }),
    handler: async (trx: Transaction<Record<string, never>>, input) => {
      await sql`
        insert into items (id, label) values (${input.id}, ${input.label})
        on conflict (id) do update set label = excluded.label
      `.execute(trx);
      return { ok: true };
    },
  }),
};

function puts(first: number, count: number): AppliedEntry<CommandOf<typeof commands>>[] {
  return Array.from({ length: count }, (_, i) => ({
    kind: 'command' as const,
    index: first + i,
    term: 2,
    timestamp: 1_700_000_000_000 + first + i,
    command: { name: 'put' as const, input: { id: first + i, label: `put ${first + i}` } },
    session: { clientId: `c${(first + i) % 3}`, seq: first + i },
  }));
}

/** Bytes per stored chunk row: small, so that rows and characters are cut at chunk ends. */
const CHUNK_BYTES = 1000;

interface Backend {
  readonly name: string;
  open(): Promise<AnyKysely>;
  close(): Promise<void>;
}

let server: ThrowawayPostgres | undefined;
const opened: AnyKysely[] = [];

const backends: Backend[] = [
  {
    name: 'PGlite',
    open: async () => new Kysely({ dialect: new PGliteDialect({ pglite: new PGlite() }) }),
    close: async () => {},
  },
  {
    name: 'a Postgres server',
    open: async () => {
      server ??= await startThrowawayPostgres('stored-restore');
      const pool = new pg.Pool({ connectionString: server.url, max: 4 });
      guardPoolErrors(pool); // connections ended by the server's shutdown in afterAll
      return new Kysely({ dialect: new PostgresDialect({ pool }) });
    },
    close: async () => {
      await server?.stop();
    },
  },
];

afterAll(async () => {
  await Promise.all(opened.map((db) => db.destroy()));
  for (const backend of backends) await backend.close();
});

/** Every replicated and session row, and the applied position, as text. */
async function dump(db: AnyKysely): Promise<string> {
  const { rows } = await sql<{ t: string }>`
    select concat_ws(E'\n',
      (select string_agg(x::text, E'\n' order by x.id) from items x),
      (select string_agg(x::text, E'\n' order by x.client_id) from raft.client_session x),
      (select string_agg(x::text, E'\n' order by x.client_id, x.seq) from raft.client_result x),
      (select string_agg(x::text, E'\n') from raft.applied_state x)) as t
  `.execute(db);
  return rows[0]?.t ?? '';
}

describe.each(backends)('restoring a stored snapshot inside Postgres, on $name', (backend) => {
  let db: AnyKysely;

  beforeAll(async () => {
    db = await backend.open();
    opened.push(db);
  }, 120_000);

  /**
   * A fresh state machine and snapshot store whose latest snapshot (at 10/2) holds rows of
   * every kind, then changed tables: what the snapshot holds, as `dump` shows it.
   */
  async function stored() {
    await sql`drop schema if exists raft cascade`.execute(db);
    await sql`drop table if exists items`.execute(db);
    await sql`
      create table items (
        id int8 primary key, label text not null, doc json, docb jsonb, blob bytea, amount numeric
      )`.execute(db);
    const machine = await createPostgresStateMachine({ db, commands, tables: ['items'] });
    const store = await PostgresSnapshotStore.open({ db, chunkBytes: CHUNK_BYTES });
    await machine.apply(puts(1, 10));
    // Characters of 1 to 4 bytes, rows shorter and longer than a chunk, json kept as written
    // (but for raw newlines, which the format turns into spaces), bytes, numbers beyond a
    // double, nulls.
    await sql`
      insert into items
      select g, repeat('ü€😀a', g % 7) || repeat('x', case when g % 50 = 0 then 2500 else g % 90 end),
        case when g % 3 = 0 then cast('{"k": [1, 2.50],  "s": "é\\n€"}' as json) end,
        case when g % 4 = 0 then jsonb_build_object('n', g, 'u', '😀') end,
        case when g % 5 <> 0 then decode(md5(g::text), 'hex') end,
        case when g % 2 = 0 then cast('123456789012345678901234567890.' || g as numeric) end
      from generate_series(100, 400) g
    `.execute(db);
    const before = await dump(db);
    const exported = await machine.exportSnapshot();
    const snapshot = await store.save(
      { ...exported.position, config: { voters: ['n1'] } },
      exported.chunks,
    );
    await machine.apply(puts(11, 5));
    await sql`delete from items where id between 150 and 250`.execute(db);
    await sql`update items set label = 'changed', doc = null where id > 300`.execute(db);
    return { machine, store, snapshot, before, position: exported.position };
  }

  /** The chunk rows of the stored `snapshot`, as a `from` and `where` clause. */
  const chunks = (snapshot: StoredSnapshot) => sql`
    raft.snapshot_chunk where snapshot_id = (select id from raft.snapshot where sha256 = ${snapshot.sha256})`;

  it('restores the tables, sessions and position as they were, with rows and characters cut at chunk ends', async () => {
    const { machine, store, snapshot, before, position } = await stored();
    const { rows } = await sql<{ cut: number; spanned: number }>`
      select count(*) filter (where get_byte(data, 0) between 128 and 191)::int4 as cut,
        count(*) filter (where position('\\x0a'::bytea in data) = 0)::int4 as spanned
      from ${chunks(snapshot)}
    `.execute(db);
    expect(rows[0]?.cut).toBeGreaterThan(0); // a chunk starts inside a character
    expect(rows[0]?.spanned).toBeGreaterThan(0); // a chunk lies inside one row
    expect(await dump(db)).not.toBe(before);
    await machine.restoreSnapshot(position, store.read(snapshot));
    expect(await dump(db)).toBe(before);
    expect(await machine.lastApplied()).toEqual({ index: 10, term: 2 });
  });

  it('does not read the stream of a snapshot stored in its database', async () => {
    const { machine, snapshot, before, position } = await stored();
    // biome-ignore lint/correctness/useYield: a stream that fails when it is read
    const unread = (async function* (): AsyncGenerator<Uint8Array> {
      throw new Error('the stream was read');
    })();
    const source = { db, tables: raftTables('raft'), snapshot };
    await machine.restoreSnapshot(position, withStoredSource(unread, source));
    expect(await dump(db)).toBe(before);
  });

  it('restores from the stream when the chunks were stored without digests', async () => {
    const { machine, store, snapshot, before, position } = await stored();
    await sql`update raft.snapshot_chunk set sha256 = null where seq = 1`.execute(db);
    await machine.restoreSnapshot(position, store.read(snapshot));
    expect(await dump(db)).toBe(before);
  });

  it.each([
    [
      'changed bytes',
      (s: StoredSnapshot) => [
        sql`update raft.snapshot_chunk set data = overlay(data placing '\\x20'::bytea from 10 for 1)
          where seq = 5 and snapshot_id = (select id from raft.snapshot where sha256 = ${s.sha256})`,
      ],
      /chunk 5 does not match its digest/,
    ],
    [
      'chunks swapped',
      (s: StoredSnapshot) => [
        sql`
          update raft.snapshot_chunk set seq = -seq
          where seq in (3, 4) and snapshot_id = (select id from raft.snapshot where sha256 = ${s.sha256})`,
        sql`
          update raft.snapshot_chunk set seq = case seq when -3 then 4 else 3 end
          where seq in (-3, -4) and snapshot_id = (select id from raft.snapshot where sha256 = ${s.sha256})`,
      ],
      /chunk 3 does not match its digest/,
    ],
    [
      'a chunk missing',
      (s: StoredSnapshot) => [sql`delete from ${chunks(s)} and seq = 7`],
      /chunk 7 is missing/,
    ],
    [
      'a wrong digest',
      (s: StoredSnapshot) => [
        sql`update raft.snapshot_chunk set sha256 = sha256(data)
          where seq = 2 and snapshot_id = (select id from raft.snapshot where sha256 = ${s.sha256})`,
      ],
      /chunk 2 does not match its digest/,
    ],
  ])('refuses a stored snapshot with %s, changing nothing', async (_, damage, message) => {
    const { machine, store, snapshot, position } = await stored();
    for (const statement of damage(snapshot)) await statement.execute(db);
    const changed = await dump(db);
    const restoring = machine.restoreSnapshot(position, store.read(snapshot));
    await expect(restoring).rejects.toThrow(CorruptSnapshotError);
    await expect(restoring).rejects.toThrow(message);
    expect(await dump(db)).toBe(changed);
    expect(await machine.lastApplied()).toEqual({ index: 15, term: 2 });
  });

  const header = headerLine({
    position: { index: 10, term: 2 },
    now: 1_700_000_000_010,
    tables: ['$client_session', '$client_result', 'public.items'],
  });
  const other = headerLine({
    position: { index: 9, term: 2 },
    now: 1_700_000_000_010,
    tables: ['$client_session', '$client_result', 'public.items'],
  });
  it.each([
    [
      'its end line miscounts',
      `${header}\n#table 2\n{"id":1,"label":"a"}\n#end {"rows":2}\n`,
      /holds 1 rows, its end line says 2/,
    ],
    [
      'it has data after its end',
      `${header}\n#table 2\n{"id":1,"label":"a"}\n#end {"rows":1}\n#table 2\n`,
      /data after its end/,
    ],
    ['it has no end line', `${header}\n#table 2\n{"id":1,"label":"a"}\n`, /no end line/],
    [
      'it ends inside a line',
      `${header}\n#table 2\n{"id":1,"label":"a"}\n#end {"rows":1}`,
      /middle of a line/,
    ],
    [
      'its sections go back',
      `${header}\n#table 2\n#table 1\n#end {"rows":0}\n`,
      /unexpected section "#table 1"/,
    ],
    [
      'a row comes before a section',
      `${header}\n{"id":1,"label":"a"}\n#end {"rows":1}\n`,
      /a row before any section/,
    ],
    ['an unknown line', `${header}\n#table 2\n[1]\n#end {"rows":0}\n`, /unexpected line/],
    [
      'a row does not fit its table',
      `${header}\n#table 2\n{"id":"x","label":"a"}\n#end {"rows":1}\n`,
      /the rows of public.items cannot be restored/,
    ],
    [
      'a row misses a column',
      `${header}\n#table 2\n{"id":1}\n#end {"rows":1}\n`,
      /the rows of public.items cannot be restored/,
    ],
    [
      'a row is not JSON',
      `${header}\n#table 2\n{"id":1,\n#end {"rows":1}\n`,
      /the rows of public.items cannot be restored/,
    ],
    [
      'a json value holds \\u0000',
      `${header}\n#table 2\n{"id":1,"label":"a","doc":{"y":"\\u0000"}}\n#end {"rows":1}\n`,
      /^the rows of public\.items cannot be restored: .*\\u0000 \(the NUL character\)/,
    ],
    ['it is at another position', `${other}\n#end {"rows":0}\n`, /is at 9\/2, not at 10\/2/],
    ['it is not in the format', 'hello\n', /not a Postgres state machine snapshot/],
  ])(
    'refuses a stored snapshot whose digests match when %s, changing nothing',
    async (_, body, message) => {
      const { machine, store } = await stored();
      const changed = await dump(db);
      const snapshot = await store.save(
        { index: 10, term: 2, config: { voters: ['n1'] } },
        streamOf([new TextEncoder().encode(body)]),
      );
      const restoring = machine.restoreSnapshot({ index: 10, term: 2 }, store.read(snapshot));
      await expect(restoring).rejects.toThrow(CorruptSnapshotError);
      await expect(restoring).rejects.toThrow(message);
      expect(await dump(db)).toBe(changed);
    },
  );
});

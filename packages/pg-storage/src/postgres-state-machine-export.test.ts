import type { AppliedEntry } from '@tsraft/core';
import { collectChunks, streamOf } from '@tsraft/core/testing';
import { Kysely, PostgresDialect, sql, type Transaction } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import type { CommandOf } from './command-definition.ts';
import { defineCommand } from './command-definition.ts';
import {
  startThrowawayPostgres,
  type ThrowawayPostgres,
} from './embedded-postgres.test-helpers.ts';
import { guardPoolErrors } from './pool-errors.ts';
import { createPostgresStateMachine } from './postgres-state-machine.ts';

// A real Postgres server (embedded-postgres): exports there read plain tables by heap block
// ranges, each page one aggregated text value, on a connection of a pool held while streaming.

interface Db {
  items: { id: number; label: string; doc: unknown; blob: Uint8Array | null };
}

const commands = {
  put: defineCommand({
    input: z.object({ id: z.number().int(), label: z.string() }),
    handler: async (trx: Transaction<Db>, input) => {
      await sql`
        insert into items (id, label) values (${input.id}, ${input.label})
        on conflict (id) do update set label = excluded.label
      `.execute(trx);
      return { ok: true };
    },
  }),
};

let postgres: ThrowawayPostgres | undefined;
let db: Kysely<Db>;
let url: string;

beforeAll(async () => {
  postgres = await startThrowawayPostgres('export');
  url = postgres.url;
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  guardPoolErrors(pool); // connections ended by the server's shutdown in afterAll
  db = new Kysely<Db>({ dialect: new PostgresDialect({ pool }) });
}, 120_000);

afterAll(async () => {
  await db?.destroy();
  await postgres?.stop();
});

function puts(first: number, inputs: { id: number; label: string }[]) {
  return inputs.map(
    (input, i): AppliedEntry<CommandOf<typeof commands>> => ({
      kind: 'command',
      index: first + i,
      term: 1,
      timestamp: 1_700_000_000_000 + first + i,
      command: { name: 'put', input },
      session: { clientId: `c${(first + i) % 3}`, seq: first + i },
    }),
  );
}

const dump = async () =>
  (
    await sql<{ t: string }>`
      select string_agg(to_jsonb(x)::text, E'\n' order by x.id) as t from items x
    `.execute(db)
  ).rows[0]?.t;

describe('the Postgres state machine on a Postgres server, snapshots', () => {
  it('exports plain tables by block ranges at one consistent position, and restores them', async () => {
    await sql`
      create table items (id int8 primary key, label text not null, doc json, blob bytea)
    `.execute(db);
    const machine = await createPostgresStateMachine({ db, commands, tables: ['items'] });
    await machine.apply(puts(1, [{ id: 1, label: 'first' }]));
    // Many blocks of uneven width (the page size adapts), holes left by deleted rows, a json
    // value with raw newlines (whitespace that must not split its line), int8 beyond 2^53.
    await sql`
      insert into items
      select g, repeat('x', case when g % 1000 < 10 then 2000 else 20 end),
        case when g % 7 = 0 then '{"a":\n [1,\n2], "b": "line\\nbreak"}'::json end,
        decode(md5(g::text), 'hex')
      from generate_series(2, 30000) g
    `.execute(db);
    await sql`delete from items where id between 5000 and 9000`.execute(db);
    await sql`update items set id = 9007199254740993 where id = 2`.execute(db);
    const before = await dump();
    const exported = await machine.exportSnapshot();
    expect(exported.position).toEqual({ index: 1, term: 1 });
    const iterator = exported.chunks[Symbol.asyncIterator]();
    const parts = [(await iterator.next()).value as Uint8Array];
    // Changes committed while the export streams do not show in it.
    await machine.apply(
      puts(2, [
        { id: 1, label: 'changed' },
        { id: 40_000, label: 'new' },
      ]),
    );
    await sql`delete from items where id between 20000 and 21000`.execute(db);
    for (let next = await iterator.next(); !next.done; next = await iterator.next()) {
      parts.push(next.value.slice());
    }
    const text = new TextDecoder().decode(Buffer.concat(parts));
    const lines = text.split('\n');
    expect(lines.at(-1)).toBe('');
    // The items' rows, one client session and its result.
    expect(lines.at(-2)).toBe('#end {"rows":26001}');
    expect(lines.filter((line) => line.startsWith('{')).length).toBe(26_001);
    await machine.restoreSnapshot(exported.position, streamOf(parts));
    expect(await dump()).toBe(before);
    expect(await machine.lastApplied()).toEqual({ index: 1, term: 1 });
  }, 60_000);

  it('ends the export transaction when the stream is abandoned', async () => {
    const machine = await createPostgresStateMachine({ db, commands, tables: ['items'] });
    const applied = await machine.lastApplied();
    for (let round = 0; round < 3; round++) {
      const exported = await machine.exportSnapshot();
      for await (const _ of exported.chunks) break;
    }
    // Two pooled connections: a leaked export would hold one, a second would block this.
    await machine.apply(puts(applied.index + 1, [{ id: 7, label: 'after' }]));
    expect(await collectChunks((await machine.exportSnapshot()).chunks)).not.toHaveLength(0);
  }, 60_000);

  it('reads pages over several connections in one view with exportConnections, and ends them all', async () => {
    // Three export connections, one more for applying while the export streams.
    const pool = new pg.Pool({ connectionString: url, max: 4 });
    const wide = new Kysely<Db>({ dialect: new PostgresDialect({ pool }) });
    try {
      const machine = await createPostgresStateMachine({
        db: wide,
        commands,
        tables: ['items'],
        exportConnections: 3,
      });
      // Many pages (the first ones are small), some with json values holding raw newlines.
      await sql`
        insert into items
        select g, repeat('y', 200),
          case when g % 11 = 0 then '{"a":\n [1,\n2]}'::json end, decode(md5(g::text), 'hex')
        from generate_series(100000, 140000) g
      `.execute(wide);
      const applied = await machine.lastApplied();
      const before = await dump();
      const count = Number(
        (await sql<{ n: unknown }>`select count(*) as n from items`.execute(wide)).rows[0]?.n,
      );
      for (let round = 0; round < 2; round++) {
        const exported = await machine.exportSnapshot();
        for await (const _ of exported.chunks) break;
      }
      const exported = await machine.exportSnapshot();
      expect(exported.position).toEqual(applied);
      const iterator = exported.chunks[Symbol.asyncIterator]();
      const parts = [(await iterator.next()).value as Uint8Array];
      // Committed while the export streams: seen by none of its connections.
      await machine.apply(puts(applied.index + 1, [{ id: 100_000, label: 'changed' }]));
      await sql`delete from items where id between 120000 and 130000`.execute(wide);
      for (let next = await iterator.next(); !next.done; next = await iterator.next()) {
        parts.push(next.value.slice());
      }
      const lines = new TextDecoder().decode(Buffer.concat(parts)).split('\n');
      const items = lines.slice(lines.indexOf('#table 2') + 1, -2);
      expect(items.length).toBe(count);
      expect(items.every((line) => line.startsWith('{') && line.endsWith('}'))).toBe(true);
      await machine.restoreSnapshot(exported.position, streamOf(parts));
      expect(await dump()).toBe(before);
      expect(await machine.lastApplied()).toEqual(applied);
      // The abandoned exports' connections were all given back: a fourth export still starts.
      await machine.apply(puts(applied.index + 1, [{ id: 7, label: 'again' }]));
      expect(await collectChunks((await machine.exportSnapshot()).chunks)).not.toHaveLength(0);
    } finally {
      await wide.destroy();
    }
  }, 60_000);

  it('restores json values as they were stored: key order, duplicate keys, spacing, escapes', async () => {
    await sql`create table notes (id int4 primary key, doc json)`.execute(db);
    const machine = await createPostgresStateMachine({
      db,
      schema: 'json_notes',
      commands,
      tables: ['notes'],
      existingRows: 'accept',
    });
    // A json column holds its text as written; jsonb would sort and dedupe the keys, respace.
    const stored = [
      '{"b": 1,  "a":[1, 2],"a":3}',
      '[ {"z":null} ,"x\\u0041", 1.50 ]',
      '12.50',
      '{"nested": {"k": "\\u00e9"}}',
    ];
    // What changes: the whitespace around a value, a top-level string's escapes.
    const changed = [
      [' [1] ', '[1]'],
      ['"str\\u0041"', '"strA"'],
    ];
    const values = [...stored, ...changed.map(([before]) => before)];
    for (const [i, doc] of values.entries()) {
      await sql`insert into notes values (${i}, cast(${doc} as json))`.execute(db);
    }
    const docs = async () =>
      (
        await sql<{ doc: string }>`select doc::text as doc from notes order by id`.execute(db)
      ).rows.map((row) => row.doc);
    expect(await docs()).toEqual(values);
    const exported = await machine.exportSnapshot();
    const parts = await collectChunks(exported.chunks);
    await sql`update notes set doc = '{}'`.execute(db);
    await machine.restoreSnapshot(exported.position, streamOf(parts));
    expect(await docs()).toEqual([...stored, ...changed.map(([, after]) => after)]);
  }, 60_000);

  it('rejects an exportConnections that is not a positive integer', async () => {
    await expect(
      createPostgresStateMachine({ db, commands, tables: ['items'], exportConnections: 0 }),
    ).rejects.toThrow(RangeError);
  });
});

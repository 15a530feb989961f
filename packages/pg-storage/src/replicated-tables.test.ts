import { PGlite } from '@electric-sql/pglite';
import { StorageError } from '@tsraft/core';
import { collectChunks, streamOf } from '@tsraft/core/testing';
import { Kysely, PGliteDialect, sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPostgresStateMachine } from './postgres-state-machine.ts';

// biome-ignore lint/suspicious/noExplicitAny: tables of the tests' own making
let db: Kysely<any>;

beforeAll(() => {
  db = new Kysely({ dialect: new PGliteDialect({ pglite: new PGlite() }) });
});

afterAll(async () => {
  await db?.destroy();
});

describe('the replicated tables a state machine opens with', () => {
  it('refuses generated columns, naming the table and columns, before anything is replicated', async () => {
    await sql`create schema app`.execute(db);
    await sql`
      create table app.orders (
        id int4 primary key, qty int4, price int4,
        total int4 generated always as (qty * price) stored,
        doubled int4 generated always as (qty * 2) stored
      )
    `.execute(db);
    await sql`create table plain (id int4 primary key)`.execute(db);
    const opening = createPostgresStateMachine({
      db,
      schema: 'gen_refused',
      commands: {},
      tables: ['plain', 'app.orders'],
    });
    await expect(opening).rejects.toThrow(StorageError);
    await expect(opening).rejects.toThrow(
      /cannot have generated columns: app\.orders: total, doubled\. .*Make them plain columns/,
    );
  });

  it('accepts identity columns, which a restore writes with their values', async () => {
    await sql`
      create table counted (id int4 generated always as identity primary key, label text)
    `.execute(db);
    await sql`insert into counted (label) values ('a'), ('b')`.execute(db);
    const machine = await createPostgresStateMachine({
      db,
      schema: 'identity_ok',
      commands: {},
      tables: ['counted'],
      existingRows: 'accept',
    });
    const exported = await machine.exportSnapshot();
    const parts = await collectChunks(exported.chunks);
    await sql`delete from counted`.execute(db);
    await machine.restoreSnapshot(exported.position, streamOf(parts));
    const { rows } = await sql`select id, label from counted order by id`.execute(db);
    expect(rows).toEqual([
      { id: 1, label: 'a' },
      { id: 2, label: 'b' },
    ]);
  });
});

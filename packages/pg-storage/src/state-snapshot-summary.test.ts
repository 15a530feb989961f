import { PGlite } from '@electric-sql/pglite';
import type { AppliedEntry } from '@tsraft/core';
import { Kysely, PGliteDialect, sql, type Transaction } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { type CommandOf, defineCommand } from './command-definition.ts';
import { createPostgresStateMachine } from './postgres-state-machine.ts';
import { CorruptSnapshotError } from './state-snapshot-format.ts';
import {
  isStateSnapshot,
  readStateSnapshotHeader,
  summarizeStateSnapshot,
} from './state-snapshot-summary.ts';

interface Db {
  items: { id: number; label: string };
}

const commands = {
  put: defineCommand({
    input: z.object({ id: z.number().int(), label: z.string() }),
    handler: async (trx: Transaction<Db>, input) => {
      await trx.insertInto('items').values(input).execute();
      return { ok: true };
    },
  }),
};

let db: Kysely<Db>;
let snapshot: Uint8Array;

async function* of(...parts: Uint8Array[]): AsyncGenerator<Uint8Array> {
  yield* parts;
}

function text(value: string): Uint8Array {
  return new TextEncoder().encode(value);
}

beforeAll(async () => {
  db = new Kysely<Db>({ dialect: new PGliteDialect({ pglite: new PGlite() }) });
  await sql`create table items (id int8 primary key, label text not null)`.execute(db);
  const machine = await createPostgresStateMachine({ db, commands, tables: ['items'] });
  const entries = [1, 2, 3].map(
    (id): AppliedEntry<CommandOf<typeof commands>> => ({
      kind: 'command',
      index: id,
      term: 1,
      timestamp: 1_700_000_000_000 + id,
      command: { name: 'put', input: { id, label: `item ${id}` } },
      session: { clientId: 'c1', seq: id },
    }),
  );
  await machine.apply(entries);
  const exported = await machine.exportSnapshot();
  const parts: Uint8Array[] = [];
  for await (const chunk of exported.chunks) parts.push(chunk.slice());
  snapshot = Buffer.concat(parts);
}, 60_000);

afterAll(async () => {
  await db?.destroy();
});

describe('summaries of Postgres state machine snapshots, without a database', () => {
  it('counts the rows of each table and the sessions, at the snapshot position', async () => {
    expect(isStateSnapshot(snapshot)).toBe(true);
    const summary = await summarizeStateSnapshot(of(snapshot));
    expect(summary.header.position).toEqual({ index: 3, term: 1 });
    expect(summary.rows).toEqual([
      { table: '$client_session', rows: 1 },
      { table: '$client_result', rows: 3 },
      { table: 'public.items', rows: 3 },
    ]);
    expect(await readStateSnapshotHeader(of(snapshot))).toEqual(summary.header);
  });

  it('refuses a truncated snapshot, a wrong row count and a foreign format', async () => {
    await expect(
      summarizeStateSnapshot(of(snapshot.subarray(0, snapshot.byteLength - 12))),
    ).rejects.toBeInstanceOf(CorruptSnapshotError);
    const tampered = Buffer.from(snapshot)
      .toString()
      .replace(/#end \{"rows":\d+\}/, '#end {"rows":99}');
    await expect(summarizeStateSnapshot(of(text(tampered)))).rejects.toThrow(/end line says 99/);
    const extra = `${Buffer.from(snapshot).toString()}{"id":9}\n`;
    await expect(summarizeStateSnapshot(of(text(extra)))).rejects.toThrow(/data after its end/);
    expect(isStateSnapshot(text('{"kv":{}}'))).toBe(false);
    await expect(summarizeStateSnapshot(of(text('{"kv":{}}\n')))).rejects.toThrow(
      /not a Postgres state machine snapshot/,
    );
  });
});

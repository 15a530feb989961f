/**
 * The application every nemesis node runs: a string key/value store (the operations of the
 * core's `kvModel`: put, append, compare-and-set, get) whose replicated tables live in the node's
 * own Postgres, and a table that records every write command applied, by the write's identity.
 *
 * `applied_write` is keyed by the log index that applied the write, not by the write's id: a
 * command applied twice (a duplicate the client sessions failed to catch) shows up as two rows
 * with one `write_id`, instead of being refused by a key.
 */
import type { CommandDefinition } from '@tsraft/pg-storage';
import { defineCommand } from '@tsraft/pg-storage';
import { type Kysely, sql, type Transaction } from 'kysely';
import { z } from 'zod';

/** The replicated tables. */
export interface NemesisDatabase {
  kv: { key: string; value: string };
  applied_write: {
    /** int8: a string from `pg`, a number from PGlite. */
    log_index: string | number;
    write_id: string;
    round: number;
    key: string;
    kind: string;
  };
}

/** The tables snapshots carry. */
export const NEMESIS_TABLES: readonly string[] = ['kv', 'applied_write'];

/** Creates the tables (the application's own migration; runs on every node at every start). */
export async function createNemesisTables(db: Kysely<NemesisDatabase>): Promise<void> {
  await sql`create table if not exists kv (key text primary key, value text not null)`.execute(db);
  await sql`
    create table if not exists applied_write (
      log_index int8 primary key,
      write_id text not null,
      round int4 not null,
      key text not null,
      kind text not null
    )`.execute(db);
  await sql`create index if not exists applied_write_by_round on applied_write (round, write_id)`.execute(
    db,
  );
}

type Trx = Transaction<NemesisDatabase>;
type Input<Shape extends z.core.$ZodLooseShape> = z.ZodObject<Shape, z.core.$strip>;

const key = z.string().min(1).max(128);
const writeId = z.string().min(1).max(128);
const round = z.number().int().nonnegative();

/** What every write carries: its key and its identity (the round it belongs to, a unique id). */
type WriteShape = { key: z.ZodString; writeId: z.ZodString; round: z.ZodNumber };

/** The commands, typed out because exported values need written types here. */
export type NemesisCommands = {
  /** Sets `key` to `value`. */
  readonly put: CommandDefinition<
    NemesisDatabase,
    Input<WriteShape & { value: z.ZodString }>,
    { index: number }
  >;
  /** Appends `value` to the value of `key` (an absent key is the empty string). */
  readonly append: CommandDefinition<
    NemesisDatabase,
    Input<WriteShape & { value: z.ZodString }>,
    { index: number }
  >;
  /** Sets `key` to `value` if and only if it holds `expected` (absent: the empty string). */
  readonly cas: CommandDefinition<
    NemesisDatabase,
    Input<WriteShape & { expected: z.ZodString; value: z.ZodString }>,
    { index: number; swapped: boolean }
  >;
};

async function recordWrite(
  trx: Trx,
  input: { key: string; writeId: string; round: number },
  kind: string,
  index: number,
): Promise<void> {
  await trx
    .insertInto('applied_write')
    .values({ log_index: index, write_id: input.writeId, round: input.round, key: input.key, kind })
    .execute();
}

async function setValue(trx: Trx, key: string, value: string): Promise<void> {
  await trx
    .insertInto('kv')
    .values({ key, value })
    .onConflict((oc) => oc.column('key').doUpdateSet({ value }))
    .execute();
}

/** The commands' definitions. */
export const nemesisCommands: NemesisCommands = {
  put: defineCommand({
    input: z.object({ key, writeId, round, value: z.string() }),
    handler: async (trx: Trx, input, ctx) => {
      await setValue(trx, input.key, input.value);
      await recordWrite(trx, input, 'put', ctx.index);
      return { index: ctx.index };
    },
  }),
  append: defineCommand({
    input: z.object({ key, writeId, round, value: z.string() }),
    handler: async (trx: Trx, input, ctx) => {
      await trx
        .insertInto('kv')
        .values({ key: input.key, value: input.value })
        .onConflict((oc) =>
          oc.column('key').doUpdateSet({ value: sql<string>`kv.value || excluded.value` }),
        )
        .execute();
      await recordWrite(trx, input, 'append', ctx.index);
      return { index: ctx.index };
    },
  }),
  cas: defineCommand({
    input: z.object({ key, writeId, round, expected: z.string(), value: z.string() }),
    handler: async (trx: Trx, input, ctx) => {
      const row = await trx
        .selectFrom('kv')
        .select('value')
        .where('key', '=', input.key)
        .executeTakeFirst();
      const swapped = (row?.value ?? '') === input.expected;
      if (swapped) await setValue(trx, input.key, input.value);
      await recordWrite(trx, input, 'cas', ctx.index);
      return { index: ctx.index, swapped };
    },
  }),
};

/** The value of `key` on this node now ('' when absent, as `kvModel` reads it). */
export async function readValue(db: Kysely<NemesisDatabase>, key: string): Promise<string> {
  const row = await db.selectFrom('kv').select('value').where('key', '=', key).executeTakeFirst();
  return row?.value ?? '';
}

import { defineCommand, domainError } from '@tsraft/pg-storage';
import { type Kysely, sql, type Transaction } from 'kysely';
import { z } from 'zod';

/** Your app's tables, as Kysely sees them. */
export interface Database {
  accounts: { id: string; balance: number };
}

/** Creates the tables (your migrations would do this). */
export async function createTables(db: Kysely<Database>): Promise<void> {
  await sql`create table if not exists accounts (
    id text primary key,
    balance integer not null check (balance >= 0)
  )`.execute(db);
}

/**
 * The writes, as commands. A handler runs on every node, in log order, inside the node's own
 * transaction: it must be deterministic (no clock, no randomness, no reads outside `trx`, no
 * calls to other services), so that every node computes the same tables and the same result.
 */
export const commands = {
  open: defineCommand({
    input: z.object({ id: z.string().min(1), initial: z.number().int().min(0) }),
    handler: async (trx: Transaction<Database>, input) => {
      await trx.insertInto('accounts').values({ id: input.id, balance: input.initial }).execute();
      return { id: input.id, balance: input.initial };
    },
  }),
  transfer: defineCommand({
    input: z.object({ from: z.string(), to: z.string(), amount: z.number().int().positive() }),
    handler: async (trx: Transaction<Database>, input) => {
      const from = await trx
        .updateTable('accounts')
        .set((eb) => ({ balance: eb('balance', '-', input.amount) }))
        .where('id', '=', input.from)
        .where('balance', '>=', input.amount)
        .returning('balance')
        .executeTakeFirst();
      // A refusal is a result, the same on every node: nothing of this command is kept.
      if (from === undefined) throw domainError('insufficient_funds', 'not enough money');
      const to = await trx
        .updateTable('accounts')
        .set((eb) => ({ balance: eb('balance', '+', input.amount) }))
        .where('id', '=', input.to)
        .returning('balance')
        .executeTakeFirstOrThrow();
      return { from: from.balance, to: to.balance };
    },
  }),
};
export type Commands = typeof commands;

/** The replicated tables: what snapshots carry and what a new node receives. */
export const TABLES = ['accounts'];

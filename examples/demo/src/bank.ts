/**
 * The demo's application: a tiny bank whose one table, `accounts`, every node keeps in its own
 * Postgres (PGlite). Its writes are typed commands (`defineCommand`: a zod schema for the input and
 * a handler that changes the tables in the transaction it is given), replicated by Raft and
 * applied by every node in the same order.
 */
import { type CommandDefinition, defineCommand, domainError } from '@tsraft/pg-storage';
import { type Kysely, sql, type Transaction } from 'kysely';
import { z } from 'zod';

/** The replicated tables. */
export interface BankDatabase {
  accounts: { id: string; balance: string | number }; // int8
}

/** Creates the bank's tables (the application's own migration; runs on every node). */
export async function createBankTables(db: Kysely<BankDatabase>): Promise<void> {
  await sql`create table if not exists accounts (id text primary key, balance int8 not null)`.execute(
    db,
  );
}

/** The tables snapshots carry, referenced tables first. */
export const BANK_TABLES: readonly string[] = ['accounts'];

type Trx = Transaction<BankDatabase>;
type Input<Shape extends z.core.$ZodLooseShape> = z.ZodObject<Shape, z.core.$strip>;
const accountId = z.string().min(1).max(64);

/** The bank's commands, typed out because exported values need written types here. */
export type BankCommands = {
  readonly open: CommandDefinition<
    BankDatabase,
    Input<{ id: z.ZodString; balance: z.ZodNumber }>,
    { id: string; balance: number }
  >;
  readonly transfer: CommandDefinition<
    BankDatabase,
    Input<{ from: z.ZodString; to: z.ZodString; amount: z.ZodNumber }>,
    { from: number; to: number }
  >;
};

/** Opens an account; pays an amount from one account to another, never below zero. */
export const bankCommands: BankCommands = {
  open: defineCommand({
    input: z.object({ id: accountId, balance: z.number().int().nonnegative() }),
    handler: async (trx: Trx, input) => {
      await trx.insertInto('accounts').values(input).execute(); // a duplicate id is refused
      return { id: input.id, balance: input.balance };
    },
  }),
  transfer: defineCommand({
    input: z.object({ from: accountId, to: accountId, amount: z.number().int().positive() }),
    handler: async (trx: Trx, input) => {
      const from = await trx
        .updateTable('accounts')
        .set((eb) => ({ balance: eb('balance', '-', input.amount) }))
        .where('id', '=', input.from)
        .returning('balance')
        .executeTakeFirst();
      if (from === undefined) throw domainError('no_account', `no account "${input.from}"`);
      if (Number(from.balance) < 0) {
        throw domainError('insufficient_funds', `${input.from} cannot pay ${input.amount}`);
      }
      const to = await trx
        .updateTable('accounts')
        .set((eb) => ({ balance: eb('balance', '+', input.amount) }))
        .where('id', '=', input.to)
        .returning('balance')
        .executeTakeFirst();
      if (to === undefined) throw domainError('no_account', `no account "${input.to}"`);
      return { from: Number(from.balance), to: Number(to.balance) };
    },
  }),
};

/** Every account's balance on this node, by id. */
export async function balances(db: Kysely<BankDatabase>): Promise<Record<string, number>> {
  const rows = await db.selectFrom('accounts').selectAll().orderBy('id').execute();
  return Object.fromEntries(rows.map((row) => [row.id, Number(row.balance)]));
}

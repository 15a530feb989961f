import { type Kysely, sql, type Transaction } from 'kysely';
import { z } from 'zod';
import type { AnyKysely } from './any-kysely.ts';
import { type CommandDefinition, defineCommand } from './command-definition.ts';
import { domainError } from './command-rejection.ts';

/** The replicated tables of the test application: a small bank. */
export interface BankDatabase {
  accounts: {
    id: string;
    /** int8: a string from `pg`, a number from PGlite. */
    balance: string | number;
    note: string | null;
    avatar: Uint8Array | null;
    opened_at: Date;
  };
  transfers: {
    id: string;
    from_account: string;
    to_account: string;
    amount: string | number;
    token: number;
  };
}

type Trx = Transaction<BankDatabase>;

/** Creates the bank's tables (the application's own migration). */
export async function createBankTables(db: AnyKysely): Promise<void> {
  await sql`
    create table if not exists accounts (
      id text primary key,
      balance int8 not null,
      note text,
      avatar bytea,
      opened_at timestamptz not null
    )`.execute(db);
  await sql`
    create table if not exists transfers (
      id text primary key,
      from_account text not null references accounts (id),
      to_account text not null references accounts (id),
      amount int8 not null,
      token float8 not null
    )`.execute(db);
}

/** The bank's tables, as the state machine replicates them (referenced tables first). */
export const BANK_TABLES: readonly string[] = ['accounts', 'transfers'];

type Input<Shape extends z.core.$ZodLooseShape> = z.ZodObject<Shape, z.core.$strip>;

/**
 * The bank's commands, typed explicitly: under `isolatedDeclarations` an exported value needs a
 * written type (an application that does not export its command map can let TypeScript infer it).
 */
export type BankCommands = {
  readonly open: CommandDefinition<
    BankDatabase,
    Input<{
      id: z.ZodString;
      initial: z.ZodDefault<z.ZodNumber>;
      note: z.ZodOptional<z.ZodString>;
      avatarHex: z.ZodOptional<z.ZodString>;
    }>,
    { id: string; openedAt: number }
  >;
  readonly deposit: CommandDefinition<
    BankDatabase,
    Input<{ id: z.ZodString; amount: z.ZodNumber }>,
    { balance: number }
  >;
  readonly transfer: CommandDefinition<
    BankDatabase,
    Input<{ from: z.ZodString; to: z.ZodString; amount: z.ZodNumber }>,
    { from: number; to: number }
  >;
  readonly explode: CommandDefinition<BankDatabase, Input<{ id: z.ZodString }>, never>;
  readonly stamp: CommandDefinition<
    BankDatabase,
    // biome-ignore lint/complexity/noBannedTypes: the shape of z.object({}) is {}.
    Input<{}>,
    { index: number; term: number; timestamp: number; iso: string; random: number[] }
  >;
};

/** The bank's commands. */
export const bankCommands: BankCommands = {
  open: defineCommand({
    input: z.object({
      id: z.string().min(1),
      initial: z.number().int().nonnegative().default(0),
      note: z.string().optional(),
      avatarHex: z.string().optional(),
    }),
    handler: async (trx: Trx, input, ctx) => {
      await trx
        .insertInto('accounts')
        .values({
          id: input.id,
          balance: input.initial,
          note: input.note ?? null,
          avatar: input.avatarHex === undefined ? null : Buffer.from(input.avatarHex, 'hex'),
          opened_at: ctx.now(),
        })
        .execute();
      return { id: input.id, openedAt: ctx.timestamp };
    },
  }),
  deposit: defineCommand({
    input: z.object({ id: z.string(), amount: z.number().int().positive() }),
    handler: async (trx: Trx, input) => {
      const row = await trx
        .updateTable('accounts')
        .set((eb) => ({ balance: eb('balance', '+', input.amount) }))
        .where('id', '=', input.id)
        .returning('balance')
        .executeTakeFirst();
      if (row === undefined) throw domainError('no_account', `no account ${input.id}`);
      return { balance: Number(row.balance) };
    },
  }),
  transfer: defineCommand({
    input: z.object({
      from: z.string(),
      to: z.string(),
      amount: z.number().int().positive(),
    }),
    handler: async (trx: Trx, input, ctx) => {
      // Debits first, then checks: a rejected transfer must be undone by the state machine.
      const debited = await trx
        .updateTable('accounts')
        .set((eb) => ({ balance: eb('balance', '-', input.amount) }))
        .where('id', '=', input.from)
        .returning('balance')
        .executeTakeFirst();
      if (debited === undefined) throw domainError('no_account', `no account ${input.from}`);
      if (Number(debited.balance) < 0) {
        throw domainError('insufficient_funds', `${input.from} cannot pay ${input.amount}`);
      }
      const credited = await trx
        .updateTable('accounts')
        .set((eb) => ({ balance: eb('balance', '+', input.amount) }))
        .where('id', '=', input.to)
        .returning('balance')
        .executeTakeFirst();
      if (credited === undefined) throw domainError('no_account', `no account ${input.to}`);
      await trx
        .insertInto('transfers')
        .values({
          id: `t${ctx.index}`,
          from_account: input.from,
          to_account: input.to,
          amount: input.amount,
          token: ctx.random.next(),
        })
        .execute();
      return { from: Number(debited.balance), to: Number(credited.balance) };
    },
  }),
  /** Changes the table, then fails with a bug (not a domain error): fatal. */
  explode: defineCommand({
    input: z.object({ id: z.string() }),
    handler: async (trx: Trx, input): Promise<never> => {
      await trx
        .updateTable('accounts')
        .set({ note: 'exploded' })
        .where('id', '=', input.id)
        .execute();
      throw new TypeError('a bug in the handler');
    },
  }),
  /** What a handler may know of time and randomness, as the result. */
  stamp: defineCommand({
    input: z.object({}),
    handler: async (_trx: Trx, _input, ctx) => ({
      index: ctx.index,
      term: ctx.term,
      timestamp: ctx.timestamp,
      iso: ctx.now().toISOString(),
      random: [ctx.random.next(), ctx.random.next()],
    }),
  }),
};

/** Every account's balance, by id. */
export async function balances(db: Kysely<BankDatabase>): Promise<Record<string, number>> {
  const rows = await db.selectFrom('accounts').select(['id', 'balance']).orderBy('id').execute();
  return Object.fromEntries(rows.map((row) => [row.id, Number(row.balance)]));
}

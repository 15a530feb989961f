import { randomUUID } from 'node:crypto';
import { PGlite } from '@electric-sql/pglite';
import type { AppliedEntry, ClientSession, RaftNode, StorageError } from '@tsraft/core';
import { collectChunks, streamOf } from '@tsraft/core/testing';
import { Kysely, PGliteDialect, sql } from 'kysely';
import { afterAll, beforeAll, beforeEach, describe, expect, expectTypeOf, it } from 'vitest';
import {
  BANK_TABLES,
  type BankDatabase,
  balances,
  bankCommands,
  createBankTables,
} from './bank.test-helpers.ts';
import type { CommandOf, ResultOf } from './command-definition.ts';
import { CommandValidationError } from './command-validation-error.ts';
import {
  createPostgresStateMachine,
  type PostgresStateMachine,
  type PostgresStateMachineOptions,
} from './postgres-state-machine.ts';
import { CorruptSnapshotError } from './state-snapshot-format.ts';

type Bank = typeof bankCommands;
type BankCommand = CommandOf<Bank>;
type Entry = AppliedEntry<BankCommand>;

// One in-memory PGlite for the file; each test gets a fresh Raft schema and empty bank tables.
let pglite: PGlite;
let db: Kysely<BankDatabase>;
let schema: string;
const T0 = 1_700_000_000_000;

beforeAll(async () => {
  pglite = new PGlite();
  db = new Kysely<BankDatabase>({ dialect: new PGliteDialect({ pglite }) });
  await createBankTables(db);
});

afterAll(async () => {
  await db?.destroy();
});

beforeEach(async () => {
  schema = `sm_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
  await sql`truncate transfers, accounts`.execute(db);
});

function open(
  options: Partial<PostgresStateMachineOptions<Bank>> = {},
): Promise<PostgresStateMachine<Bank>> {
  return createPostgresStateMachine({
    db,
    schema,
    commands: bankCommands,
    tables: BANK_TABLES,
    ...options,
  });
}

/** Entries numbered from `first`, term 1, a second apart from T0 unless `timestamp` is given. */
function entries(
  first: number,
  commands: readonly (
    | BankCommand
    | { command: BankCommand; session?: ClientSession; timestamp?: number }
  )[],
): Entry[] {
  return commands.map((item, i) => {
    const spec = 'command' in item ? item : { command: item };
    return {
      kind: 'command',
      index: first + i,
      term: 1,
      timestamp: spec.timestamp ?? T0 + (first + i) * 1000,
      command: spec.command,
      ...(spec.session === undefined ? {} : { session: spec.session }),
    };
  });
}

describe('the Postgres state machine, typed commands', () => {
  it('types commands and results by name, without casts', () => {
    expectTypeOf<BankCommand>().toEqualTypeOf<
      | {
          readonly name: 'open';
          readonly input: {
            id: string;
            initial?: number | undefined;
            note?: string | undefined;
            avatarHex?: string | undefined;
          };
        }
      | { readonly name: 'deposit'; readonly input: { id: string; amount: number } }
      | { readonly name: 'transfer'; readonly input: { from: string; to: string; amount: number } }
      | { readonly name: 'explode'; readonly input: { id: string } }
      | { readonly name: 'stamp'; readonly input: Record<string, never> }
    >();
    expectTypeOf<ResultOf<Bank>>().toExtend<
      { balance: number } | { from: number; to: number } | object
    >();
    // The result of `propose(node, 'transfer', ...)` is the transfer handler's.
    const transfer = (
      machine: PostgresStateMachine<Bank>,
      node: RaftNode<BankCommand, ResultOf<Bank>>,
    ) => machine.propose(node, 'transfer', { from: 'a', to: 'b', amount: 1 });
    expectTypeOf<ReturnType<typeof transfer>>().toEqualTypeOf<
      Promise<{ from: number; to: number }>
    >();
    const wrongInput = (
      machine: PostgresStateMachine<Bank>,
      node: RaftNode<BankCommand, ResultOf<Bank>>,
    ) =>
      // @ts-expect-error: a deposit needs an amount
      machine.propose(node, 'deposit', { id: 'a' });
    expectTypeOf(wrongInput).toBeFunction();
  });

  it('rejects invalid input before it reaches the log (validateCommand)', async () => {
    const machine = await open();
    expect(machine.validateCommand({ name: 'deposit', input: { id: 'a', amount: 5 } })).toEqual({
      name: 'deposit',
      input: { id: 'a', amount: 5 },
    });
    const invalid = (() => {
      try {
        machine.validateCommand({ name: 'deposit', input: { id: 'a', amount: -5 } });
      } catch (error) {
        return error;
      }
    })();
    expect(invalid).toBeInstanceOf(CommandValidationError);
    expect((invalid as CommandValidationError).issues[0]).toMatch(/^amount: /);
    expect(() => machine.validateCommand({ name: 'withdraw', input: {} })).toThrow(
      /unknown command "withdraw"/,
    );
    expect(() => machine.validateCommand(null)).toThrow(CommandValidationError);
  });

  it('applies a batch in one transaction, with the applied position, and survives a reopen', async () => {
    const machine = await open();
    const results = await machine.apply([
      ...entries(1, [
        { name: 'open', input: { id: 'a', initial: 100 } },
        { name: 'open', input: { id: 'b' } },
      ]),
      { kind: 'internal', index: 3, term: 1 },
      ...entries(4, [{ name: 'transfer', input: { from: 'a', to: 'b', amount: 30 } }]),
    ]);
    expect(results).toEqual([
      { status: 'ok', value: { id: 'a', openedAt: T0 + 1000 } },
      { status: 'ok', value: { id: 'b', openedAt: T0 + 2000 } },
      undefined,
      { status: 'ok', value: { from: 70, to: 30 } },
    ]);
    expect(await balances(db)).toEqual({ a: 70, b: 30 });
    expect(await machine.lastApplied()).toEqual({ index: 4, term: 1 });
    expect(await (await open()).lastApplied()).toEqual({ index: 4, term: 1 });
    // Entries that do not follow the applied position are refused, and change nothing.
    await expect(
      machine.apply(entries(6, [{ name: 'deposit', input: { id: 'a', amount: 1 } }])),
    ).rejects.toThrow(/does not follow the last applied entry 4/);
    expect(await balances(db)).toEqual({ a: 70, b: 30 });
  });

  it.each(['on-error', 'always'] as const)(
    'isolates a domain error to its command within a batch (savepoints %s)',
    async (savepoints) => {
      const machine = await open({ savepoints });
      const results = await machine.apply(
        entries(1, [
          { name: 'open', input: { id: 'a', initial: 100 } },
          { name: 'open', input: { id: 'b' } },
          { name: 'transfer', input: { from: 'a', to: 'b', amount: 500 } }, // debits, then rejects
          { name: 'transfer', input: { from: 'a', to: 'b', amount: 30 } },
          { name: 'deposit', input: { id: 'nobody', amount: 1 } },
          { name: 'open', input: { id: 'a' } }, // duplicate key: a constraint violation
          { name: 'deposit', input: { id: 'b', amount: -1 } } as BankCommand, // invalid on apply
          { name: 'withdraw', input: {} } as unknown as BankCommand,
          { name: 'deposit', input: { id: 'b', amount: 2 } },
        ]),
      );
      expect(results).toEqual([
        { status: 'ok', value: { id: 'a', openedAt: T0 + 1000 } },
        { status: 'ok', value: { id: 'b', openedAt: T0 + 2000 } },
        {
          status: 'error',
          error: {
            name: 'CommandRejection',
            message: 'a cannot pay 500',
            code: 'insufficient_funds',
          },
        },
        { status: 'ok', value: { from: 70, to: 30 } },
        {
          status: 'error',
          error: { name: 'CommandRejection', message: 'no account nobody', code: 'no_account' },
        },
        {
          status: 'error',
          error: {
            name: 'ConstraintViolationError',
            message: 'the command violates constraint "accounts_pkey" (SQLSTATE 23505)',
            code: '23505',
          },
        },
        {
          status: 'error',
          error: {
            name: 'CommandValidationError',
            message: expect.stringMatching(/^amount: /),
            code: 'invalid_input',
          },
        },
        {
          status: 'error',
          error: {
            name: 'UnknownCommandError',
            message: expect.stringMatching(/unknown command "withdraw"/),
            code: 'unknown_command',
          },
        },
        { status: 'ok', value: { balance: 32 } },
      ]);
      expect(await balances(db)).toEqual({ a: 70, b: 32 });
      const transfers = await db.selectFrom('transfers').select('id').execute();
      expect(transfers).toEqual([{ id: 't4' }]);
      expect(await machine.lastApplied()).toEqual({ index: 9, term: 1 });
    },
  );

  it('rolls the whole batch back when a handler throws a non-domain error (a crash between statements)', async () => {
    const machine = await open();
    await machine.apply(entries(1, [{ name: 'open', input: { id: 'a', initial: 10 } }]));
    const session = { clientId: 'c', seq: 1 };
    const failing = machine.apply(
      entries(2, [
        { command: { name: 'deposit', input: { id: 'a', amount: 5 } }, session },
        { name: 'explode', input: { id: 'a' } },
        { name: 'deposit', input: { id: 'a', amount: 7 } },
      ]),
    );
    await expect(failing).rejects.toThrow(
      /handler of command "explode" \(entry 3\) threw a non-domain error.*a bug/,
    );
    expect(await balances(db)).toEqual({ a: 10 });
    const note = await db.selectFrom('accounts').select('note').executeTakeFirstOrThrow();
    expect(note.note).toBeNull();
    expect(await machine.lastApplied()).toEqual({ index: 1, term: 1 });
    // Nothing of the batch was recorded: the session's command executes when applied again.
    const again = await machine.apply(
      entries(2, [{ command: { name: 'deposit', input: { id: 'a', amount: 5 } }, session }]),
    );
    expect(again).toEqual([{ status: 'ok', value: { balance: 15 } }]);
  });
});

describe('the Postgres state machine, client sessions (exactly-once, thesis 6.3)', () => {
  it('answers a duplicate with the recorded result without executing it again, in a batch and across batches', async () => {
    const machine = await open();
    const s1 = { clientId: 'alice', seq: 1 };
    const s2 = { clientId: 'alice', seq: 2 };
    const results = await machine.apply(
      entries(1, [
        { name: 'open', input: { id: 'a', initial: 10 } },
        { command: { name: 'deposit', input: { id: 'a', amount: 5 } }, session: s1 },
        { command: { name: 'deposit', input: { id: 'a', amount: 5 } }, session: s1 },
        { command: { name: 'deposit', input: { id: 'zzz', amount: 5 } }, session: s2 },
      ]),
    );
    expect(results.slice(1)).toEqual([
      { status: 'ok', value: { balance: 15 } },
      { status: 'ok', value: { balance: 15 } },
      {
        status: 'error',
        error: { name: 'CommandRejection', message: 'no account zzz', code: 'no_account' },
      },
    ]);
    const later = await machine.apply(
      entries(5, [
        { command: { name: 'deposit', input: { id: 'a', amount: 5 } }, session: s1 },
        { command: { name: 'deposit', input: { id: 'zzz', amount: 5 } }, session: s2 },
      ]),
    );
    expect(later).toEqual([results[1], results[3]]);
    expect(await balances(db)).toEqual({ a: 15 });
  });

  it('expires idle sessions and results older than retainPerClient, by entry timestamps', async () => {
    const machine = await open({
      sessions: { retainPerClient: 2, expireAfterMs: 60_000, forgetAfterMs: 120_000 },
    });
    await machine.apply(entries(1, [{ name: 'open', input: { id: 'a' } }]));
    const deposit = (seq: number, clientId = 'c', timestamp?: number) => ({
      command: { name: 'deposit', input: { id: 'a', amount: 1 } } as const,
      session: { clientId, seq },
      ...(timestamp === undefined ? {} : { timestamp }),
    });
    await machine.apply(entries(2, [deposit(1), deposit(2), deposit(3)]));
    // seq 1 is below the 2 results kept: its result is gone, it must not execute again.
    const old = await machine.apply(entries(5, [deposit(1), deposit(3)]));
    expect(old[0]).toEqual({
      status: 'error',
      error: {
        name: 'SessionExpiredError',
        message: expect.stringMatching(/expired session or is too old/),
      },
    });
    expect(old[1]).toEqual({ status: 'ok', value: { balance: 3 } });
    // Idle for more than expireAfterMs: expired; then, past forgetAfterMs, a new session.
    const idle = await machine.apply(entries(7, [deposit(4, 'c', T0 + 90_000)]));
    expect(idle[0]).toMatchObject({ status: 'error', error: { name: 'SessionExpiredError' } });
    const reborn = await machine.apply(entries(8, [deposit(1, 'c', T0 + 200_000)]));
    expect(reborn[0]).toEqual({ status: 'ok', value: { balance: 4 } });
    // The forgotten session's old results are gone with it.
    const { rows } = await sql<{ seq: unknown }>`
      select seq from ${sql.id(schema, 'client_result')} where client_id = 'c' order by seq
    `.execute(db);
    expect(rows.map((row) => Number(row.seq))).toEqual([1]);
  });

  it('keeps exactly the last retainPerClient results of each client as floors rise across batches', async () => {
    const machine = await open({ sessions: { retainPerClient: 3 } });
    await machine.apply(entries(1, [{ name: 'open', input: { id: 'a' } }]));
    const stored = async (): Promise<Record<string, number[]>> => {
      const { rows } = await sql<{ client_id: string; seq: unknown }>`
        select client_id, seq from ${sql.id(schema, 'client_result')} order by client_id, seq
      `.execute(db);
      const byClient: Record<string, number[]> = {};
      for (const row of rows) {
        byClient[row.client_id] = [...(byClient[row.client_id] ?? []), Number(row.seq)];
      }
      return byClient;
    };
    const deposits = (clientId: string, seqs: readonly number[]) =>
      seqs.map((seq) => ({
        command: { name: 'deposit', input: { id: 'a', amount: 1 } } as const,
        session: { clientId, seq },
      }));
    let index = 2;
    const apply = async (commands: ReturnType<typeof deposits>): Promise<void> => {
      await machine.apply(entries(index, commands));
      index += commands.length;
    };
    // A new session whose floor rises within its first batch, another that stays below it.
    await apply([...deposits('x', [1, 2, 3, 4, 5]), ...deposits('y', [1, 2])]);
    expect(await stored()).toEqual({ x: [3, 4, 5], y: [1, 2] });
    // Floors rising by one, by several, and past a gap in the sequence numbers.
    await apply([...deposits('x', [6]), ...deposits('y', [3, 4, 5, 6])]);
    expect(await stored()).toEqual({ x: [4, 5, 6], y: [4, 5, 6] });
    await apply(deposits('x', [20, 21]));
    expect(await stored()).toEqual({ x: [20, 21], y: [4, 5, 6] });
    await apply(deposits('x', [22, 23]));
    expect(await stored()).toEqual({ x: [21, 22, 23], y: [4, 5, 6] });
    // A retry within the window is answered from its result; one below it is expired.
    const [kept, gone] = await machine.apply(entries(index, deposits('x', [22, 20])));
    expect(kept).toMatchObject({ status: 'ok' });
    expect(gone).toMatchObject({ status: 'error', error: { name: 'SessionExpiredError' } });
    expect(await balances(db)).toEqual({ a: 16 });
  });
});

describe('the Postgres state machine, what a batch reads', () => {
  // A batch read from Postgres after another writer moved the position must not leave the
  // sessions remembered from before that writer's batches in use (exactly-once, thesis 6.3).
  const depositBy = (clientId: string, seq: number, amount: number) => ({
    command: { name: 'deposit', input: { id: 'a', amount } } as const,
    session: { clientId, seq },
  });

  it('answers a retry with its recorded result after another writer on the schema applied it', async () => {
    const mine = await open();
    const other = await open();
    await mine.apply(entries(1, [{ name: 'open', input: { id: 'a' } }, depositBy('c', 1, 1)]));
    await other.apply(entries(3, [depositBy('c', 2, 10)])); // c's seq 2: balance 11
    await mine.apply(entries(4, [depositBy('d', 1, 100)])); // read from Postgres: follows 3
    // c retries seq 2: it must be answered with its recorded result, not executed again.
    const retry = await mine.apply(entries(5, [depositBy('c', 2, 10)]));
    expect(retry).toEqual([{ status: 'ok', value: { balance: 11 } }]);
    expect(await balances(db)).toEqual({ a: 111 });
  });

  it('refuses a command as expired after another writer on the schema raised its floor', async () => {
    const sessions = { retainPerClient: 1 };
    const mine = await open({ sessions });
    const other = await open({ sessions });
    await mine.apply(entries(1, [{ name: 'open', input: { id: 'a' } }, depositBy('c', 1, 1)]));
    // The other writer executes c's 2, 3 and 4: the floor rises to 3, result 2 is deleted.
    await other.apply(
      entries(3, [depositBy('c', 2, 10), depositBy('c', 3, 10), depositBy('c', 4, 10)]),
    );
    await mine.apply(entries(6, [depositBy('d', 1, 100)])); // read from Postgres: follows 5
    // c's seq 2 again: executed already, its result forgotten: it must be refused as expired.
    const late = await mine.apply(entries(7, [depositBy('c', 2, 10)]));
    expect(late[0]).toMatchObject({ status: 'error', error: { name: 'SessionExpiredError' } });
    expect(await balances(db)).toEqual({ a: 131 });
  });

  it('answers a retry with its recorded result after a snapshot install', async () => {
    const mine = await open();
    const leader = await open();
    await mine.apply(entries(1, [{ name: 'open', input: { id: 'a' } }, depositBy('c', 1, 1)]));
    await leader.apply(
      entries(3, [depositBy('c', 2, 10), depositBy('c', 3, 10), depositBy('c', 4, 10)]),
    );
    const exported = await leader.exportSnapshot();
    const parts = await collectChunks(exported.chunks);
    await mine.restoreSnapshot(exported.position, streamOf(parts)); // installs 5
    await mine.apply(entries(6, [depositBy('d', 1, 100)]));
    const retry = await mine.apply(entries(7, [depositBy('c', 4, 10)]));
    expect(retry).toEqual([{ status: 'ok', value: { balance: 31 } }]);
    expect(await balances(db)).toEqual({ a: 131 });
  });

  it('skips reading the position and sessions it committed itself, and reads them for a possible retry', async () => {
    const statements: string[] = [];
    const logged = new Kysely<BankDatabase>({
      dialect: new PGliteDialect({ pglite }),
      log: (event) => {
        statements.push(event.query.sql);
      },
    });
    const machine = await open({ db: logged });
    const deposit = (seq: number) => ({
      command: { name: 'deposit', input: { id: 'a', amount: 1 } } as const,
      session: { clientId: 'c', seq },
    });
    const readsStart = async (batch: Entry[]): Promise<boolean> => {
      statements.length = 0;
      await machine.apply(batch);
      return statements.some((text) => /from "[^"]+"\."applied_state" for update/.test(text));
    };
    expect(await readsStart(entries(1, [{ name: 'open', input: { id: 'a' } }, deposit(1)]))).toBe(
      true,
    );
    // Follows its own last batch, new sequence numbers of a known client: nothing to read.
    expect(await readsStart(entries(3, [deposit(2), deposit(3), deposit(2)]))).toBe(false);
    expect(await readsStart(entries(6, [{ name: 'open', input: { id: 'b' } }]))).toBe(false);
    // A possible retry needs its recorded result: read, and answered without executing.
    statements.length = 0;
    const retry = await machine.apply(entries(7, [deposit(3)]));
    expect(statements.some((text) => /for update/.test(text))).toBe(true);
    expect(retry).toEqual([{ status: 'ok', value: { balance: 3 } }]);
    // A client it has not seen: read.
    const stranger = { command: deposit(1).command, session: { clientId: 'd', seq: 1 } };
    expect(await readsStart(entries(8, [stranger]))).toBe(true);
    expect(await balances(db)).toEqual({ a: 4, b: 0 });
  });

  it("refuses a batch when another writer moved the position it knows, and reads the other writer's sessions after", async () => {
    const mine = await open();
    const other = await open();
    const deposit = (seq: number, amount = 1) => ({
      command: { name: 'deposit', input: { id: 'a', amount } } as const,
      session: { clientId: 'c', seq },
    });
    await mine.apply(entries(1, [{ name: 'open', input: { id: 'a' } }, deposit(1)]));
    await other.apply(entries(3, [deposit(2, 10)]));
    // `mine` last committed entry 2 and knows client c up to seq 1: its batch at 3 must not pass.
    await expect(mine.apply(entries(3, [deposit(2, 100)]))).rejects.toThrow(
      /entry 3 does not follow the last applied entry 3/,
    );
    expect(await balances(db)).toEqual({ a: 11 });
    expect(await mine.lastApplied()).toEqual({ index: 3, term: 1 });
    // Then it reads Postgres again: seq 2 was executed by the other writer, so it is answered.
    const answered = await mine.apply(entries(4, [deposit(2, 10), deposit(3)]));
    expect(answered).toEqual([
      { status: 'ok', value: { balance: 11 } },
      { status: 'ok', value: { balance: 12 } },
    ]);
    expect(await balances(db)).toEqual({ a: 12 });
  });
});

describe('the Postgres state machine, determinism', () => {
  it('gives handlers the entry position, leader timestamp and a random source seeded by (index, term)', async () => {
    const machine = await open();
    const stampAt = (index: number, term: number, timestamp: number): Entry => ({
      kind: 'command',
      index,
      term,
      timestamp,
      command: { name: 'stamp', input: {} },
    });
    const first = await machine.apply([stampAt(1, 3, T0), stampAt(2, 3, T0 + 5)]);
    expect(first[0]).toMatchObject({
      status: 'ok',
      value: { index: 1, term: 3, timestamp: T0, iso: new Date(T0).toISOString() },
    });
    const [a, b] = first.map((result) =>
      result?.status === 'ok' ? (result.value as { random: number[] }).random : [],
    );
    expect(a).not.toEqual(b);
    for (const n of [...(a ?? []), ...(b ?? [])]) expect(n >= 0 && n < 1).toBe(true);
    // Another replica applying the same entries gets exactly the same values.
    schema = `sm_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
    const replica = await open();
    expect(await replica.apply([stampAt(1, 3, T0), stampAt(2, 3, T0 + 5)])).toEqual(first);
  });
});

describe('the Postgres state machine, snapshots', () => {
  it('exports a consistent snapshot in pages and restores it over later changes', async () => {
    const machine = await open({ snapshotPageRows: 7 });
    const awkward = 'line\nbreak "quotes" \\ back\u0000slash? no: \u2028 ✓';
    await machine.apply(
      entries(1, [
        {
          name: 'open',
          input: {
            id: 'a',
            initial: 9_007_199_254_740_000,
            note: awkward.replace('\u0000', ''),
            avatarHex: '00ff10',
          },
        },
        ...Array.from({ length: 40 }, (_, i) => ({
          name: 'open' as const,
          input: { id: `acct${i}`, initial: i },
        })),
        {
          command: { name: 'transfer', input: { from: 'a', to: 'acct1', amount: 5 } },
          session: { clientId: 'c', seq: 1 },
        },
      ]),
    );
    // A value beyond 2^53 that JavaScript could not hold exactly: it must round-trip.
    await sql`update accounts set balance = 9007199254740993 where id = 'acct0'`.execute(db);
    const dump = async () =>
      (
        await sql<{ t: string }>`
          select string_agg(to_jsonb(x)::text, E'\n' order by x.id) as t from accounts x
        `.execute(db)
      ).rows[0]?.t;
    const before = await dump();
    const exported = await machine.exportSnapshot();
    expect(exported.position).toEqual({ index: 42, term: 1 });
    // Changes after the export do not show in it.
    await machine.apply(entries(43, [{ name: 'deposit', input: { id: 'acct2', amount: 1000 } }]));
    const parts = await collectChunks(exported.chunks);
    const text = new TextDecoder().decode(Buffer.concat(parts));
    expect(text.split('\n')[0]).toMatch(
      /^#tsraft-pg-state\/1 \{"position":\{"index":42,"term":1\}/,
    );
    await machine.apply(entries(44, [{ name: 'open', input: { id: 'late' } }]));
    await machine.restoreSnapshot(exported.position, streamOf(parts));
    expect(await dump()).toBe(before);
    expect(await machine.lastApplied()).toEqual({ index: 42, term: 1 });
    expect(await db.selectFrom('transfers').select('id').execute()).toEqual([{ id: 't42' }]);
    // The sessions came back too: the transfer's retry is a duplicate.
    const retry = await machine.apply(
      entries(43, [
        {
          command: { name: 'transfer', input: { from: 'a', to: 'acct1', amount: 5 } },
          session: { clientId: 'c', seq: 1 },
        },
      ]),
    );
    expect(retry).toEqual([{ status: 'ok', value: { from: 9_007_199_254_739_995, to: 6 } }]);
    expect((await balances(db)).acct1).toBe(6);
  });

  it('restores json values as they were stored (key order, duplicate keys, spacing) through its staging table', async () => {
    await sql`create table notes (id int4 primary key, doc json)`.execute(db);
    try {
      const machine = await open({ tables: ['notes'], existingRows: 'accept' });
      const stored = ['{"b": 1,  "a":[1, 2],"a":3}', '[ {"z":null} ,"x\\u0041", 1.50 ]', '12.50'];
      for (const [i, doc] of stored.entries()) {
        await sql`insert into notes values (${i}, cast(${doc} as json))`.execute(db);
      }
      const docs = async () =>
        (
          await sql<{ doc: string }>`select doc::text as doc from notes order by id`.execute(db)
        ).rows.map((row) => row.doc);
      const exported = await machine.exportSnapshot();
      const parts = await collectChunks(exported.chunks);
      await sql`update notes set doc = '{}'`.execute(db);
      await machine.restoreSnapshot(exported.position, streamOf(parts));
      expect(await docs()).toEqual(stored);
    } finally {
      await sql`drop table notes`.execute(db);
    }
  });

  it('rejects a corrupt or foreign snapshot with a clear error and changes nothing', async () => {
    const machine = await open();
    await machine.apply(entries(1, [{ name: 'open', input: { id: 'a', initial: 1 } }]));
    const exported = await machine.exportSnapshot();
    const good = new TextDecoder().decode(Buffer.concat(await collectChunks(exported.chunks)));
    await machine.apply(entries(2, [{ name: 'open', input: { id: 'b', initial: 2 } }]));
    const attempt = (text: string, position = exported.position) =>
      machine.restoreSnapshot(position, streamOf([new TextEncoder().encode(text)]));
    const cases: [string, () => Promise<void>, RegExp][] = [
      [
        'wrong header',
        () => attempt(`#other-format/1 {}\n${good}`),
        /not a Postgres state machine snapshot/,
      ],
      [
        'bad JSON row',
        () => attempt(good.replace(/"id": ?"a"/, '$&,,')),
        /rows of public\.accounts cannot be restored/,
      ],
      ['truncated', () => attempt(good.slice(0, good.indexOf('#end'))), /truncated/],
      [
        'row count',
        () => attempt(good.replace('#end {"rows":1}', '#end {"rows":2}')),
        /holds 1 rows, its end line says 2/,
      ],
      ['position', () => attempt(good, { index: 9, term: 1 }), /not at 9\/1/],
      ['utf-8', () => attempt(`${good.slice(0, 30)}\udc00${good.slice(30)}`), /corrupt snapshot/],
    ];
    for (const [what, failure, message] of cases) {
      const error = await failure().catch((caught: unknown) => caught);
      expect(error, what).toBeInstanceOf(CorruptSnapshotError);
      expect((error as Error).message, what).toMatch(message);
    }
    const invalidUtf8 = await machine
      .restoreSnapshot(exported.position, streamOf([new Uint8Array([0x23, 0xff, 0x0a])]))
      .catch((caught: unknown) => caught as StorageError);
    expect(invalidUtf8).toBeInstanceOf(CorruptSnapshotError);
    expect(await balances(db)).toEqual({ a: 1, b: 2 });
    expect(await machine.lastApplied()).toEqual({ index: 2, term: 1 });
    const staged = await sql<{
      n: unknown;
    }>`select count(*) as n from ${sql.id(schema, 'restore_staging')}`.execute(db);
    expect(Number(staged.rows[0]?.n)).toBe(0);
  });
});

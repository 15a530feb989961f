import { randomUUID } from 'node:crypto';
import { PGlite } from '@electric-sql/pglite';
import type { AppliedEntry, ClientSession, CommandResult } from '@tsraft/core';
import { Kysely, PGliteDialect, sql, type Transaction } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { type CommandOf, defineCommand } from './command-definition.ts';
import { domainError } from './command-rejection.ts';
import { createPostgresStateMachine } from './postgres-state-machine.ts';

// biome-ignore lint/suspicious/noExplicitAny: the tables of these tests are named at run time.
type AnyDb = any;

let db: Kysely<AnyDb>;

beforeAll(async () => {
  db = new Kysely<AnyDb>({ dialect: new PGliteDialect({ pglite: new PGlite() }) });
  // PGlite's cold start takes seconds: here, not in the first test's time.
  await sql`select 1`.execute(db);
});

afterAll(async () => {
  await db?.destroy();
});

/** Calls of a batch handler: the number of commands of each. */
type Calls = number[];

/**
 * Key/value commands on `table`: `put` (with a batch handler when `calls` is given: one
 * multi-row upsert, the last put of a key winning) refuses the value `reject`; `add` (no batch
 * handler) reads a value and appends to it, so it sees the puts before it.
 */
function kvCommands(table: string, calls?: Calls) {
  const id = sql.table(table);
  const putInput = z.object({ key: z.string(), value: z.string() });
  return {
    put: defineCommand({
      input: putInput,
      handler: async (trx: Transaction<AnyDb>, input, ctx) => {
        if (input.value === 'reject') throw domainError('rejected', `${input.key} refused`);
        await sql`
          insert into ${id} (key, value) values (${input.key}, ${input.value})
          on conflict (key) do update set value = excluded.value
        `.execute(trx);
        return { key: input.key, index: ctx.index };
      },
      ...(calls === undefined
        ? {}
        : {
            batchHandler: async (
              trx: Transaction<AnyDb>,
              commands: readonly { input: z.output<typeof putInput>; ctx: { index: number } }[],
            ) => {
              calls.push(commands.length);
              if (commands.some((c) => c.input.value === 'reject')) {
                throw domainError('rejected', 'a command of the run is refused');
              }
              // The last put of each key wins: fold before one multi-row upsert.
              const last = new Map(commands.map((c) => [c.input.key, c.input.value]));
              await sql`
                insert into ${id} (key, value)
                select * from unnest(${[...last.keys()]}::text[], ${[...last.values()]}::text[])
                on conflict (key) do update set value = excluded.value
              `.execute(trx);
              return commands.map((c) => ({ key: c.input.key, index: c.ctx.index }));
            },
          }),
    }),
    add: defineCommand({
      input: z.object({ key: z.string(), suffix: z.string() }),
      handler: async (trx: Transaction<AnyDb>, input) => {
        const { rows } = await sql<{ value: string }>`
          update ${id} set value = value || ${input.suffix} where key = ${input.key}
          returning value
        `.execute(trx);
        if (rows[0] === undefined) throw domainError('missing', `${input.key} is not there`);
        return { key: input.key, value: rows[0].value };
      },
    }),
  };
}

type Command = CommandOf<ReturnType<typeof kvCommands>>;

/** A state machine on a fresh table and schema; with `calls`, `put` has its batch handler. */
async function machine(calls?: Calls) {
  const table = `kv_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
  await sql`create table ${sql.table(table)} (key text primary key, value text not null)`.execute(
    db,
  );
  const stateMachine = await createPostgresStateMachine({
    db,
    schema: `s_${table}`,
    commands: kvCommands(table, calls),
    tables: [table],
  });
  const rows = async () =>
    (
      await sql<{ key: string; value: string }>`
        select key, value from ${sql.table(table)} order by key
      `.execute(db)
    ).rows;
  return { stateMachine, rows };
}

function entries(
  commands: readonly (Command | { command: Command; session: ClientSession })[],
  first = 1,
): AppliedEntry<Command>[] {
  return commands.map((item, i) => ({
    kind: 'command',
    index: first + i,
    term: 1,
    timestamp: 1_700_000_000_000 + i,
    ...('session' in item ? item : { command: item }),
  }));
}

const put = (key: string, value: string): Command => ({ name: 'put', input: { key, value } });
const add = (key: string, suffix: string): Command => ({ name: 'add', input: { key, suffix } });

/** Applies `batch` to a machine with the batch handler and to one without; returns both. */
async function applyBoth(batch: AppliedEntry<Command>[]) {
  const calls: Calls = [];
  const batched = await machine(calls);
  const single = await machine();
  const results = await batched.stateMachine.apply(batch);
  const expected = await single.stateMachine.apply(batch);
  return {
    calls,
    results,
    expected,
    rows: await batched.rows(),
    expectedRows: await single.rows(),
  };
}

describe('the Postgres state machine, batch handlers', () => {
  it('runs consecutive commands of one name through the batch handler: the same tables and results as one by one, writes of earlier commands seen by later ones', async () => {
    const { calls, results, expected, rows, expectedRows } = await applyBoth(
      entries([
        put('a', '1'),
        put('b', '1'),
        put('a', '2'), // the same key again in the run: the later put wins
        add('a', '+'), // no batch handler: the run before it runs first, and it sees 'a' = '2'
        put('c', '1'),
        put('a', '3'),
        put('c', '2'),
      ]),
    );
    expect(calls).toEqual([3, 3]);
    expect(results).toEqual(expected);
    expect(rows).toEqual(expectedRows);
    expect(rows).toEqual([
      { key: 'a', value: '3' },
      { key: 'b', value: '1' },
      { key: 'c', value: '2' },
    ]);
    expect(results[3]).toEqual({ status: 'ok', value: { key: 'a', value: '2+' } });
  });

  it('falls back to one command at a time after a domain error in a run: only the refused command fails', async () => {
    const { calls, results, expected, rows, expectedRows } = await applyBoth(
      entries([put('a', '1'), put('b', '1'), put('c', 'reject'), put('d', '1'), put('e', '1')]),
    );
    // The run is tried once, then executed command by command with savepoints.
    expect(calls).toEqual([5]);
    expect(results).toEqual(expected);
    expect(rows).toEqual(expectedRows);
    expect(results.map((r) => r?.status)).toEqual(['ok', 'ok', 'error', 'ok', 'ok']);
    expect((results[2] as CommandResult<unknown> & { status: 'error' }).error.code).toBe(
      'rejected',
    );
  });

  it('answers a retry of a command of the same run with its result, executing it once (thesis 6.3)', async () => {
    const session = { clientId: 'c1', seq: 1 };
    const { calls, results, rows } = await applyBoth(
      entries([
        { command: put('a', '1'), session },
        put('b', '1'),
        { command: put('a', '1'), session }, // a retry: same command and stamp, never executed
      ]),
    );
    expect(calls).toEqual([2]);
    expect(results[2]).toEqual(results[0]);
    expect(rows).toEqual([
      { key: 'a', value: '1' },
      { key: 'b', value: '1' },
    ]);
  });

  it('stops applying (fatal) when a batch handler answers another number of results than commands, and applies nothing', async () => {
    const table = `kv_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
    await sql`create table ${sql.table(table)} (key text primary key, value text not null)`.execute(
      db,
    );
    const commands = kvCommands(table);
    const broken = await createPostgresStateMachine({
      db,
      schema: `s_${table}`,
      commands: {
        ...commands,
        put: { ...commands.put, batchHandler: async () => [] },
      },
      tables: [table],
    });
    await expect(broken.apply(entries([put('a', '1'), put('b', '1')]))).rejects.toThrow(
      /answered 0 results for 2 commands/,
    );
    expect(await broken.lastApplied()).toEqual({ index: 0, term: 0 });
  });
});

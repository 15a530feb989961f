import { randomUUID } from 'node:crypto';
import { PGlite } from '@electric-sql/pglite';
import type { AppliedEntry } from '@tsraft/core';
import {
  describeClientSessionConformance,
  type SessionAnswer,
} from '@tsraft/core/testing/conformance';
import { Kysely, PGliteDialect, sql } from 'kysely';
import { afterAll, beforeAll } from 'vitest';
import { z } from 'zod';
import type { AnyKysely } from './any-kysely.ts';
import { defineCommand } from './command-definition.ts';
import { createPostgresStateMachine } from './postgres-state-machine.ts';

let db: AnyKysely;

beforeAll(async () => {
  db = new Kysely({ dialect: new PGliteDialect({ pglite: new PGlite() }) });
  // PGlite's cold start takes seconds: here, not in the first test's time.
  await sql`select 1`.execute(db);
});

afterAll(async () => {
  await db?.destroy();
});

/** A command that answers the index of its entry, which the fixture maps to its token. */
const commands = {
  echo: defineCommand({
    input: z.object({ asks: z.string() }),
    handler: async (_trx, _input, ctx) => String(ctx.index),
  }),
};

// The same retention rules as the core's `ClientSessions`, checked by the same cases.
describeClientSessionConformance('the Postgres state machine', async (options) => {
  const machine = await createPostgresStateMachine({
    db,
    schema: `s_${randomUUID().replaceAll('-', '').slice(0, 12)}`,
    commands,
    tables: [],
    sessions: options,
  });
  let index = 0;
  /** The token of the command of each entry index. */
  const tokens = new Map<string, string>();
  return {
    apply: async (batches) => {
      const answers: SessionAnswer[][] = [];
      for (const batch of batches) {
        const entries = batch.map(
          (command): AppliedEntry<{ name: 'echo'; input: { asks: string } }> => {
            tokens.set(String(++index), command.token);
            return {
              kind: 'command',
              index,
              term: 1,
              timestamp: command.timestamp,
              command: { name: 'echo', input: { asks: command.command } },
              session: { clientId: command.clientId, seq: command.seq },
            };
          },
        );
        const results = await machine.apply(entries);
        answers.push(
          results.map((result): SessionAnswer => {
            if (result?.status === 'ok') return { result: tokens.get(String(result.value)) ?? '' };
            if (result?.error.name === 'SessionExpiredError') return { expired: true };
            if (result?.error.name === 'SessionConflictError') return { conflict: true };
            throw new Error(`unexpected answer ${JSON.stringify(result)}`);
          }),
        );
      }
      return answers;
    },
  };
});

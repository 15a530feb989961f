import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { PGlite } from '@electric-sql/pglite';
import type { AppliedEntry } from '@tsraft/core';
import {
  type CommandOf,
  createPostgresStateMachine,
  defineCommand,
  PostgresSnapshotStore,
} from '@tsraft/pg-storage';
import { Kysely, PGliteDialect, sql, type Transaction } from 'kysely';
import { z } from 'zod';
import { runCli } from './program.ts';

/** The replicated table of the test nodes. */
interface ItemsDatabase {
  items: { id: number; label: string };
}

const itemCommands = {
  put: defineCommand({
    input: z.object({ id: z.number().int(), label: z.string() }),
    handler: async (trx: Transaction<ItemsDatabase>, input) => {
      await sql`
        insert into items (id, label) values (${input.id}, ${input.label})
        on conflict (id) do update set label = excluded.label
      `.execute(trx);
      return { ok: true };
    },
  }),
};

const ITEM_TABLES: readonly string[] = ['items'];

/** `count` put commands from index `first` on, with sessions. */
function puts(
  first: number,
  count: number,
  label = 'item',
): AppliedEntry<CommandOf<typeof itemCommands>>[] {
  return Array.from({ length: count }, (_, i) => ({
    kind: 'command' as const,
    index: first + i,
    term: 1,
    timestamp: 1_700_000_000_000 + first + i,
    command: { name: 'put' as const, input: { id: first + i, label: `${label} ${first + i}` } },
    session: { clientId: 'c1', seq: first + i },
  }));
}

/** A folder for the test's files, removed on dispose. */
export async function tempFolder(): Promise<{ path: string } & AsyncDisposable> {
  const path = await mkdtemp(join(tmpdir(), 'tsraft-snapshot-'));
  return { path, [Symbol.asyncDispose]: () => rm(path, { recursive: true, force: true }) };
}

/**
 * A node's PGlite database in `folder`, with the `items` table, `applied` entries applied and,
 * when `snapshot` is set, a snapshot of that state stored. Closed when this resolves (PGlite
 * allows one instance per folder: the tool opens it next).
 */
export async function pgliteNode(
  folder: string,
  options: { applied: number; snapshot: boolean },
): Promise<void> {
  const db = new Kysely<ItemsDatabase>({
    dialect: new PGliteDialect({ pglite: new PGlite(folder) }),
  });
  try {
    await sql`create table if not exists items (id int8 primary key, label text not null)`.execute(
      db,
    );
    const machine = await createPostgresStateMachine({
      db,
      commands: itemCommands,
      tables: ITEM_TABLES,
    });
    if (options.applied > 0) await machine.apply(puts(1, options.applied));
    const store = await PostgresSnapshotStore.open({ db });
    if (options.snapshot) {
      const exported = await machine.exportSnapshot();
      await store.save(
        { ...exported.position, config: { voters: ['n1', 'n2', 'n3'] } },
        exported.chunks,
      );
    }
  } finally {
    await db.destroy();
  }
}

/**
 * A database in `folder` with the `items` table holding `rows` rows (written directly, as an
 * application that ran before tsraft would have) and no Raft state. Closed when this resolves.
 */
export async function pgliteTable(folder: string, rows: number): Promise<void> {
  const db = new Kysely<ItemsDatabase>({
    dialect: new PGliteDialect({ pglite: new PGlite(folder) }),
  });
  try {
    await sql`create table items (id int8 primary key, label text not null)`.execute(db);
    if (rows > 0) {
      await sql`insert into items select g, 'legacy ' || g from generate_series(1, ${rows}) g`.execute(
        db,
      );
    }
  } finally {
    await db.destroy();
  }
}

/** The rows of `items` in the database in `folder`, as text (the folder must not be in use). */
export async function itemRows(folder: string): Promise<string> {
  const db = new Kysely<ItemsDatabase>({
    dialect: new PGliteDialect({ pglite: new PGlite(folder) }),
  });
  try {
    const { rows } = await sql<{ t: string | null }>`
      select string_agg(to_jsonb(x)::text, ',' order by id) as t from items x
    `.execute(db);
    return rows[0]?.t ?? '';
  } finally {
    await db.destroy();
  }
}

/** What one run of the tool printed, and its exit code. */
export interface CliRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the tool in this process, as `tsraft-snapshot ...args`. */
export async function cli(...args: string[]): Promise<CliRun> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (chunk: Buffer) => {
    out += chunk.toString();
  });
  stderr.on('data', (chunk: Buffer) => {
    err += chunk.toString();
  });
  const stdin = (async function* () {})();
  const code = await runCli(args, { stdin, stdout, stderr }, new AbortController().signal);
  return { code, stdout: out, stderr: err };
}

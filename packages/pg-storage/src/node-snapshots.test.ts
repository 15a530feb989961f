import { PGlite } from '@electric-sql/pglite';
import { type AppliedEntry, CorruptSnapshotError } from '@tsraft/core';
import { chunked } from '@tsraft/core/testing';
import { Kysely, PGliteDialect, sql, type Transaction } from 'kysely';
import { afterAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import type { AnyKysely } from './any-kysely.ts';
import { type CommandOf, defineCommand } from './command-definition.ts';
import {
  NodeNotEmptyError,
  readNodeState,
  restoreNode,
  SEED_POSITION,
  seedSnapshot,
} from './node-snapshots.ts';
import { PostgresLogStore } from './postgres-log-store.ts';
import { PostgresSnapshotStore } from './postgres-snapshot-store.ts';
import { createPostgresStateMachine, ExistingRowsError } from './postgres-state-machine.ts';

// Restoring and seeding whole nodes: each node is a PGlite database of its own, with the
// replicated table `items`.

const opened: AnyKysely[] = [];

afterAll(async () => {
  await Promise.all(opened.map((db) => db.destroy()));
});

interface TestNode {
  readonly db: AnyKysely;
  readonly raft: string;
  readonly tables: string[];
}

async function freshNode(): Promise<TestNode> {
  const db: AnyKysely = new Kysely({ dialect: new PGliteDialect({ pglite: new PGlite() }) });
  opened.push(db);
  await sql`create table items (id int8 primary key, label text not null, n numeric)`.execute(db);
  return { db, raft: 'raft', tables: ['items'] };
}

function commandsFor() {
  return {
    put: defineCommand({
      input: z.object({ id: z.number().int(), label: z.string() }),
      handler: async (trx: Transaction<Record<string, never>>, input) => {
        await sql`
          insert into items (id, label) values (${input.id}, ${input.label})
          on conflict (id) do update set label = excluded.label
        `.execute(trx);
        return { ok: true };
      },
    }),
  };
}

function puts(count: number): AppliedEntry<CommandOf<ReturnType<typeof commandsFor>>>[] {
  return Array.from({ length: count }, (_, i) => ({
    kind: 'command' as const,
    index: i + 1,
    term: 2,
    timestamp: 1_700_000_000_000 + i,
    command: { name: 'put' as const, input: { id: i + 1, label: `item ${i + 1}` } },
    session: { clientId: 'c1', seq: i + 1 },
  }));
}

/** Every row of the application table and of the Raft schema's tables, as text. */
async function dump(node: TestNode): Promise<string> {
  const tables = [
    sql.id('items'),
    ...[
      'log_entry',
      'log_meta',
      'hard_state',
      'snapshot',
      'snapshot_chunk',
      'applied_state',
      'client_session',
      'client_result',
    ].map((table) => sql.id(node.raft, table)),
  ];
  const parts: string[] = [];
  for (const table of tables) {
    const { rows } = await sql<{ t: string | null }>`
      select string_agg(to_jsonb(x)::text, E'\\n' order by to_jsonb(x)::text) as t from ${table} x
    `.execute(node.db);
    parts.push(rows[0]?.t ?? '');
  }
  return parts.join('\n---\n');
}

/** A source node with `count` applied commands, and its exported snapshot's bytes. */
async function sourceSnapshot(count: number) {
  const node = await freshNode();
  const machine = await createPostgresStateMachine({
    db: node.db,
    schema: node.raft,
    commands: commandsFor(),
    tables: node.tables,
  });
  await machine.apply(puts(count));
  const exported = await machine.exportSnapshot();
  const parts: Uint8Array[] = [];
  for await (const chunk of exported.chunks) parts.push(chunk.slice());
  return { node, position: exported.position, bytes: Buffer.concat(parts) };
}

const of = (bytes: Uint8Array, size = 700) => chunked(bytes, size);

const config = { voters: ['n1', 'n2', 'n3'] };

describe('restoreNode: a stopped node starts from a snapshot', { timeout: 60_000 }, () => {
  it('replaces the tables, sessions, applied position, snapshots, log and hard state in one go', async () => {
    const source = await sourceSnapshot(30);
    const target = await freshNode();
    const stored = await restoreNode({
      db: target.db,
      schema: target.raft,
      tables: target.tables,
      snapshot: { ...source.position, config },
      chunks: of(source.bytes),
    });
    expect(stored).toMatchObject({ index: 30, term: 2, config, size: source.bytes.byteLength });
    expect(await rows(target)).toBe(await rows(source.node));
    const state = await readNodeState({ db: target.db, schema: target.raft });
    expect(state).toMatchObject({
      term: 2,
      votedFor: null,
      commitIndex: 30,
      logStart: { index: 30, term: 2 },
      lastIndex: 30,
      applied: { index: 30, term: 2 },
      snapshots: 1,
      empty: false,
    });
    const store = await PostgresSnapshotStore.open({ db: target.db, schema: target.raft });
    expect(await store.latest()).toEqual(stored);
    const parts: Uint8Array[] = [];
    for await (const chunk of store.read(stored)) parts.push(chunk);
    expect(Buffer.concat(parts).equals(source.bytes)).toBe(true);
    const log = await (await PostgresLogStore.open({ db: target.db, schema: target.raft })).load();
    expect(log.snapshot).toEqual({ index: 30, term: 2 });
    const machine = await createPostgresStateMachine({
      db: target.db,
      schema: target.raft,
      commands: commandsFor(),
      tables: target.tables,
    });
    expect(await machine.lastApplied()).toEqual({ index: 30, term: 2 });
    // The sessions came along: a retried command gets its recorded result, not a second run,
    // and another command under its stamp is refused (the digests came along too).
    const retried = puts(30)[29]!;
    if (retried.kind !== 'command') throw new Error('a command');
    const [retry, reused] = await machine.apply([
      { ...retried, index: 31 },
      { ...retried, index: 32, command: { name: 'put', input: { id: 30, label: 'run twice' } } },
    ]);
    expect(retry).toEqual({ status: 'ok', value: { ok: true } });
    expect(reused).toMatchObject({ status: 'error', error: { name: 'SessionConflictError' } });
    const label = await sql<{ label: string }>`select label from items where id = 30`.execute(
      target.db,
    );
    expect(label.rows[0]?.label).toBe('item 30');
  });

  it('refuses a node that holds Raft state unless told to replace it, changing nothing', async () => {
    const source = await sourceSnapshot(5);
    const before = await dump(source.node);
    const restore = (replace: boolean) =>
      restoreNode({
        db: source.node.db,
        schema: source.node.raft,
        tables: source.node.tables,
        snapshot: { ...source.position, config },
        chunks: of(source.bytes),
        replace,
      });
    const refused = await restore(false).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(NodeNotEmptyError);
    expect((refused as Error).message).toMatch(/holds Raft state \(term 0, log up to 0, applied 5/);
    expect(await dump(source.node)).toBe(before);
    await expect(restore(true)).resolves.toMatchObject({ index: 5 });
  });

  it('changes nothing when the snapshot is damaged, truncated, of other tables or at another position', async () => {
    const source = await sourceSnapshot(20);
    const target = await freshNode();
    await restoreNode({
      db: target.db,
      schema: target.raft,
      tables: target.tables,
      snapshot: { ...source.position, config },
      chunks: of(source.bytes),
    });
    await sql`insert into items values (100, 'more', 2)`.execute(target.db);
    const before = await dump(target);
    const text = source.bytes.toString();
    const damaged = [
      text.slice(0, text.length - 30),
      text.replace('"label":"item 7"', '"label":null'),
      text.replace('"id":7,', '"id":"seven",'),
      text.replace(/#end \{"rows":\d+\}/, '#end {"rows":3}'),
      text.replace('"public.items"', '"public.other"'),
    ];
    for (const variant of damaged) {
      expect(variant).not.toBe(text);
      await expect(
        restoreNode({
          db: target.db,
          schema: target.raft,
          tables: target.tables,
          snapshot: { ...source.position, config },
          chunks: of(Buffer.from(variant)),
          replace: true,
        }),
      ).rejects.toBeInstanceOf(CorruptSnapshotError);
      expect(await dump(target)).toBe(before);
    }
    await expect(
      restoreNode({
        db: target.db,
        schema: target.raft,
        tables: target.tables,
        snapshot: { index: 21, term: 2, config },
        chunks: of(source.bytes),
        replace: true,
      }),
    ).rejects.toThrow(/the snapshot is at 20\/2, not at 21\/2/);
    expect(await dump(target)).toBe(before);
  });
});

describe('seeding a new cluster from existing tables', { timeout: 60_000 }, () => {
  it('refuses to open a state machine over rows no log explains, saying how to seed', async () => {
    const node = await freshNode();
    await sql`insert into items values (1, 'before tsraft', 3)`.execute(node.db);
    const error = await createPostgresStateMachine({
      db: node.db,
      schema: node.raft,
      commands: commandsFor(),
      tables: node.tables,
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ExistingRowsError);
    expect((error as Error).message).toMatch(
      /tables public\.items hold rows, but this node has applied nothing .*tsraft-snapshot seed --db/,
    );
  });

  it("makes the first snapshot of a new cluster from a node's tables; the nodes restored from it agree and apply on", async () => {
    const node = await freshNode();
    await sql`
      insert into items select g, 'legacy ' || g, g / 3.0 from generate_series(1, 500) g
    `.execute(node.db);
    const before = await rows(node);
    const seed = await seedSnapshot({ db: node.db, schema: node.raft, tables: node.tables });
    expect(seed.position).toEqual(SEED_POSITION);
    const parts: Uint8Array[] = [];
    for await (const chunk of seed.chunks) parts.push(chunk.slice());
    const bytes = Buffer.concat(parts);
    // Into this node, and into another whose own copy of the rows had drifted.
    const other = await freshNode();
    await sql`insert into items values (1, 'drifted', 0)`.execute(other.db);
    for (const target of [node, other]) {
      await restoreNode({
        db: target.db,
        schema: target.raft,
        tables: target.tables,
        snapshot: { ...SEED_POSITION, config },
        chunks: of(bytes),
      });
      expect(await rows(target)).toBe(before);
      const machine = await createPostgresStateMachine({
        db: target.db,
        schema: target.raft,
        commands: commandsFor(),
        tables: target.tables,
      });
      expect(await machine.lastApplied()).toEqual(SEED_POSITION);
      await machine.apply([
        {
          kind: 'command',
          index: 2,
          term: 2,
          timestamp: 1_700_000_000_000,
          command: { name: 'put', input: { id: 501, label: 'after the seed' } },
        },
      ]);
    }
    expect(await rows(other)).toBe(await rows(node));
    // A node with Raft state is not new: it cannot be seeded from.
    await expect(
      seedSnapshot({ db: node.db, schema: node.raft, tables: node.tables }),
    ).rejects.toBeInstanceOf(NodeNotEmptyError);
  });
});

/** The rows of `items`, as text. */
async function rows(node: TestNode): Promise<string> {
  const { rows } = await sql<{ t: string | null }>`
    select string_agg(to_jsonb(x)::text, ',' order by id) as t from items x
  `.execute(node.db);
  return rows[0]?.t ?? '';
}

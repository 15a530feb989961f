import { RaftNode } from '@tsraft/core';
import { InProcessNetwork, KvStateMachine, MemorySnapshotStore } from '@tsraft/core/testing';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AnyKysely } from './any-kysely.ts';
import {
  startThrowawayPostgres,
  type ThrowawayPostgres,
} from './embedded-postgres.test-helpers.ts';
import { migrateRaftSchema, raftSchemaStatus } from './migrations.ts';
import { guardPoolErrors } from './pool-errors.ts';
import { PostgresLogStore } from './postgres-log-store.ts';

// A real Postgres server (embedded-postgres): a database written by the version before node
// identities (migrations up to 0005) is upgraded in place, keeps its Raft state, and its node
// gets an incarnation at its first start, the same at every later one.

let postgres: ThrowawayPostgres | undefined;
let db: AnyKysely;

beforeAll(async () => {
  postgres = await startThrowawayPostgres('identity');
  const pool = new pg.Pool({ connectionString: postgres.url, max: 2 });
  guardPoolErrors(pool); // connections ended by the server's shutdown in afterAll
  db = new Kysely({ dialect: new PostgresDialect({ pool }) });
}, 120_000);

afterAll(async () => {
  await db?.destroy();
  await postgres?.stop();
});

/** Leaves `schema` as the version before identities left it: migrated up to 0005, with state. */
async function writtenByPreviousVersion(schema: string): Promise<void> {
  await migrateRaftSchema({ db, schema });
  const id = sql.id;
  // 0006 only adds the column, 0007 two functions and 0008 a column: without them and their
  // records, the schema is the older one.
  await sql`alter table ${id(schema, 'hard_state')} drop column identity`.execute(db);
  await sql`alter table ${id(schema, 'snapshot_chunk')} drop column sha256`.execute(db);
  await sql`drop function ${id(schema, 'tsraft_append')}`.execute(db);
  await sql`drop function ${id(schema, 'tsraft_finish_batch')}`.execute(db);
  await sql`
    delete from ${id(schema, 'tsraft_migration')}
    where name in ('0006_node_identity', '0007_write_functions', '0008_snapshot_chunk_digest')
  `.execute(db);
  await sql`
    update ${id(schema, 'hard_state')} set term = 4, voted_for = 'n1', commit_index = 2
  `.execute(db);
  await sql`
    insert into ${id(schema, 'log_entry')} (index, term, type, data)
    values (1, 2, 'noop', ''::bytea), (2, 3, 'noop', ''::bytea), (3, 4, 'noop', ''::bytea)
  `.execute(db);
}

async function startNode(logStore: PostgresLogStore) {
  return RaftNode.start({
    id: 'n1',
    config: { voters: ['n1'] },
    logStore,
    stateMachine: new KvStateMachine(),
    snapshotStore: new MemorySnapshotStore(),
    transport: new InProcessNetwork().transport('n1'),
    tickMs: 10,
  });
}

describe('upgrading a database written before node identities', () => {
  it('keeps the hard state and the log, and the node makes its incarnation once, at its first start', async () => {
    const schema = 'raft_identity_upgrade';
    await writtenByPreviousVersion(schema);
    expect(await raftSchemaStatus({ db, schema })).toBe('outdated');

    const store = await PostgresLogStore.open({ db, schema }); // migrates to 0008
    expect(await raftSchemaStatus({ db, schema })).toBe('current');
    expect(await store.load()).toEqual({
      hardState: { term: 4, votedFor: 'n1', commitIndex: 2 },
      snapshot: { index: 0, term: 0 },
      lastIndex: 3,
    });

    const first = await startNode(store);
    const incarnation = first.status().identity.incarnation;
    expect(incarnation).toMatch(/^[0-9a-f]{32}$/);
    await expect.poll(() => first.status().role).toBe('leader');
    await first.propose({ op: 'put', key: 'k', value: 'v' });
    await first.close();

    const after = await (await PostgresLogStore.open({ db, schema })).load();
    expect(after.identity).toEqual({ clusterId: null, incarnation, members: {} });
    expect(after.hardState.term).toBeGreaterThan(4);
    expect(after.lastIndex).toBeGreaterThan(3);

    const second = await startNode(await PostgresLogStore.open({ db, schema }));
    expect(second.status().identity.incarnation).toBe(incarnation);
    await second.close();
  }, 60_000);
});

import { createTRPCClient, httpLink } from '@trpc/client';
import { initTRPC } from '@trpc/server';
import type { CommandOf, ResultMap, ResultOf } from '@tsraft/pg-storage';
import { type TestAppContext, TestCluster, testClusterFixture } from '@tsraft/testing';
import { createRaftProcedures, raftFailoverLink, raftSessionLink } from '@tsraft/trpc-transport';
import { sql } from 'kysely';
import pg from 'pg';
import { it as base, describe, expect } from 'vitest';
import { z } from 'zod';
import { type KvDatabase, type KvTableCommands, kvTableCommands } from './fixtures/kv-table.ts';

// @tsraft/testing as a user's test would use it: a cluster of an app's own commands and tRPC
// router, in-process RaftNodes over real HTTP on one real Postgres each (testcontainers, or
// embedded Postgres without Docker), faults through the helper, outcomes through its checks.

type Commands = KvTableCommands;

function kvApp({ node, db }: TestAppContext<Commands, KvDatabase>) {
  const raft = createRaftProcedures<CommandOf<Commands>, ResultOf<Commands>, ResultMap<Commands>>({
    node,
    command: z.object({ name: z.literal('put'), input: kvTableCommands.put.input }),
  });
  const t = initTRPC.create();
  const value = async (key: string): Promise<string | null> =>
    (await db.selectFrom('kv').select('value').where('key', '=', key).executeTakeFirst())?.value ??
    null;
  return {
    router: t.router({
      put: t.procedure
        .concat(raft.replicated)
        .input(kvTableCommands.put.input)
        .mutation(({ ctx, input }) => ctx.raft.propose({ name: 'put', input })),
      get: t.procedure
        .concat(raft.linearizableQuery)
        .input(z.object({ key: z.string() }))
        .query(({ input }) => value(input.key)),
    }),
  };
}
type KvRouter = ReturnType<typeof kvApp>['router'];

const options = {
  commands: kvTableCommands,
  tables: ['kv'],
  migrate: async (db: import('kysely').Kysely<KvDatabase>) => {
    await sql`create table kv (key text primary key, value text not null)`.execute(db);
  },
  app: kvApp,
};

const it = base.extend<{ cluster: TestCluster<Commands, KvDatabase, KvRouter> }>({
  cluster: testClusterFixture(options),
});

function clientOf(cluster: TestCluster<Commands, KvDatabase, KvRouter>) {
  return createTRPCClient<KvRouter>({
    links: [
      raftSessionLink({ maxAttempts: 50 }),
      raftFailoverLink({ nodes: cluster.appUrls, link: (url) => httpLink({ url }) }),
    ],
  });
}

describe('@tsraft/testing: a cluster of the app under test', () => {
  it('replicates writes to every node, and a killed leader restarts and catches up', async ({
    cluster,
  }) => {
    const kv = clientOf(cluster);
    for (let i = 0; i < 5; i++) await kv.put.mutate({ key: `k${i}`, value: `v${i}` });
    await cluster.expectConverged();
    expect(await cluster.tableRows('n2', 'kv')).toHaveLength(5);

    const leader = await cluster.leader();
    await cluster.kill(leader.id);
    expect(cluster.member(leader.id).node).toBeUndefined();
    for (let i = 5; i < 10; i++) await kv.put.mutate({ key: `k${i}`, value: `v${i}` });
    const next = await cluster.leader();
    expect(next.id).not.toBe(leader.id);
    expect(await cluster.tableRows(leader.id, 'kv')).toHaveLength(5);

    await cluster.restart(leader.id);
    await cluster.expectConverged();
    expect(await cluster.tableRows(leader.id, 'kv')).toHaveLength(10);
    expect(await kv.get.query({ key: 'k9' })).toBe('v9');
  });

  it('an isolated follower misses writes until the partition heals', async ({ cluster }) => {
    const kv = clientOf(cluster);
    await kv.put.mutate({ key: 'before', value: '1' });
    await cluster.expectConverged();
    const leader = await cluster.leader();
    const follower = cluster.ids.find((id) => id !== leader.id) as string;
    cluster.isolate(follower);
    await kv.put.mutate({ key: 'during', value: '2' });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await cluster.tableRows(follower, 'kv')).toHaveLength(1);
    expect(await cluster.compareTables()).not.toEqual([]);

    cluster.heal();
    await cluster.expectConverged();
    expect(await cluster.tableRows(follower, 'kv')).toHaveLength(2);
  });

  it('compareTables reports a row written around Raft on one node', async ({ cluster }) => {
    const kv = clientOf(cluster);
    await kv.put.mutate({ key: 'a', value: '1' });
    await cluster.waitForConvergence();
    expect(await cluster.compareTables()).toEqual([]);
    await sql`update kv set value = 'tampered' where key = 'a'`.execute(cluster.member('n3').db);
    const differences = await cluster.compareTables();
    expect(differences).toHaveLength(1);
    expect(differences[0]).toMatch(/^kv: n3 has 1 rows, n1 has 1 \(first difference: .*tampered/);
    await expect(cluster.expectConverged()).rejects.toThrow(/the nodes' tables differ/);
  });

  it('a minority side elects no leader; the majority side goes on', async ({ cluster }) => {
    const kv = clientOf(cluster);
    await kv.put.mutate({ key: 'x', value: '1' });
    const leader = await cluster.leader();
    const [a, b] = cluster.ids.filter((id) => id !== leader.id) as [string, string];
    cluster.partition([leader.id], [a, b]);
    // The old leader may still believe it leads, in its old term; the majority elects a newer one.
    await expect
      .poll(async () => (await cluster.leader()).id, { timeout: 15_000 })
      .not.toBe(leader.id);
    expect([a, b]).toContain((await cluster.leader()).id);
    cluster.heal();
    await kv.put.mutate({ key: 'y', value: '2' });
    await cluster.expectConverged();
  });

  base('disposing leaves no node, proxy or Postgres server running', async () => {
    const cluster = await TestCluster.start({ ...options, size: 2 });
    const url = cluster.member('n1').postgres.url;
    const appUrl = cluster.member('n1').appUrl;
    await cluster.leader();
    await cluster[Symbol.asyncDispose]();
    await expect(fetch(appUrl)).rejects.toThrow();
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
    await expect(client.connect()).rejects.toThrow();
    await cluster[Symbol.asyncDispose]();
  });

  base('refuses a bad size clearly', async () => {
    await expect(TestCluster.start({ ...options, size: 0 })).rejects.toThrow(
      /size must be a positive integer, got 0/,
    );
  });
});

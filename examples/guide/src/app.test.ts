import { type TestCluster, testClusterFixture } from '@tsraft/testing';
import { raftErrorOf } from '@tsraft/trpc-transport/client';
import { it as base, expect } from 'vitest';
import { type AppRouter, createAppRouter } from './app-router.ts';
import { createBankClient } from './client.ts';
import { type Commands, commands, createTables, type Database, TABLES } from './commands.ts';

// Each test gets a fresh 3-node cluster of this app, one Postgres per node, disposed afterwards.
const it = base.extend<{ cluster: TestCluster<Commands, Database, AppRouter> }>({
  cluster: testClusterFixture({
    commands,
    tables: TABLES,
    migrate: createTables,
    app: ({ node, db }) => ({
      router: createAppRouter({ node, db }).router,
      createContext: () => ({ admin: true }),
    }),
  }),
});

it('transfers exactly once, through the loss of the leader', async ({ cluster }) => {
  const bank = createBankClient(cluster.appUrls);
  await bank.open.mutate({ id: 'alice', initial: 100 });
  await bank.open.mutate({ id: 'bob', initial: 0 });

  const leader = await cluster.leader();
  await cluster.kill(leader.id);
  for (let i = 0; i < 3; i++) await bank.transfer.mutate({ from: 'alice', to: 'bob', amount: 10 });
  await cluster.restart(leader.id);

  await cluster.expectConverged();
  expect(await bank.balance.query({ id: 'bob' })).toBe(30);
});

it('refuses an overdraft on every node alike', async ({ cluster }) => {
  const bank = createBankClient(cluster.appUrls);
  await bank.open.mutate({ id: 'carol', initial: 5 });
  const refused = await bank.transfer
    .mutate({ from: 'carol', to: 'carol', amount: 50 })
    .catch((e) => e);
  expect(raftErrorOf(refused)?.commandCode).toBe('insufficient_funds');
  await cluster.expectConverged();
  expect(await cluster.tableRows('n1', 'accounts')).toEqual([
    JSON.stringify({ id: 'carol', balance: 5 }),
  ]);
});

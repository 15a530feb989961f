import { randomBytes } from 'node:crypto';
import { createTRPCClient, httpLink } from '@trpc/client';
import { pickLoopbackPort } from '@tsraft/core/testing';
import { selectProvider } from '@tsraft/testing';
import { expect, it } from 'vitest';
import type { AppRouter } from './app-router.ts';
import { createBankClient } from './client.ts';
import { startNode } from './node.ts';

// The guide's server wiring as it runs in production, one node per "host" (here: per port, each
// with its own Postgres server), written to through the guide's client.
it("the guide's nodes form a cluster that serves the app, reads and the admin router", async () => {
  const provider = await selectProvider({ log: () => {} });
  await using pg1 = await provider.start();
  await using pg2 = await provider.start();
  await using pg3 = await provider.start();
  const servers = { n1: pg1, n2: pg2, n3: pg3 };
  const ports = {
    n1: await pickLoopbackPort(),
    n2: await pickLoopbackPort(),
    n3: await pickLoopbackPort(),
  };
  const peers = Object.fromEntries(
    Object.entries(ports).map(([id, port]) => [id, `http://127.0.0.1:${port}`]),
  );
  const secret = randomBytes(24).toString('base64url');
  const adminToken = randomBytes(12).toString('hex');
  const metricsPort = await pickLoopbackPort();
  const nodes = await Promise.all(
    (['n1', 'n2', 'n3'] as const).map((id) =>
      startNode({
        ...(id === 'n1' ? { metricsPort } : {}),
        id,
        peers,
        secret,
        databaseUrl: servers[id].url,
        host: '127.0.0.1',
        port: ports[id],
        adminToken,
      }),
    ),
  );
  try {
    const urls = Object.fromEntries(Object.entries(peers).map(([id, url]) => [id, `${url}/trpc`]));
    const bank = createBankClient(urls);
    expect(await bank.hello.query()).toBe('hello');
    expect(await bank.open.mutate({ id: 'alice', initial: 100 })).toEqual({
      id: 'alice',
      balance: 100,
    });
    await bank.open.mutate({ id: 'bob', initial: 0 });
    expect(await bank.transfer.mutate({ from: 'alice', to: 'bob', amount: 25 })).toEqual({
      from: 75,
      to: 25,
    });
    expect(await bank.balance.query({ id: 'bob' })).toBe(25);

    const admin = (token: string) =>
      createTRPCClient<AppRouter>({
        links: [
          httpLink({ url: urls.n2 as string, headers: { authorization: `Bearer ${token}` } }),
        ],
      });
    const status = await admin(adminToken).raftAdmin.status.query();
    expect(status.id).toBe('n2');
    // A follower applies an entry once it learns the commit index, which may come after the
    // leader answered the write: wait for n2 to apply the three writes above.
    await expect
      .poll(async () => (await admin(adminToken).raftAdmin.status.query()).appliedIndex, {
        timeout: 10_000,
      })
      .toBeGreaterThanOrEqual(3);
    await expect(admin('wrong').raftAdmin.status.query()).rejects.toThrow(/not allowed/);

    // Prometheus' view of n1 (step 8): its term and commit index, as n1 reports them.
    const scraped = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const n1 = nodes[0]?.supervisor.status();
    const term = n1?.state === 'running' ? n1.term : -1;
    expect(scraped).toMatch(new RegExp(`^raft_term\\{[^}]*raft_node="n1"[^}]*\\} ${term}`, 'm'));
    expect(scraped).toMatch(/^raft_commit_index\{[^}]*raft_node="n1"/m);
    expect(scraped).toMatch(/^raft_apply_duration/m);
  } finally {
    await Promise.all(nodes.map((node) => node.close()));
  }
});

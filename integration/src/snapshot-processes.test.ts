import type { StoredSnapshot } from '@tsraft/core';
import { pickLoopbackPort } from '@tsraft/core/testing';
import { type PostgresServer, selectProvider } from '@tsraft/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PgNodeProcess } from './fixtures/pg-node-process.ts';

// A large snapshot between two node processes, each on its own real Postgres, over the tRPC
// peer transport with its default limits (request bodies up to 64 MiB; pieces of 4 MiB).

const MiB = 1024 * 1024;
let servers: PostgresServer[] = [];

beforeAll(async () => {
  const provider = await selectProvider();
  servers = await Promise.all([provider.start(), provider.start()]);
});

afterAll(async () => {
  await Promise.all(servers.map((server) => server[Symbol.asyncDispose]()));
});

async function query<T>(url: string, text: string): Promise<T | undefined> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(text)).rows[0] as T | undefined;
  } finally {
    await client.end();
  }
}

/** A checksum of a node's `kv` table (a hash per row, hashed in key order). */
async function checksum(url: string): Promise<string | undefined> {
  const row = await query<{ sum: string }>(
    url,
    `select md5(string_agg(md5(key || '=' || value), '' order by key)) as sum from kv`,
  );
  return row?.sum;
}

describe('a snapshot of 200 MiB between node processes', () => {
  it('reaches a learner with the default limits; the learner killed in the middle of installing it recovers from its own store', async () => {
    const [leaderServer, learnerServer] = servers as [PostgresServer, PostgresServer];
    const peers = {
      n1: `http://127.0.0.1:${await pickLoopbackPort()}`,
      n2: `http://127.0.0.1:${await pickLoopbackPort()}`,
    };
    const config = { voters: ['n1'], learners: ['n2'] };
    await using leader = await PgNodeProcess.spawn({
      id: 'n1',
      peers,
      databaseUrl: leaderServer.url,
      config,
      fillBytes: 200 * MiB,
    });
    await expect.poll(async () => (await leader.status()).role, { timeout: 10_000 }).toBe('leader');
    await leader
      .client()
      .mutation('execute', { name: 'put', input: { key: 'last', value: 'one' } });
    const snapshot = (await leader.client().mutation('raftAdmin.takeSnapshot')) as StoredSnapshot;
    expect(snapshot.size).toBeGreaterThan(200 * MiB);

    const learner = await PgNodeProcess.spawn({
      id: 'n2',
      peers,
      databaseUrl: learnerServer.url,
      config,
    });
    await learner.waitFor((line) => line.event === 'received', 300_000, 'the whole snapshot');
    // It holds the whole snapshot, checked, and restores it now: a crash in the middle.
    await new Promise((resolve) => setTimeout(resolve, 300));
    await learner.kill();
    const applied = await query<{ index: string }>(
      learnerServer.url,
      'select index from raft.applied_state',
    );
    expect(Number(applied?.index)).toBeLessThan(snapshot.index);

    await using restarted = await PgNodeProcess.spawn({
      id: 'n2',
      peers,
      databaseUrl: learnerServer.url,
      config,
    });
    await expect
      .poll(async () => (await restarted.status()).appliedIndex, {
        timeout: 120_000,
        interval: 500,
      })
      .toBeGreaterThanOrEqual(snapshot.index);
    await leader
      .client()
      .mutation('execute', { name: 'put', input: { key: 'after', value: 'it' } });
    await expect
      .poll(() => restarted.client().query('getLocal', { key: 'after' }), { timeout: 10_000 })
      .toBe('it');
    expect(await checksum(learnerServer.url)).toBe(await checksum(leaderServer.url));
  });
});

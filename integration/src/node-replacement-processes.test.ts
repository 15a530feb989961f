import type { ClusterConfig, NodeId, RaftNodeStatus } from '@tsraft/core';
import { pickLoopbackPort } from '@tsraft/core/testing';
import { type PostgresServer, selectProvider } from '@tsraft/testing';
import { raftErrorOf } from '@tsraft/trpc-transport';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PgNodeProcess } from './fixtures/pg-node-process.ts';

/**
 * The runbook of the core README, "Replacing a node", carried out on a 3-node cluster of OS
 * processes, each on its own Postgres, under writes: a follower loses its disk (killed, its
 * database emptied), is removed, starts again on empty storage, is added back as a learner to
 * promote, catches up through a snapshot (the leader compacted its log meanwhile), and becomes a
 * voter that the cluster then needs for its majority.
 */

const IDS: readonly NodeId[] = ['n1', 'n2', 'n3'];
/** The compaction policy of every node: a snapshot every 20 applied entries, 5 kept behind. */
const POLICY = { afterEntries: 20, retainEntries: 5 };

const servers = new Map<NodeId, PostgresServer>();
const databases: Record<NodeId, string> = {};
const peers: Record<NodeId, string> = {};
const nodes = new Map<NodeId, PgNodeProcess>();

beforeAll(async () => {
  const provider = await selectProvider();
  const started = await Promise.all(IDS.map(() => provider.start()));
  for (const [i, id] of IDS.entries()) {
    const server = started[i] as PostgresServer;
    servers.set(id, server);
    databases[id] = await emptyDatabase(server, `runbook_${id}`);
    peers[id] = `http://127.0.0.1:${await pickLoopbackPort()}`;
  }
});

afterAll(async () => {
  for (const node of nodes.values()) await node.kill();
  for (const server of servers.values()) await server[Symbol.asyncDispose]();
});

async function onServer(url: string, text: string): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await client.query(text);
  } finally {
    await client.end();
  }
}

/** (Re)creates database `name` on `server`, empty: a new disk. Returns its URL. */
async function emptyDatabase(server: PostgresServer, name: string): Promise<string> {
  await onServer(server.url, `drop database if exists ${name} with (force)`);
  await onServer(server.url, `create database ${name}`);
  const url = new URL(server.url);
  url.pathname = `/${name}`;
  return url.toString();
}

async function spawn(id: NodeId, config: ClusterConfig): Promise<PgNodeProcess> {
  const node = await PgNodeProcess.spawn({
    id,
    peers,
    databaseUrl: databases[id] as string,
    config,
    policy: POLICY,
  });
  nodes.set(id, node);
  return node;
}

/** The leader of the highest term among the running nodes, once there is one. */
async function leader(): Promise<RaftNodeStatus> {
  let found: RaftNodeStatus | undefined;
  await expect
    .poll(
      async () => {
        const answers = await Promise.allSettled([...nodes.values()].map((n) => n.status()));
        found = answers
          .flatMap((a) => (a.status === 'fulfilled' && a.value.role === 'leader' ? [a.value] : []))
          .sort((a, b) => b.term - a.term)[0];
        return found !== undefined;
      },
      { timeout: 20_000, interval: 50 },
    )
    .toBe(true);
  return found as RaftNodeStatus;
}

/** An admin call on the current leader, repeated while it fails in a retryable way. */
async function onLeader<T>(path: string, input?: unknown): Promise<T> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const current = nodes.get((await leader()).id) as PgNodeProcess;
    try {
      return (await current.client().mutation(path, input)) as T;
    } catch (error) {
      if (raftErrorOf(error)?.retryable !== true || Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

/** Writes `w<i>` = `<i>` one at a time through the current leader until stopped. */
function startWriter() {
  const acknowledged = new Map<string, string>();
  let stop = false;
  const done = (async () => {
    for (let i = 0; !stop; i++) {
      try {
        const current = nodes.get((await leader()).id) as PgNodeProcess;
        await current
          .client()
          .mutation('execute', { name: 'put', input: { key: `w${i}`, value: String(i) } });
        acknowledged.set(`w${i}`, String(i));
      } catch {
        // Unknown outcome: the key is not counted; the next write has a key of its own.
      }
    }
  })();
  return {
    acknowledged,
    /** Waits until `more` writes past those acknowledged so far are acknowledged. */
    progress: async (more: number) => {
      const want = acknowledged.size + more;
      await expect.poll(() => acknowledged.size, { timeout: 60_000 }).toBeGreaterThanOrEqual(want);
    },
    stop: async () => {
      stop = true;
      await done;
    },
  };
}

async function rows(id: NodeId): Promise<Map<string, string>> {
  const result = await onServer(databases[id] as string, `select key, value from kv`);
  return new Map(result.rows.map((row: { key: string; value: string }) => [row.key, row.value]));
}

describe('replacing a node that lost its disk (core README runbook), as OS processes on Postgres', () => {
  it('removes it, starts it on empty storage, adds it back as a learner that catches up through a snapshot and is promoted; it then counts toward the majority', async () => {
    for (const id of IDS) await spawn(id, { voters: [...IDS] });
    const writer = startWriter();
    await writer.progress(20);

    // The disk of a follower dies: the process is killed and its database is gone.
    const first = await leader();
    const lost = IDS.find((id) => id !== first.id) as NodeId;
    await nodes.get(lost)?.kill();
    nodes.delete(lost);
    databases[lost] = await emptyDatabase(servers.get(lost) as PostgresServer, `runbook_${lost}`);
    // The others go on, and compact their logs: the entries the replacement needs are gone.
    await writer.progress(40);
    await expect
      .poll(async () => (await leader()).snapshotIndex, { timeout: 30_000 })
      .toBeGreaterThan(20);

    // 1. The others still form a majority: the leader sees the lost node's progress stall.
    const before = await leader();
    expect(Object.keys(before.progress)).toContain(lost);
    // 2. Remove it.
    const rest = IDS.filter((id) => id !== lost);
    const removed = await onLeader<ClusterConfig>('raftAdmin.removeNode', { id: lost });
    expect([...removed.voters].sort()).toEqual(rest);
    // 3. Start the replacement on empty storage, bootstrapping from the current voters.
    const replacement = await spawn(lost, { voters: rest });
    // 4. Add it back as a learner that is promoted by itself.
    await onLeader('raftAdmin.addLearner', { id: lost, url: peers[lost], promote: true });
    await replacement.waitFor(
      (line) => line.event === 'snapshot' && line.cause === 'installed',
      60_000,
      'an installed snapshot',
    );
    // 5. It is a voter again, and the configuration is not joint.
    await expect
      .poll(
        async () => {
          const status = await leader();
          return !status.joint && [...status.config.voters].sort().join() === IDS.join();
        },
        { timeout: 30_000 },
      )
      .toBe(true);
    expect((await leader()).config.learners ?? []).toEqual([]);
    await writer.progress(10);

    // It counts: with the other original follower gone, the leader and the replacement commit.
    const lead = (await leader()).id;
    const other = IDS.find((id) => id !== lead && id !== lost) as NodeId;
    await nodes.get(other)?.kill();
    nodes.delete(other);
    await writer.progress(10);
    await writer.stop();

    // Every acknowledged write is on the leader and on the replacement, with its value.
    const { commitIndex } = await leader();
    await expect
      .poll(async () => (await replacement.status()).appliedIndex, { timeout: 30_000 })
      .toBeGreaterThanOrEqual(commitIndex);
    for (const id of [lead, lost]) {
      const held = await rows(id);
      const missing = [...writer.acknowledged].filter(([key, value]) => held.get(key) !== value);
      expect(missing, `${id} lacks acknowledged writes`).toEqual([]);
    }
  });
});

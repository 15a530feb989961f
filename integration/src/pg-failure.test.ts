import {
  type NodeId,
  NodeRecoveringError,
  type RaftSupervisorEvents,
  StorageError,
} from '@tsraft/core';
import { type TestCluster, type TestRaftSupervisor, testClusterFixture } from '@tsraft/testing';
import { sql } from 'kysely';
import { it as base, describe, expect } from 'vitest';
import { type KvDatabase, type KvTableCommands, kvTableCommands } from './fixtures/kv-table.ts';

// A node's Postgres dies under it, in a TestCluster whose nodes run under RaftSupervisors (as a
// deployed node does): each on its own real Postgres, talking tRPC over loopback HTTP.

type Commands = KvTableCommands;
type Cluster = TestCluster<Commands, KvDatabase>;

const it = base.extend<{ cluster: Cluster }>({
  cluster: testClusterFixture({
    commands: kvTableCommands,
    tables: ['kv'],
    migrate: async (db) => {
      await sql`create table kv (key text primary key, value text not null)`.execute(db);
    },
    node: { tickMs: 10 },
    supervise: { backoff: { initialMs: 100, maxMs: 1_000 } },
  }),
});

async function until<T>(
  what: string,
  probe: () => T | undefined | Promise<T | undefined>,
  ms = 20_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

function supervisorOf(cluster: Cluster, id: NodeId): TestRaftSupervisor<Commands> {
  const supervisor = cluster.member(id).supervisor;
  if (supervisor === undefined) throw new Error(`node ${id} has no supervisor`);
  return supervisor;
}

/** Proposes `put key` with a session until some leader acknowledges it (exactly-once retries). */
async function put(cluster: Cluster, key: string, seq: number): Promise<void> {
  const session = { clientId: 'writer', seq };
  await until(`an acknowledged write of ${key}`, async () => {
    const leader = await cluster.leader();
    try {
      await supervisorOf(cluster, leader.id).propose(
        { name: 'put', input: { key, value: `v-${key}` } },
        { session },
      );
      return true;
    } catch {
      return undefined;
    }
  });
}

async function keys(cluster: Cluster, id: NodeId): Promise<string[]> {
  const rows = await cluster.tableRows(id, 'kv');
  return rows.map((row) => (JSON.parse(row) as { key: string }).key).sort();
}

function nextEvent<E extends keyof RaftSupervisorEvents>(
  supervisor: TestRaftSupervisor<Commands>,
  event: E,
): Promise<RaftSupervisorEvents[E]> {
  return new Promise((resolve) => {
    supervisor.once(event, (...args) => resolve(args));
  });
}

describe("a node's Postgres goes away", () => {
  it('stops the leader with a StorageError, a new leader takes over, writes continue, nothing acknowledged is lost; once Postgres is back, the node recovers by itself and catches up', async ({
    cluster,
  }) => {
    const acknowledged: string[] = [];
    let seq = 0;
    for (let i = 0; i < 20; i++) {
      const key = `before-${String(i).padStart(2, '0')}`;
      await put(cluster, key, ++seq);
      acknowledged.push(key);
    }
    const { id: oldId, postgres } = await cluster.leader();
    const old = supervisorOf(cluster, oldId);
    let fatal: Error | undefined;
    old.on('fatal', ({ error }) => {
      fatal = error;
    });
    const restartFailed = nextEvent(old, 'restart-failed');
    const recovered = nextEvent(old, 'recovered');
    await postgres.kill();

    // The next write makes the leader persist: Postgres refuses, the node stops (fatal).
    const started = Date.now();
    for (let i = 0; i < 20; i++) {
      const key = `after-${String(i).padStart(2, '0')}`;
      await put(cluster, key, ++seq);
      acknowledged.push(key);
    }
    const failoverMs = Date.now() - started;
    expect(fatal).toBeInstanceOf(StorageError);
    // While its Postgres is down, the node neither leads nor acknowledges: calls fail at once
    // with a retryable error whose cause is the storage error.
    expect(old.status().state).toBe('recovering');
    expect(cluster.member(oldId).node).toBeUndefined();
    const refused = await old
      .propose({ name: 'put', input: { key: 'x', value: 'x' } })
      .catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(NodeRecoveringError);
    expect((refused as NodeRecoveringError).retryable).toBe(true);
    expect((refused as NodeRecoveringError).cause).toBeInstanceOf(StorageError);
    const { id: newId } = await cluster.leader();
    expect(newId).not.toBe(oldId);
    console.info(
      `[pg-failure] ${oldId}'s Postgres killed; ${newId} leads; 20 writes in ${failoverMs} ms`,
    );

    // The survivors (the running nodes) applied every acknowledged write, and agree.
    await cluster.expectConverged({ timeoutMs: 20_000 });
    for (const id of cluster.ids.filter((id) => id !== oldId)) {
      expect(await keys(cluster, id)).toEqual([...acknowledged].sort());
    }

    // The supervisor keeps trying while Postgres is down, and keeps failing.
    const [{ attempt: failedAttempt }] = await restartFailed;
    expect(failedAttempt).toBe(1);
    expect(old.status().state).toBe('recovering');

    // Postgres comes back; nobody touches the node: its supervisor restarts it from its stores.
    const restarting = Date.now();
    await postgres.restart();
    const [{ attempts, downtimeMs }] = await recovered;
    console.info(
      `[pg-failure] ${oldId} recovered by itself ${Date.now() - restarting} ms after server.restart() was called (${attempts} tries, ${downtimeMs} ms down)`,
    );
    expect(old.status().state).toBe('running');
    await put(cluster, 'after-recovery', ++seq);
    acknowledged.push('after-recovery');
    await cluster.expectConverged({ timeoutMs: 20_000 });
    expect(await keys(cluster, oldId)).toEqual([...acknowledged].sort());
  });
});

import { type NodeId, RaftNode, StorageError } from '@tsraft/core';
import { InProcessNetwork } from '@tsraft/core/testing';
import {
  type CommandOf,
  createPostgresStateMachine,
  defineCommand,
  PostgresLogStore,
  PostgresSnapshotStore,
  type PostgresStateMachine,
  type ResultOf,
} from '@tsraft/pg-storage';
import { Kysely, PostgresDialect, sql, type Transaction } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { type PostgresServer, selectProvider } from './postgres/index.ts';

interface Database {
  kv: { key: string; value: string };
}

const commands = {
  put: defineCommand({
    input: z.object({ key: z.string(), value: z.string() }),
    handler: async (trx: Transaction<Database>, input) => {
      await trx
        .insertInto('kv')
        .values(input)
        .onConflict((oc) => oc.column('key').doUpdateSet({ value: input.value }))
        .execute();
      return { key: input.key };
    },
  }),
};
type Commands = typeof commands;
type KvNode = RaftNode<CommandOf<Commands>, ResultOf<Commands>>;

interface Member {
  server: PostgresServer;
  db: Kysely<Database>;
  machine: PostgresStateMachine<Commands>;
  node: KvNode;
  fatal: Error | undefined;
}

const IDS: readonly NodeId[] = ['n1', 'n2', 'n3'];
const network = new InProcessNetwork();
const members = new Map<NodeId, Member>();

/** A Kysely on a pg Pool that follows `server.url` and fails fast when Postgres is gone. */
function connect(server: PostgresServer): Kysely<Database> {
  class FollowingClient extends pg.Client {
    constructor(config?: pg.ClientConfig) {
      super({ ...config, connectionString: server.url });
    }
  }
  const pool = new pg.Pool({
    Client: FollowingClient,
    connectionString: server.url,
    max: 4,
    connectionTimeoutMillis: 2_000,
    query_timeout: 5_000,
    statement_timeout: 5_000,
  });
  pool.on('error', () => {});
  return new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
}

/** Starts node `id` from whatever its Postgres holds. */
async function startNode(id: NodeId, server: PostgresServer): Promise<Member> {
  const db = connect(server);
  await sql`create table if not exists kv (key text primary key, value text not null)`.execute(db);
  const machine = await createPostgresStateMachine({ db, commands, tables: ['kv'] });
  const node = await RaftNode.start({
    id,
    config: { voters: [...IDS] },
    logStore: await PostgresLogStore.open({ db }),
    snapshotStore: await PostgresSnapshotStore.open({ db }),
    stateMachine: machine,
    transport: network.transport(id),
    tickMs: 10,
  });
  const started: Member = { server, db, machine, node, fatal: undefined };
  node.on('fatal', ({ error }) => {
    started.fatal = error;
  });
  members.set(id, started);
  return started;
}

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

function leader(): Promise<[NodeId, Member]> {
  return until('a leader', () => {
    for (const entry of members) {
      const status = entry[1].node.status();
      if (!status.closed && status.role === 'leader') return entry;
    }
    return undefined;
  });
}

/** Proposes `put key` with a session until some leader acknowledges it (exactly-once retries). */
async function put(key: string, seq: number): Promise<void> {
  const session = { clientId: 'writer', seq };
  await until(`an acknowledged write of ${key}`, async () => {
    const [, m] = await leader();
    try {
      await m.machine.propose(m.node, 'put', { key, value: `v-${key}` }, { session });
      return true;
    } catch {
      return undefined;
    }
  });
}

async function keys(db: Kysely<Database>): Promise<string[]> {
  const rows = await db.selectFrom('kv').select('key').orderBy('key').execute();
  return rows.map((row) => row.key);
}

beforeAll(async () => {
  const provider = await selectProvider();
  const servers = await Promise.all(IDS.map(() => provider.start()));
  await Promise.all(IDS.map((id, i) => startNode(id, servers[i] as PostgresServer)));
});

afterAll(async () => {
  for (const m of members.values()) {
    await m.node.close();
    await m.db.destroy().catch(() => {});
    await m.server[Symbol.asyncDispose]();
  }
});

describe("a node's Postgres goes away", () => {
  it('stops the leader with a StorageError, a new leader takes over, writes continue, nothing acknowledged is lost; restarted, the node catches up', async () => {
    const acknowledged: string[] = [];
    let seq = 0;
    for (let i = 0; i < 20; i++) {
      const key = `before-${String(i).padStart(2, '0')}`;
      await put(key, ++seq);
      acknowledged.push(key);
    }
    const [oldId, old] = await leader();
    await old.server.kill();

    // The next write makes the leader persist: Postgres refuses, the node stops (fatal).
    const started = Date.now();
    for (let i = 0; i < 20; i++) {
      const key = `after-${String(i).padStart(2, '0')}`;
      await put(key, ++seq);
      acknowledged.push(key);
    }
    const failoverMs = Date.now() - started;
    expect(old.node.status().closed).toBe(true);
    expect(old.fatal).toBeInstanceOf(StorageError);
    const [newId, fresh] = await leader();
    expect(newId).not.toBe(oldId);
    console.info(
      `[pg-failure] ${oldId}'s Postgres killed; ${newId} leads; 20 writes in ${failoverMs} ms`,
    );

    const survivors = IDS.filter((id) => id !== oldId).map((id) => members.get(id) as Member);
    const commit = fresh.node.status().commitIndex;
    await until('the survivors to apply', () =>
      survivors.every((m) => m.node.status().appliedIndex >= commit) ? true : undefined,
    );
    for (const m of survivors) expect(await keys(m.db)).toEqual([...acknowledged].sort());

    // Postgres comes back; the node is restarted from its stores and catches up.
    await old.server.restart();
    await old.node.close();
    await old.db.destroy().catch(() => {});
    const restarted = await startNode(oldId, old.server);
    await put('after-restart', ++seq);
    acknowledged.push('after-restart');
    const finalCommit = (await leader())[1].node.status().commitIndex;
    await until('the restarted node to catch up', () =>
      restarted.node.status().appliedIndex >= finalCommit ? true : undefined,
    );
    expect(await keys(restarted.db)).toEqual([...acknowledged].sort());
  });
});

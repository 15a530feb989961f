import {
  type NodeId,
  NodeRecoveringError,
  RaftSupervisor,
  type RaftSupervisorEvents,
  StorageError,
} from '@tsraft/core';
import { InProcessNetwork } from '@tsraft/core/testing';
import {
  type CommandOf,
  createPostgresStateMachine,
  guardPoolErrors,
  PostgresLogStore,
  PostgresSnapshotStore,
  type PostgresStateMachine,
  type ResultOf,
} from '@tsraft/pg-storage';
import { type PostgresServer, selectProvider } from '@tsraft/testing';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type KvDatabase, kvTableCommands } from './fixtures/kv-table.ts';

type Database = KvDatabase;
const commands = kvTableCommands;
type Commands = typeof commands;
type KvSupervisor = RaftSupervisor<CommandOf<Commands>, ResultOf<Commands>>;

interface Member {
  server: PostgresServer;
  /** The running incarnation's pool and state machine (a new one per incarnation). */
  db: Kysely<Database>;
  machine: PostgresStateMachine<Commands>;
  supervisor: KvSupervisor;
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
  guardPoolErrors(pool); // a lost Postgres fails calls, never the process
  return new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
}

/**
 * Runs node `id` under a supervisor: each incarnation opens a new pool, state machine, stores
 * and transport over the same Postgres (whatever it holds), and the supervisor starts a new
 * incarnation by itself whenever the node stops on a fatal error (its Postgres went away).
 */
async function superviseNode(id: NodeId, server: PostgresServer): Promise<Member> {
  const member = {} as Member;
  member.server = server;
  member.supervisor = await RaftSupervisor.start<CommandOf<Commands>, ResultOf<Commands>>({
    backoff: { initialMs: 100, maxMs: 1_000 },
    open: async ({ signal }) => {
      const db = connect(server);
      try {
        await sql`create table if not exists kv (key text primary key, value text not null)`.execute(
          db,
        );
        const machine = await createPostgresStateMachine({ db, commands, tables: ['kv'] });
        const options = {
          id,
          config: { voters: [...IDS] },
          logStore: await PostgresLogStore.open({ db, signal }),
          snapshotStore: await PostgresSnapshotStore.open({ db, signal }),
          stateMachine: machine,
          transport: network.transport(id),
          tickMs: 10,
          release: () => db.destroy().catch(() => {}),
        };
        member.db = db;
        member.machine = machine;
        return options;
      } catch (error) {
        await db.destroy().catch(() => {});
        throw error;
      }
    },
  });
  member.fatal = undefined;
  member.supervisor.on('fatal', ({ error }) => {
    member.fatal = error;
  });
  members.set(id, member);
  return member;
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
      const status = entry[1].supervisor.status();
      if (status.state === 'running' && !status.closed && status.role === 'leader') return entry;
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
      const command = m.machine.validateCommand({ name: 'put', input: { key, value: `v-${key}` } });
      await m.supervisor.propose(command, { session });
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
  await Promise.all(IDS.map((id, i) => superviseNode(id, servers[i] as PostgresServer)));
});

afterAll(async () => {
  for (const m of members.values()) {
    await m.supervisor.close();
    await m.server[Symbol.asyncDispose]();
  }
});

function nextEvent<E extends keyof RaftSupervisorEvents>(
  supervisor: KvSupervisor,
  event: E,
): Promise<RaftSupervisorEvents[E]> {
  return new Promise((resolve) => {
    supervisor.once(event, (...args) => resolve(args));
  });
}

describe("a node's Postgres goes away", () => {
  it('stops the leader with a StorageError, a new leader takes over, writes continue, nothing acknowledged is lost; once Postgres is back, the node recovers by itself and catches up', async () => {
    const acknowledged: string[] = [];
    let seq = 0;
    for (let i = 0; i < 20; i++) {
      const key = `before-${String(i).padStart(2, '0')}`;
      await put(key, ++seq);
      acknowledged.push(key);
    }
    const [oldId, old] = await leader();
    const restartFailed = nextEvent(old.supervisor, 'restart-failed');
    const recovered = nextEvent(old.supervisor, 'recovered');
    await old.server.kill();

    // The next write makes the leader persist: Postgres refuses, the node stops (fatal).
    const started = Date.now();
    for (let i = 0; i < 20; i++) {
      const key = `after-${String(i).padStart(2, '0')}`;
      await put(key, ++seq);
      acknowledged.push(key);
    }
    const failoverMs = Date.now() - started;
    expect(old.fatal).toBeInstanceOf(StorageError);
    // While its Postgres is down, the node neither leads nor acknowledges: calls fail at once
    // with a retryable error whose cause is the storage error.
    const down = old.supervisor.status();
    expect(down.state).toBe('recovering');
    expect(old.supervisor.node).toBeUndefined();
    const refused = await old.supervisor
      .propose(old.machine.validateCommand({ name: 'put', input: { key: 'x', value: 'x' } }))
      .catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(NodeRecoveringError);
    expect((refused as NodeRecoveringError).retryable).toBe(true);
    expect((refused as NodeRecoveringError).cause).toBeInstanceOf(StorageError);
    const [newId, fresh] = await leader();
    expect(newId).not.toBe(oldId);
    console.info(
      `[pg-failure] ${oldId}'s Postgres killed; ${newId} leads; 20 writes in ${failoverMs} ms`,
    );

    const survivors = IDS.filter((id) => id !== oldId).map((id) => members.get(id) as Member);
    const commit = fresh.supervisor.node?.status().commitIndex ?? Infinity;
    await until('the survivors to apply', () =>
      survivors.every((m) => (m.supervisor.node?.status().appliedIndex ?? 0) >= commit)
        ? true
        : undefined,
    );
    for (const m of survivors) expect(await keys(m.db)).toEqual([...acknowledged].sort());

    // The supervisor keeps trying while Postgres is down, and keeps failing.
    const [{ attempt: failedAttempt }] = await restartFailed;
    expect(failedAttempt).toBe(1);
    expect(old.supervisor.status().state).toBe('recovering');

    // Postgres comes back; nobody touches the node: its supervisor restarts it from its stores.
    const restarting = Date.now();
    await old.server.restart();
    const [{ attempts, downtimeMs }] = await recovered;
    console.info(
      `[pg-failure] ${oldId} recovered by itself ${Date.now() - restarting} ms after server.restart() was called (${attempts} tries, ${downtimeMs} ms down)`,
    );
    expect(old.supervisor.status().state).toBe('running');
    await put('after-recovery', ++seq);
    acknowledged.push('after-recovery');
    const finalCommit = (await leader())[1].supervisor.node?.status().commitIndex ?? Infinity;
    await until('the recovered node to catch up', () =>
      (old.supervisor.node?.status().appliedIndex ?? 0) >= finalCommit ? true : undefined,
    );
    expect(await keys(old.db)).toEqual([...acknowledged].sort());
  });
});

import type { NodeId, PeerResponse, RaftNodeEvents, SnapshotChunk, Transport } from '@tsraft/core';
import { RaftNode } from '@tsraft/core';
import { InProcessNetwork } from '@tsraft/core/testing';
import { CompactionPolicy } from '@tsraft/log-compaction';
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

// Log compaction and the chunked InstallSnapshot (Raft paper 7) between three RaftNodes in this
// process, each on its own real Postgres: a follower that missed more than the retained log
// catches up through the leader's snapshot, in pieces, then through the log; a cut transfer
// resumes; a damaged piece is refused. Each test runs on fresh databases of the three servers.

type Database = KvDatabase;
const commands = kvTableCommands;
type Commands = typeof commands;
type KvNode = RaftNode<CommandOf<Commands>, ResultOf<Commands>>;

const IDS: readonly NodeId[] = ['n1', 'n2', 'n3'];
const PIECE = 16 * 1024;
let servers: PostgresServer[] = [];
let databaseCounter = 0;

beforeAll(async () => {
  const provider = await selectProvider();
  servers = await Promise.all(IDS.map(() => provider.start()));
});

afterAll(async () => {
  await Promise.all(servers.map((server) => server[Symbol.asyncDispose]()));
});

/** Watches, cuts and damages the snapshot pieces nodes send. */
class PieceTap {
  readonly sent: { to: NodeId; chunk: SnapshotChunk }[] = [];
  /** Data pieces let through before the links cut; `undefined`: no cut. */
  cutAfter: number | undefined;
  /** Damage the n-th data piece (from 1), keeping its CRC-32. */
  corruptPiece: number | undefined;
  #pieces = 0;

  wrap(transport: Transport): Transport {
    return {
      listen: (handler) => transport.listen(handler),
      close: () => transport.close?.() ?? Promise.resolve(),
      request: (to, request, options): Promise<PeerResponse> => {
        if (request.type !== 'snapshot' || request.chunk.data.byteLength === 0) {
          return transport.request(to, request, options);
        }
        this.#pieces++;
        if (this.cutAfter !== undefined && this.#pieces > this.cutAfter) {
          return Promise.reject(new Error('the link is cut'));
        }
        let chunk = request.chunk;
        if (this.#pieces === this.corruptPiece) {
          const data = chunk.data.slice();
          data[100] = (data[100] ?? 0) ^ 0x20;
          chunk = { ...chunk, data };
        }
        this.sent.push({ to, chunk });
        return transport.request(to, { ...request, chunk }, options);
      },
    };
  }

  offsets(to: NodeId): number[] {
    return this.sent.filter((s) => s.to === to).map((s) => s.chunk.offset);
  }
}

interface Member {
  readonly db: Kysely<Database>;
  node: KvNode | undefined;
  machine: PostgresStateMachine<Commands> | undefined;
  policy: CompactionPolicy | undefined;
  readonly installed: RaftNodeEvents['snapshot'][0][];
  readonly refused: RaftNodeEvents['snapshot-refused'][0][];
}

/** Three nodes on fresh databases of the three servers, their requests through `tap`. */
class Cluster implements AsyncDisposable {
  readonly network = new InProcessNetwork();
  readonly members = new Map<NodeId, Member>();
  readonly #tap: PieceTap;
  readonly #policy: { afterEntries: number; retainEntries: number } | undefined;

  private constructor(
    tap: PieceTap,
    policy: { afterEntries: number; retainEntries: number } | undefined,
  ) {
    this.#tap = tap;
    this.#policy = policy;
  }

  static async start(
    tap: PieceTap,
    policy?: { afterEntries: number; retainEntries: number },
  ): Promise<Cluster> {
    const cluster = new Cluster(tap, policy);
    const name = `snapshots_${++databaseCounter}`;
    for (const [i, id] of IDS.entries()) {
      const server = servers[i] as PostgresServer;
      const admin = new pg.Client({ connectionString: server.url });
      await admin.connect();
      await admin.query(`create database ${name}`);
      await admin.end();
      const url = new URL(server.url);
      url.pathname = `/${name}`;
      const pool = new pg.Pool({ connectionString: url.toString(), max: 6 });
      guardPoolErrors(pool); // a lost Postgres fails calls, never the process
      const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
      await sql`create table kv (key text primary key, value text not null)`.execute(db);
      cluster.members.set(id, {
        db,
        node: undefined,
        machine: undefined,
        policy: undefined,
        installed: [],
        refused: [],
      });
    }
    for (const id of IDS) await cluster.startNode(id);
    return cluster;
  }

  member(id: NodeId): Member {
    return this.members.get(id) as Member;
  }

  async startNode(id: NodeId): Promise<KvNode> {
    const member = this.member(id);
    const machine = await createPostgresStateMachine({ db: member.db, commands, tables: ['kv'] });
    const node = await RaftNode.start<CommandOf<Commands>, ResultOf<Commands>>({
      id,
      config: { voters: [...IDS] },
      logStore: await PostgresLogStore.open({ db: member.db }),
      snapshotStore: await PostgresSnapshotStore.open({ db: member.db }),
      stateMachine: machine,
      transport: this.#tap.wrap(this.network.transport(id)),
      tickMs: 10,
      snapshotChunkBytes: PIECE,
      snapshotTimeoutMs: 2_000,
    });
    node.on('snapshot', (event) => {
      if (event.cause === 'installed') member.installed.push(event);
    });
    node.on('snapshot-refused', (event) => member.refused.push(event));
    member.node = node;
    member.machine = machine;
    if (this.#policy !== undefined) member.policy = CompactionPolicy.start(node, this.#policy);
    return node;
  }

  async stopNode(id: NodeId): Promise<void> {
    const member = this.member(id);
    await member.policy?.stop();
    await member.node?.close();
    member.node = undefined;
  }

  async leader(): Promise<KvNode> {
    return until(
      'a leader',
      () => [...this.members.values()].find((m) => m.node?.status().role === 'leader')?.node,
    );
  }

  async put(key: string, value: string): Promise<void> {
    const leader = await this.leader();
    const machine = this.member(leader.id).machine as PostgresStateMachine<Commands>;
    await machine.propose(leader, 'put', { key, value });
  }

  async allApplied(): Promise<void> {
    const commit = (await this.leader()).status().commitIndex;
    await until('every running node to apply the commit index', () =>
      [...this.members.values()].every(
        (m) => m.node === undefined || m.node.status().appliedIndex >= commit,
      )
        ? true
        : undefined,
    );
  }

  /** A checksum of each node's `kv` table. */
  async checksums(): Promise<string[]> {
    return Promise.all(
      IDS.map(async (id) => {
        const { rows } = await sql<{ sum: string | null }>`
          select md5(string_agg(key || '=' || value, ',' order by key)) as sum from kv
        `.execute(this.member(id).db);
        return rows[0]?.sum ?? 'empty';
      }),
    );
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const id of IDS) await this.stopNode(id);
    for (const member of this.members.values()) await member.db.destroy();
  }
}

async function until<T>(
  what: string,
  probe: () => T | undefined | Promise<T | undefined>,
  ms = 30_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

const value = (i: number): string => `value ${i} `.repeat(40);

/** The follower that stays away while the others write and compact. */
const LAGGING = 'n3';

describe('log compaction and the chunked InstallSnapshot on real Postgres', () => {
  it('keeps the log bounded while writing; a follower that missed more than the kept log catches up through the snapshot, then the log, and its table equals the others', async () => {
    const tap = new PieceTap();
    await using cluster = await Cluster.start(tap, { afterEntries: 40, retainEntries: 10 });
    for (let i = 0; i < 20; i++) await cluster.put(`key-${i}`, value(i));
    await cluster.allApplied();
    await cluster.stopNode(LAGGING);
    let longest = 0;
    for (let i = 20; i < 320; i++) {
      await cluster.put(`key-${i % 150}`, value(i));
      const { lastIndex, firstIndex } = (await cluster.leader()).status();
      longest = Math.max(longest, lastIndex - firstIndex + 1);
    }
    // A snapshot every 40 applied entries, keeping 10: the log never grew much past 50.
    expect(longest).toBeLessThan(80);
    const leader = await cluster.leader();
    expect(leader.status().snapshotIndex).toBeGreaterThan(250);
    await cluster.startNode(LAGGING);
    await cluster.allApplied();
    expect(cluster.member(LAGGING).installed.length).toBeGreaterThanOrEqual(1);
    expect(tap.offsets(LAGGING).filter((offset) => offset > 0).length).toBeGreaterThan(0);
    // Then through the log.
    for (let i = 0; i < 5; i++) await cluster.put(`after-${i}`, value(i));
    await cluster.allApplied();
    const sums = await cluster.checksums();
    expect(new Set(sums).size, sums.join(' ')).toBe(1);
  });

  it('resumes a transfer cut halfway from the last acknowledged piece, also after the follower restarts', async () => {
    const tap = new PieceTap();
    await using cluster = await Cluster.start(tap);
    await cluster.stopNode(LAGGING);
    for (let i = 0; i < 300; i++) await cluster.put(`key-${i}`, value(i));
    await cluster.allApplied();
    for (const id of IDS.filter((id) => id !== LAGGING)) {
      await cluster.member(id).node?.takeSnapshot();
    }
    await cluster.put('after', 'the snapshot');
    expect((await cluster.leader()).status().snapshotIndex).toBeGreaterThan(300);
    tap.cutAfter = 3;
    await cluster.startNode(LAGGING);
    const store = await PostgresSnapshotStore.open({ db: cluster.member(LAGGING).db });
    await until('the follower to hold three pieces', async () =>
      (await store.partial())?.received === 3 * PIECE ? true : undefined,
    );
    // The follower restarts while the link is cut; its pieces are in its database.
    await cluster.stopNode(LAGGING);
    tap.cutAfter = undefined;
    await cluster.startNode(LAGGING);
    await cluster.allApplied();
    const offsets = tap.offsets(LAGGING);
    expect(offsets.slice(0, 4)).toEqual([0, PIECE, 2 * PIECE, 3 * PIECE]);
    expect(offsets.filter((offset) => offset === 0)).toHaveLength(1);
    const sums = await cluster.checksums();
    expect(new Set(sums).size, sums.join(' ')).toBe(1);
  });

  it('refuses a piece damaged on the way, changes nothing, and takes it again', async () => {
    const tap = new PieceTap();
    await using cluster = await Cluster.start(tap);
    await cluster.stopNode(LAGGING);
    for (let i = 0; i < 100; i++) await cluster.put(`key-${i}`, value(i));
    await cluster.allApplied();
    for (const id of IDS.filter((id) => id !== LAGGING)) {
      await cluster.member(id).node?.takeSnapshot();
    }
    tap.corruptPiece = 2;
    await cluster.startNode(LAGGING);
    await cluster.allApplied();
    const { refused } = cluster.member(LAGGING);
    expect(refused).toHaveLength(1);
    expect(refused[0]?.reason).toMatch(new RegExp(`piece at byte ${PIECE} fails its CRC-32`));
    expect(tap.offsets(LAGGING).filter((offset) => offset === PIECE)).toHaveLength(2);
    const sums = await cluster.checksums();
    expect(new Set(sums).size, sums.join(' ')).toBe(1);
  });
});

import { PGlite } from '@electric-sql/pglite';
import { CommandError, type NodeId, RaftNode } from '@tsraft/core';
import { InProcessNetwork } from '@tsraft/core/testing';
import { Kysely, PGliteDialect, sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, expectTypeOf, it } from 'vitest';
import {
  BANK_TABLES,
  type BankCommands,
  type BankDatabase,
  balances,
  bankCommands,
  createBankTables,
} from './bank.test-helpers.ts';
import type { CommandOf, ResultOf } from './command-definition.ts';
import { CommandValidationError } from './command-validation-error.ts';
import { PostgresLogStore } from './postgres-log-store.ts';
import { PostgresSnapshotStore } from './postgres-snapshot-store.ts';
import { createPostgresStateMachine, type PostgresStateMachine } from './postgres-state-machine.ts';

type BankNode = RaftNode<CommandOf<BankCommands>, ResultOf<BankCommands>>;

interface Member {
  readonly db: Kysely<BankDatabase>;
  readonly machine: PostgresStateMachine<BankCommands>;
  readonly node: BankNode;
}

const IDS: readonly NodeId[] = ['n1', 'n2', 'n3'];
const network = new InProcessNetwork();
const members = new Map<NodeId, Member>();

// Each node has its own PGlite holding its Raft log, snapshots, applied position, sessions and
// the bank's tables.
beforeAll(async () => {
  const started = Date.now();
  await Promise.all(
    IDS.map(async (id) => {
      const db = new Kysely<BankDatabase>({ dialect: new PGliteDialect({ pglite: new PGlite() }) });
      await createBankTables(db);
      const logStore = await PostgresLogStore.open({ db, allowSynchronousCommitOff: true });
      const snapshotStore = await PostgresSnapshotStore.open({ db });
      const machine = await createPostgresStateMachine({
        db,
        commands: bankCommands,
        tables: BANK_TABLES,
      });
      const node = await RaftNode.start({
        id,
        config: { voters: [...IDS] },
        logStore,
        snapshotStore,
        stateMachine: machine,
        transport: network.transport(id),
        tickMs: 10,
      });
      members.set(id, { db, machine, node });
    }),
  );
  console.info(`[cluster] 3 nodes on PGlite started in ${Date.now() - started} ms`);
}, 30_000);

afterAll(async () => {
  for (const member of members.values()) {
    await member.node.close();
    await member.db.destroy();
  }
});

function member(id: NodeId): Member {
  const found = members.get(id);
  if (found === undefined) throw new Error(`no node ${id}`);
  return found;
}

async function until<T>(
  what: string,
  probe: () => T | undefined | Promise<T | undefined>,
): Promise<T> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function leader(): Promise<Member & { id: NodeId }> {
  return until('a leader', () => {
    for (const [id, m] of members) if (m.node.status().role === 'leader') return { id, ...m };
    return undefined;
  });
}

/** Waits until every node applied what the leader committed, then dumps each node's state. */
async function converged(): Promise<string[]> {
  const { node } = await leader();
  const commit = node.status().commitIndex;
  await until('every node to apply', () =>
    [...members.values()].every((m) => m.node.status().appliedIndex >= commit) ? true : undefined,
  );
  return Promise.all(
    [...members.values()].map(async ({ db }) => {
      const { rows } = await sql<{ dump: string | null }>`
        select concat_ws(E'\n',
          (select string_agg(to_jsonb(a)::text, E'\n' order by id) from accounts a),
          (select string_agg(to_jsonb(t)::text, E'\n' order by id) from transfers t),
          (select string_agg(to_jsonb(r)::text, E'\n' order by client_id, seq) from raft.client_result r)
        ) as dump
      `.execute(db);
      return rows[0]?.dump ?? '';
    }),
  );
}

describe('a 3-node cluster, each node with its own PGlite: PostgresLogStore, snapshots and the typed state machine', () => {
  it('replicates typed commands end to end, from the leader and through a follower', async () => {
    const lead = await leader();
    const opened = await lead.machine.propose(lead.node, 'open', { id: 'a', initial: 100 });
    expectTypeOf(opened).toEqualTypeOf<{ id: string; openedAt: number }>();
    expect(opened.id).toBe('a');
    const follower = member(IDS.find((id) => id !== lead.id) as NodeId);
    await follower.machine.propose(follower.node, 'open', { id: 'b' });
    const moved = await follower.machine.propose(follower.node, 'transfer', {
      from: 'a',
      to: 'b',
      amount: 10,
    });
    expectTypeOf(moved).toEqualTypeOf<{ from: number; to: number }>();
    expect(moved).toEqual({ from: 90, to: 10 });
    const dumps = await converged();
    expect(new Set(dumps).size).toBe(1);
    expect(await balances(follower.db)).toEqual({ a: 90, b: 10 });
  });

  it('executes a command with a session once, however often it is proposed', async () => {
    const lead = await leader();
    const session = { clientId: 'retrying-client', seq: 1 };
    const first = await lead.machine.propose(
      lead.node,
      'deposit',
      { id: 'b', amount: 5 },
      { session },
    );
    const again = await lead.machine.propose(
      lead.node,
      'deposit',
      { id: 'b', amount: 5 },
      { session },
    );
    expect(again).toEqual(first);
    expect(new Set(await converged()).size).toBe(1);
    expect((await balances(lead.db)).b).toBe(first.balance);
  });

  it('isolates a rejected command within its batch, with the same outcome on every node', async () => {
    const lead = await leader();
    const { machine, node } = lead;
    // Proposed in one turn of the event loop: committed, and applied, as one batch.
    const outcomes = await Promise.allSettled([
      machine.propose(node, 'deposit', { id: 'a', amount: 1 }),
      machine.propose(node, 'transfer', { from: 'b', to: 'a', amount: 1_000 }),
      machine.propose(
        node,
        'transfer',
        { from: 'a', to: 'b', amount: 1 },
        { session: { clientId: 'x', seq: 1 } },
      ),
      machine.propose(node, 'open', { id: 'a' }, { session: { clientId: 'x', seq: 2 } }),
      machine.propose(node, 'deposit', { id: 'a', amount: 2 }),
    ]);
    expect(outcomes.map((outcome) => outcome.status)).toEqual([
      'fulfilled',
      'rejected',
      'fulfilled',
      'rejected',
      'fulfilled',
    ]);
    const rejected = outcomes.flatMap((outcome) =>
      outcome.status === 'rejected' ? [outcome.reason] : [],
    );
    expect(rejected[0]).toBeInstanceOf(CommandError);
    expect(rejected[0]).toMatchObject({
      code: 'insufficient_funds',
      errorName: 'CommandRejection',
    });
    expect(rejected[1]).toMatchObject({ code: '23505', errorName: 'ConstraintViolationError' });
    const dumps = await converged();
    expect(new Set(dumps).size).toBe(1);
    // The rejected command's session result is recorded on every node, identically.
    expect(dumps[0]).toContain('"ConstraintViolationError"');
  });

  it('rejects input that fails its schema before it reaches the log', async () => {
    const lead = await leader();
    const before = lead.node.status().lastIndex;
    await expect(
      // @ts-expect-error: the amount must be a number
      lead.machine.propose(lead.node, 'deposit', { id: 'a', amount: 'lots' }),
    ).rejects.toThrow(CommandValidationError);
    await expect(
      lead.machine.propose(lead.node, 'deposit', { id: 'a', amount: -3 }),
    ).rejects.toThrow(/amount: /);
    expect(lead.node.status().lastIndex).toBe(before);
  });

  it('brings a follower that missed compacted entries up to date with a snapshot (Raft paper 7)', async () => {
    const lead = await leader();
    const lagging = IDS.find((id) => id !== lead.id) as NodeId;
    network.partition(lagging);
    try {
      for (let i = 0; i < 5; i++) {
        await lead.machine.propose(lead.node, 'open', {
          id: `late${i}`,
          initial: i,
          avatarHex: 'deadbeef',
        });
      }
      await lead.machine.propose(lead.node, 'transfer', { from: 'late4', to: 'a', amount: 4 });
      const snapshot = await lead.node.takeSnapshot();
      expect(snapshot?.index).toBe(lead.node.status().commitIndex);
      expect(lead.node.status().firstIndex).toBeGreaterThan(
        member(lagging).node.status().lastIndex,
      );
    } finally {
      network.heal();
    }
    const dumps = await converged();
    expect(new Set(dumps).size).toBe(1);
    const caughtUp = member(lagging);
    expect(caughtUp.node.status().firstIndex).toBeGreaterThan(1);
    expect(await caughtUp.machine.lastApplied()).toMatchObject({
      index: caughtUp.node.status().appliedIndex,
    });
  });
});

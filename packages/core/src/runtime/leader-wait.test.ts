import { describe, expect, it } from 'vitest';
import { NodeClosedError, NotLeaderError, ReadUnavailableError } from '../errors.ts';
import type { NodeId } from '../log-entry.ts';
import type { LogWrite } from '../log-store.ts';
import { InProcessNetwork } from '../testing/in-process-transport.ts';
import { type KvCommand, type KvResult, KvStateMachine } from '../testing/kv-state-machine.ts';
import { MemoryLogStore } from '../testing/memory-log-store.ts';
import { MemorySnapshotStore } from '../testing/memory-snapshot-store.ts';
import {
  type KvNode,
  PausableTicks,
  sleep,
  TestCluster,
  waitFor,
} from '../testing/test-cluster.test-helpers.ts';
import { RaftNode } from './raft-node.ts';
import type { RaftNodeOptions } from './raft-node-options.ts';

const put = (key: string, value: string): KvCommand => ({ op: 'put', key, value });

/** Long enough that no wait below ends by its deadline, however loaded the machine. */
const PATIENT = { leaderWaitMs: 30_000, readTimeoutMs: 30_000 } as const;

/** Node n1 of a three-voter cluster whose other members never start: it never learns a leader. */
function startAlone(options: Partial<RaftNodeOptions<KvCommand, KvResult>>): Promise<KvNode> {
  return RaftNode.start<KvCommand, KvResult>({
    id: 'n1',
    config: { voters: ['n1', 'n2', 'n3'] },
    logStore: new MemoryLogStore(),
    snapshotStore: new MemorySnapshotStore(),
    stateMachine: new KvStateMachine(),
    transport: new InProcessNetwork().transport('n1'),
    tickMs: 5,
    tuning: { electionTicks: 10, heartbeatTicks: 2 },
    ...options,
  });
}

/** A log store whose `persist` waits, once `gate` is set, until the gate opens. */
class GatedLogStore extends MemoryLogStore {
  gate: Promise<void> | undefined;
  blocked = false;
  override async persist(write: LogWrite, options?: { signal?: AbortSignal }): Promise<void> {
    if (this.gate !== undefined) {
      this.blocked = true;
      await this.gate;
    }
    return super.persist(write, options);
  }
}

/** Settles with the promise's outcome: `{ value }` or `{ error }`, never rejecting. */
function outcome<T>(promise: Promise<T>): Promise<{ value: T } | { error: unknown }> {
  return promise.then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );
}

describe('a node that knows no leader waits for one (RaftNodeOptions.leaderWaitMs)', () => {
  it('a linearizable read on a node that knows no leader yet (just started, no election yet) waits for one instead of failing at once, and is served through it (thesis 6.4)', async () => {
    // No ticks, no election: every node knows no leader until the ticks resume.
    const ticks = new PausableTicks();
    ticks.pause();
    await using cluster = await TestCluster.start({ node: { clock: ticks.clock, ...PATIENT } });
    const node = cluster.node('n1');
    expect(node.status().leaderId).toBeNull();
    const read = outcome(node.read(() => node.status()));
    const proposal = outcome(cluster.node('n2').propose(put('k', 'v')));
    // Several turns of the event loop: a read refused at once has settled by now.
    await sleep(30);
    expect(node.status().leaderId).toBeNull();
    ticks.resume();
    const served = await read;
    expect(served).toHaveProperty('value');
    // The read index came from the leader that was elected meanwhile.
    const seen = (served as { value: ReturnType<KvNode['status']> }).value;
    expect(seen.leaderId).not.toBeNull();
    expect(seen.term).toBeGreaterThan(0);
    // A proposal on a node that knew no leader waited likewise, then went to the leader.
    expect(await proposal).toEqual({ value: { op: 'put', value: 'v' } });
  });

  it('a read on a follower cut off from its leader (it knows none: its election timeout passed) waits through the partition and then sees a write the leader completed before the read started (thesis 6.4)', async () => {
    await using cluster = await TestCluster.start({ node: PATIENT });
    const first = await cluster.waitForLeader();
    const id = cluster.followers(first)[0]!.id;
    const follower = cluster.node(id);
    cluster.network.partition(id);
    const leader = await cluster.waitForLeader({ among: cluster.ids.filter((n) => n !== id) });
    await waitFor(() => follower.status().leaderId === null, {
      what: `${id} to forget its leader`,
    });
    await leader.propose(put('x', 'written while cut off'));
    const read = outcome(follower.read(() => cluster.disk(id).stateMachine.get('x')));
    await sleep(30);
    cluster.network.heal(id);
    expect(await read).toEqual({ value: 'written while cut off' });
  });

  it('a read in flight on a follower whose leader is lost (the leader is cut off; an election changes the term) is asked anew of the next leader instead of failing with "leadership changed"', async () => {
    await using cluster = await TestCluster.start({ node: PATIENT });
    const old = await cluster.waitForLeader();
    const oldTerm = old.status().term;
    await old.propose(put('x', '1'));
    const follower = cluster.followers(old)[0]!;
    cluster.network.partition(old.id);
    // The follower still knows the old leader: its ReadIndex request goes there and is lost.
    expect(follower.status().leaderId).toBe(old.id);
    const read = outcome(
      follower.read(() => ({
        status: follower.status(),
        x: cluster.disk(follower.id).stateMachine.get('x'),
      })),
    );
    const served = await read;
    expect(served).toHaveProperty('value');
    const { status, x } = (
      served as { value: { status: ReturnType<KvNode['status']>; x: unknown } }
    ).value;
    expect(x).toBe('1');
    // Served through a leader of a later term than the one it first asked.
    expect(status.term).toBeGreaterThan(oldTerm);
    expect(status.leaderId).not.toBe(old.id);
  });

  it('a read on a leader deposed while the read waits for its heartbeat round (CheckQuorum) waits for the next leader, and is served by it once the old leader hears of it (thesis 6.4)', async () => {
    await using cluster = await TestCluster.start({ node: PATIENT });
    const old = await cluster.waitForLeader();
    const oldTerm = old.status().term;
    cluster.network.partition(old.id);
    const read = outcome(old.read(() => old.status()));
    await waitFor(() => old.status().role !== 'leader', { what: 'the old leader to step down' });
    const next = await cluster.waitForLeader({ among: cluster.followers(old).map((n) => n.id) });
    await next.propose(put('x', 'after the old leader stepped down'));
    cluster.network.heal(old.id);
    const served = await read;
    expect(served).toHaveProperty('value');
    const status = (served as { value: ReturnType<KvNode['status']> }).value;
    expect(status.term).toBeGreaterThan(oldTerm);
    expect(status.leaderId).toBe(next.id);
  });

  it.each([
    [
      'a new leader is elected (the old one stays cut off)',
      (network: InProcessNetwork, leader: NodeId, _follower: NodeId) => {
        network.partition(leader);
      },
      async () => {},
    ],
    [
      'the same leader is heard again in the same term (the Ready carries no change of soft state)',
      (network: InProcessNetwork, leader: NodeId, follower: NodeId) => {
        network.drop(leader, follower);
      },
      async (network: InProcessNetwork, leader: KvNode, follower: KvNode) => {
        network.restore(leader.id, follower.id);
        await waitFor(() => follower.status().leaderId === leader.id, {
          what: 'the engine to hear the leader again',
        });
      },
    ],
  ])(
    'a proposal on a follower whose engine lost its leader while its loop is busy persisting (the soft state it last handled still names the leader) waits for a leader instead of failing with NotLeaderError: %s',
    async (_case, cut, reconnect) => {
      const network = new InProcessNetwork();
      const ids = ['n1', 'n2', 'n3'];
      const stores = new Map(ids.map((id) => [id, new GatedLogStore()]));
      const nodes = await Promise.all(
        ids.map((id) =>
          RaftNode.start<KvCommand, KvResult>({
            id,
            config: { voters: ids },
            logStore: stores.get(id) as GatedLogStore,
            snapshotStore: new MemorySnapshotStore(),
            stateMachine: new KvStateMachine(),
            transport: network.transport(id),
            tickMs: 5,
            tuning: { electionTicks: 10, heartbeatTicks: 2 },
            ...PATIENT,
          }),
        ),
      );
      try {
        await waitFor(() => nodes.some((n) => n.status().role === 'leader'), { what: 'a leader' });
        const leader = nodes.find((n) => n.status().role === 'leader') as KvNode;
        await leader.propose(put('a', '1'));
        const follower = nodes.find((n) => n !== leader && n.status().leaderId === leader.id);
        if (follower === undefined) throw new Error('no follower knows the leader');
        const store = stores.get(follower.id) as GatedLogStore;
        let open = (): void => {};
        store.gate = new Promise<void>((resolve) => {
          open = resolve;
        });
        void leader.propose(put('b', '2')).catch(() => {});
        await waitFor(() => store.blocked, { what: 'the follower to block in persist' });
        cut(network, leader.id, follower.id);
        // The engine forgets the leader at its election timeout; the loop still waits on persist.
        await waitFor(() => follower.status().leaderId === null, { what: 'the engine to forget' });
        const proposal = outcome(follower.propose(put('c', '3')));
        await sleep(30);
        await reconnect(network, leader, follower);
        store.gate = undefined;
        open();
        expect(await proposal).toEqual({ value: { op: 'put', value: '3' } });
      } finally {
        await Promise.all(nodes.map((n) => n.close()));
      }
    },
  );

  it('fails the read with the retryable ReadUnavailableError, and a proposal with NotLeaderError without a hint, once leaderWaitMs passes without a leader', async () => {
    const leaderWaitMs = 150;
    await using node = await startAlone({ leaderWaitMs, readTimeoutMs: 30_000 });
    const started = performance.now();
    const [read, proposal] = await Promise.all([
      outcome(node.read(() => 1)),
      outcome(node.propose(put('k', 'v'))),
    ]);
    expect(performance.now() - started).toBeGreaterThanOrEqual(leaderWaitMs - 5);
    const readError = (read as { error: unknown }).error;
    expect(readError).toBeInstanceOf(ReadUnavailableError);
    expect((readError as ReadUnavailableError).message).toBe(
      'no leader could confirm the read index; retry shortly',
    );
    expect((readError as ReadUnavailableError).retryable).toBe(true);
    const proposalError = (proposal as { error: unknown }).error;
    expect(proposalError).toBeInstanceOf(NotLeaderError);
    expect((proposalError as NotLeaderError).leaderHint).toBeNull();
  });

  it('with leaderWaitMs 0 refuses at once, as for a client that moves to another node by itself', async () => {
    await using node = await startAlone({ leaderWaitMs: 0, readTimeoutMs: 30_000 });
    const [read, proposal] = await Promise.all([
      outcome(node.read(() => 1)),
      outcome(node.propose(put('k', 'v'))),
    ]);
    expect((read as { error: Error }).error.message).toBe(
      'no leader could confirm the read index; retry shortly',
    );
    expect((proposal as { error: unknown }).error).toBeInstanceOf(NotLeaderError);
  });

  it('ends the wait when the caller aborts (a proposal with NotLeaderError without a hint, its cause the reason: nothing was proposed; a read with the reason) or the node closes (NodeClosedError)', async () => {
    const node = await startAlone(PATIENT);
    const controller = new AbortController();
    const aborted = outcome(node.propose(put('k', 'v'), { signal: controller.signal }));
    const abortedRead = outcome(node.read(() => 1, { signal: controller.signal }));
    const closedRead = outcome(node.read(() => 1));
    const closedProposal = outcome(node.propose(put('k', 'w')));
    const reason = new Error('the caller gave up');
    controller.abort(reason);
    const abortedError = ((await aborted) as { error: unknown }).error;
    expect(abortedError).toBeInstanceOf(NotLeaderError);
    expect((abortedError as NotLeaderError).leaderHint).toBeNull();
    expect((abortedError as NotLeaderError).cause).toBe(reason);
    expect(node.status().lastIndex).toBe(0);
    expect(await abortedRead).toEqual({ error: reason });
    await node.close();
    expect((await closedRead) as { error: unknown }).toHaveProperty('error');
    expect(((await closedRead) as { error: unknown }).error).toBeInstanceOf(NodeClosedError);
    expect(((await closedProposal) as { error: unknown }).error).toBeInstanceOf(NodeClosedError);
  });

  it('refuses a leaderWaitMs that is negative, not a number, or longer than a timer can wait (Node would end the wait after 1 ms)', async () => {
    for (const leaderWaitMs of [-1, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 31]) {
      await expect(startAlone({ leaderWaitMs })).rejects.toThrow(
        /leaderWaitMs must be a finite number >= 0 and at most 2147483647 ms \(what a timer can wait\)/,
      );
    }
    await using longest = await startAlone({ leaderWaitMs: 2 ** 31 - 1 });
    expect(longest.status().closed).toBe(false);
  });
});

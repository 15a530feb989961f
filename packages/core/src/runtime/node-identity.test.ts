import { describe, expect, it } from 'vitest';
import type { NodeId } from '../log-entry.ts';
import type { Message, RequestVote } from '../message.ts';
import type { NodeIdentity } from '../node-identity.ts';
import { InProcessNetwork } from '../testing/in-process-transport.ts';
import { type KvCommand, type KvResult, KvStateMachine } from '../testing/kv-state-machine.ts';
import { MemoryLogStore } from '../testing/memory-log-store.ts';
import { MemorySnapshotStore } from '../testing/memory-snapshot-store.ts';
import { type KvNode, sleep, TestCluster, waitFor } from '../testing/test-cluster.test-helpers.ts';
import type { PeerIdentity, PeerResponse } from '../transport.ts';
import { RaftNode } from './raft-node.ts';
import type { RaftNodeEvents } from './raft-node-events.ts';

/**
 * Durable node identity (core README, "Node identity"): a member that lost its durable state
 * must not vote or acknowledge as before (Raft paper 5.2: one vote per term; 5.4: a majority
 * holds every committed entry), and a node of another cluster takes no part.
 */

type Refusal = RaftNodeEvents['identity-refused'][0];

const put = (key: string, value: string): KvCommand => ({ op: 'put', key, value });

function refusals(node: KvNode): Refusal[] {
  const seen: Refusal[] = [];
  node.on('identity-refused', (event) => seen.push(event));
  return seen;
}

describe('a member restarted on empty storage (a lost disk)', () => {
  it('is refused by the others at error level with what to do; its acknowledgements do not count, and it counts again once removed and added back', async () => {
    await using cluster = await TestCluster.start();
    const leader = await cluster.waitForLeader();
    for (let i = 0; i < 5; i++) await leader.propose(put(`k${i}`, String(i)));
    const [lost, other] = cluster.followers(leader) as [KvNode, KvNode];
    const lostId = lost.id;
    const otherId = other.id;
    await cluster.waitForApplied(leader.status().commitIndex);
    const before = lost.status().identity.incarnation;
    const byLeader = refusals(leader);

    const restarted = await cluster.addServer(lostId); // its stores are emptied, then it starts
    const byRestarted = refusals(restarted);
    const after = restarted.status().identity.incarnation;
    expect(after).not.toBe(before);

    // The cluster commits with the other two; the node that lost its state receives nothing.
    await leader.propose(put('after', 'loss'));
    await sleep(200); // a few heartbeats
    expect(restarted.status().lastIndex).toBe(0);

    const expected = `node ${lostId} lost its durable state (incarnation ${before} -> ${after}): remove it from the cluster and add it again`;
    await waitFor(() => byLeader.some((e) => e.reason === 'peer-lost-state'), {
      what: 'the leader to refuse the node that lost its state',
    });
    expect(byLeader.find((e) => e.reason === 'peer-lost-state')).toMatchObject({
      peer: lostId,
      message: expect.stringContaining(expected),
    });
    await waitFor(() => byRestarted.some((e) => e.reason === 'lost-state'), {
      what: 'the restarted node to learn it lost its state',
    });
    expect(restarted.status().identity.lostState).toBe(true);
    // A linearizable read on it fails at once, saying why.
    await expect(restarted.read(() => 'never')).rejects.toThrow(/lost its durable state/);
    expect(leader.status().identity.refusedPeers).toEqual({ [lostId]: 'peer-lost-state' });
    // Its progress is unknown, not what the old incarnation acknowledged.
    expect(leader.status().progress[lostId]).toEqual({
      state: 'refused',
      refusal: 'peer-lost-state',
      match: null,
      next: null,
      recentActive: false,
    });
    expect(leader.status().progress[otherId]?.match).toBe(leader.status().lastIndex);

    // Its acknowledgements do not count: with the other follower down, nothing commits.
    await cluster.stopNode(otherId);
    await expect(
      leader.propose(put('needs', 'majority'), { signal: AbortSignal.timeout(1000) }),
    ).rejects.toThrow();
    expect(restarted.status().lastIndex).toBe(0);
    await cluster.startNode(otherId);

    // Removed and added again, it is accepted under its new incarnation and counts again.
    const current = await cluster.waitForLeader({ among: [leader.id, otherId] });
    await current.removeNode(lostId);
    await current.addLearner(lostId, { promote: true });
    await waitFor(() => current.status().config.voters.includes(lostId), {
      what: 'the node to be promoted again',
      timeoutMs: 10_000,
    });
    await waitFor(() => !restarted.status().identity.lostState, {
      what: 'the node to be accepted',
    });
    await current.propose(put('back', 'again'));
    await cluster.waitForApplied(current.status().commitIndex, [lostId]);
    expect(cluster.disk(lostId).stateMachine.get('back')).toBe('again');
    expect(current.status().identity.refusedPeers).toEqual({});
    await waitFor(() => current.status().progress[lostId]?.match === current.status().lastIndex, {
      what: "the node's progress to show its match again",
    });
  });
});

/** A request for a vote in `term` from `candidate` to `to`, with nothing in the candidate's log. */
function voteRequest(candidate: NodeId, to: NodeId, term: number): RequestVote {
  return {
    type: 'vote',
    from: candidate,
    to,
    term,
    prevote: false,
    lastIndex: 0,
    lastTerm: 0,
  };
}

function identity(incarnation: string, receiverIncarnation: string | null = null): PeerIdentity {
  return { clusterId: null, incarnation, receiverIncarnation };
}

function granted(response: PeerResponse): boolean {
  return (
    response.type === 'raft' &&
    response.messages.some((m) => m.type === 'vote-response' && m.granted)
  );
}

async function startVoter(network: InProcessNetwork, logStore: MemoryLogStore): Promise<KvNode> {
  return RaftNode.start<KvCommand, unknown>({
    id: 'n3',
    config: { voters: ['n1', 'n2', 'n3'] },
    logStore,
    stateMachine: new KvStateMachine(),
    snapshotStore: new MemorySnapshotStore(),
    transport: network.transport('n3'),
    // It never campaigns during the test: only the vote requests it receives matter.
    tickMs: 1000,
  }) as Promise<KvNode>;
}

describe('a voter that lost its disk is asked again in the same term (Raft paper 5.2)', () => {
  it('refuses a candidate that knows its old incarnation, and then grants no vote at all until accepted', async () => {
    const network = new InProcessNetwork();
    const n1 = network.transport('n1');
    const n2 = network.transport('n2');
    const signal = AbortSignal.timeout(5000);
    const first = await startVoter(network, new MemoryLogStore());
    const vote1 = await n1.request(
      'n3',
      {
        type: 'raft',
        messages: [voteRequest('n1', 'n3', 5)],
        reply: true,
        identity: identity('i1'),
      },
      { signal },
    );
    expect(granted(vote1)).toBe(true);
    const known = first.status().identity.incarnation;
    await first.close();

    // The disk is gone: the node starts again on empty stores, in a new incarnation.
    const logStore = new MemoryLogStore();
    const second = await startVoter(network, logStore);
    expect(second.status().identity.incarnation).not.toBe(known);
    const events = refusals(second);
    const vote2 = await n2.request(
      'n3',
      {
        type: 'raft',
        messages: [voteRequest('n2', 'n3', 5)],
        reply: true,
        identity: identity('i2', known),
      },
      { signal },
    );
    expect(granted(vote2)).toBe(false);
    expect(vote2).toMatchObject({ type: 'rejected', reason: 'refused' });
    expect(events).toMatchObject([{ peer: 'n2', reason: 'lost-state' }]);
    expect(second.status().identity.lostState).toBe(true);

    // Told so, it grants no vote even to a candidate that does not know it.
    const vote3 = await network.transport('n4').request(
      'n3',
      {
        type: 'raft',
        messages: [voteRequest('n4', 'n3', 5)],
        reply: true,
        identity: identity('i4'),
      },
      { signal },
    );
    expect(granted(vote3)).toBe(false);
    expect(logStore.durable.hardState.votedFor).toBeNull();
    await second.close();
  });

  it('a candidate that knows the old incarnation does not count the vote of the new one', async () => {
    const outcome = async (answeredAs: string) => {
      const network = new InProcessNetwork();
      // n1 is down; n3 grants every vote, answering under incarnation `answeredAs`.
      network.transport('n3').listen(async (_from, request) => {
        if (request.type !== 'raft') return { type: 'ack' };
        const answers: Message[] = request.messages.flatMap((m) =>
          m.type === 'vote'
            ? [
                {
                  type: 'vote-response' as const,
                  from: 'n3',
                  to: m.from,
                  term: m.term,
                  prevote: m.prevote,
                  granted: true,
                },
              ]
            : [],
        );
        return { type: 'raft', messages: answers, identity: identity(answeredAs) };
      });
      const known: NodeIdentity = { clusterId: null, incarnation: 'c2', members: { n3: 'old' } };
      const logStore = new MemoryLogStore();
      await logStore.persist({ identity: known });
      const candidate = (await RaftNode.start<KvCommand, unknown>({
        id: 'n2',
        config: { voters: ['n1', 'n2', 'n3'] },
        logStore,
        stateMachine: new KvStateMachine(),
        snapshotStore: new MemorySnapshotStore(),
        transport: network.transport('n2'),
        tickMs: 5,
        tuning: { electionTicks: 10, heartbeatTicks: 2 },
      })) as KvNode;
      const events = refusals(candidate);
      // Elected at some point (without n1, CheckQuorum deposes it again an election later).
      let elected = false;
      candidate.on('role-change', ({ role }) => {
        if (role === 'leader') elected = true;
      });
      await sleep(600); // several election timeouts
      await candidate.close();
      return { elected, events };
    };

    const sameDisk = await outcome('old');
    expect(sameDisk.elected).toBe(true);
    const lostDisk = await outcome('new');
    expect(lostDisk.elected).toBe(false);
    expect(lostDisk.events).toMatchObject([{ peer: 'n3', reason: 'peer-lost-state' }]);
  });
});

describe('cluster ids', () => {
  it('refuses a node of another cluster, refuses to start on another cluster storage, and a joiner learns the id', async () => {
    await using cluster = await TestCluster.start();
    await cluster.waitForLeader();
    // Given once the cluster runs: each node stores it (it had none).
    for (const id of cluster.ids) {
      await cluster.stopNode(id);
      await cluster.startNode(id, { clusterId: 'alpha' });
    }
    const leader = await cluster.waitForLeader();
    expect(leader.status().identity.clusterId).toBe('alpha');
    await leader.propose(put('a', '1'));

    // A server of another cluster, pointed at this one by mistake.
    const byLeader = refusals(leader);
    const stranger = await cluster.addServer('n4', { clusterId: 'beta' });
    const byStranger = refusals(stranger);
    await leader.addLearner('n4');
    await waitFor(() => byStranger.some((e) => e.reason === 'other-cluster'), {
      what: 'the stranger to refuse the cluster',
    });
    expect(byStranger[0]?.message).toContain('belongs to cluster alpha, this node to cluster beta');
    await waitFor(() => byLeader.some((e) => e.reason === 'refused-by-peer'), {
      what: 'the leader to hear the refusal',
    });
    expect(stranger.status().lastIndex).toBe(0);
    await leader.removeNode('n4');

    // A node started on storage of cluster alpha with another cluster id refuses to start.
    await cluster.stopNode('n2');
    await expect(cluster.startNode('n2', { clusterId: 'beta' })).rejects.toThrow(
      /belongs to cluster alpha, but the clusterId option says beta/,
    );

    // A joiner without a cluster id learns it from the leader.
    await cluster.startNode('n2', { clusterId: 'alpha' });
    const joiner = await cluster.addServer('n5');
    expect(joiner.status().identity.clusterId).toBeNull();
    const current = await cluster.waitForLeader({ among: ['n1', 'n2', 'n3'] });
    await current.addLearner('n5');
    await waitFor(() => joiner.status().identity.clusterId === 'alpha', {
      what: 'the joiner to learn the cluster id',
    });
    expect(cluster.disk('n5').log?.identity?.clusterId).toBe('alpha');
  });
});

describe('the members a node knows, after a restart before its latest configuration is applied', () => {
  it("compares leaders' views with its latest applied configuration, as before the restart, and forgets what that configuration removed", async () => {
    const network = new InProcessNetwork();
    const machine = new KvStateMachine();
    const snapshotStore = new MemorySnapshotStore();
    const logStore = new MemoryLogStore();
    const start = (store: MemoryLogStore) =>
      RaftNode.start<KvCommand, KvResult>({
        id: 'n1',
        config: { voters: ['n1'] },
        logStore: store,
        stateMachine: machine,
        snapshotStore,
        transport: network.transport('n1'),
        tickMs: 5,
        tuning: { electionTicks: 10, heartbeatTicks: 2 },
      });
    const signal = AbortSignal.timeout(5000);
    /** A request from `from`, under `incarnation`, with what a leader knows of the members. */
    const request = (
      from: NodeId,
      incarnation: string,
      view?: { members: Record<NodeId, string>; membersAsOf: number },
    ) =>
      network
        .transport(from)
        .request(
          'n1',
          { type: 'raft', messages: [], identity: { ...identity(incarnation), ...view } },
          { signal },
        );
    /** The incarnations the node persisted, once it persisted the one of `from` (its next write). */
    const persistedOnceKnown = async (from: NodeId) => {
      await waitFor(() => logStore.durable.identity?.members[from] !== undefined, {
        what: `the node to persist the incarnation of ${from}`,
      });
      return logStore.durable.identity?.members;
    };

    const first = await start(logStore);
    await waitFor(() => first.status().role === 'leader');
    // n8 is added and removed (it never answers: this node never learns its incarnation); n9 too,
    // but it answered under incarnation old9 meanwhile.
    await first.addLearner('n8');
    await first.removeNode('n8');
    await first.addLearner('n9');
    await request('n9', 'old9');
    await first.removeNode('n9');
    const removal = first.status().configIndex;
    await waitFor(() => first.status().appliedIndex >= removal);
    // A view as of before the removals teaches nothing: it may list members this node saw removed.
    await request('n2', 'i-n2', { members: { n8: 'stale' }, membersAsOf: 1 });
    await first.propose(put('a', '1'));
    expect(await persistedOnceKnown('n2')).toEqual({ n2: 'i-n2' });
    expect(logStore.durable.identity?.retired).toEqual(['old9']);

    // n9 is added back as a voter, which cannot commit (n9 never acknowledges), and the node
    // stops. It stored its identity as of before n9's removal, as a crash between applying the
    // removal and persisting the identity leaves it.
    const adding = first.changeMembership({ voters: ['n1', 'n9'] }).catch(() => {});
    await waitFor(() =>
      logStore.durable.entries.some((e) => e.type === 'config' && e.index > removal),
    );
    await first.close();
    await adding;
    const stored = logStore.durable.identity as NodeIdentity;
    logStore.durable.identity = {
      clusterId: stored.clusterId,
      incarnation: stored.incarnation,
      members: { ...stored.members, n9: 'old9' },
    };

    await using second = await start(new MemoryLogStore({ durable: logStore.durable }));
    expect(second.status().appliedIndex).toBeLessThan(second.status().configIndex);
    // n9 speaks under its new incarnation: it is not refused for the old one.
    await expect(request('n9', 'new9')).resolves.toEqual({ type: 'ack' });
    await request('n3', 'i-n3', { members: { n8: 'stale' }, membersAsOf: 1 });
    // It persists what it learned with its next write (the hard state of its next election); n2,
    // a member of no configuration in its log, is forgotten as applying the removals did.
    expect(await persistedOnceKnown('n3')).toEqual({ n3: 'i-n3', n9: 'new9' });
  });
});

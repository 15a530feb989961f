import { describe, expect, it } from 'vitest';
import type { ClusterConfig } from '../configuration.ts';
import { ConfigChangeInProgressError, LeadershipTransferError, NotLeaderError } from '../errors.ts';
import type { NodeId } from '../log-entry.ts';
import type { Logger } from '../logger.ts';
import type { Message } from '../message.ts';
import type { KvCommand } from '../testing/kv-state-machine.ts';
import { type KvNode, TestCluster, waitFor } from '../testing/test-cluster.test-helpers.ts';
import type { Transport } from '../transport.ts';

/**
 * The membership API of RaftNode on real timers (Raft paper 6, thesis 3.10 and 4): each call
 * resolves once its change is committed, and the cluster keeps serving meanwhile.
 */

const put = (key: string, value: string): KvCommand => ({ op: 'put', key, value });

/** Writes `key` = 0, 1, 2, ... through whichever node leads, until stopped; returns what was acknowledged. */
function writeLoop(cluster: TestCluster, key: string) {
  const acknowledged: string[] = [];
  let stop = false;
  const done = (async () => {
    for (let i = 0; !stop; i++) {
      const value = String(i);
      const leader = [...cluster.nodes.values()].find((n) => n.status().role === 'leader');
      try {
        if (leader === undefined) throw new Error('no leader');
        await leader.propose(
          { op: 'append', key, value: `${value};` },
          { signal: AbortSignal.timeout(2000) },
        );
        acknowledged.push(value);
      } catch {
        // Retried under a new value: an append that failed may still have applied.
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    }
  })();
  return {
    acknowledged,
    stop: async () => {
      stop = true;
      await done;
    },
  };
}

/** Every acknowledged value is in `key` on every node of `ids`. */
async function expectAllApplied(
  cluster: TestCluster,
  ids: readonly NodeId[],
  key: string,
  acknowledged: readonly string[],
) {
  const leader = await cluster.waitForLeader({ among: [...ids] });
  await leader.read(() => undefined);
  await cluster.waitForApplied(leader.status().commitIndex, [...ids]);
  for (const id of ids) {
    const values = (cluster.disk(id).stateMachine.get(key) ?? '').split(';');
    for (const value of acknowledged) expect(values, `${id} lacks ${value}`).toContain(value);
  }
}

function capturingLogger(): Logger & { warnings: string[]; infos: string[] } {
  const warnings: string[] = [];
  const infos: string[] = [];
  return {
    warnings,
    infos,
    debug: () => {},
    info: (context: object | string, message?: string) => {
      infos.push(typeof context === 'string' ? context : (message ?? ''));
    },
    warn: (context: object | string, message?: string) => {
      warnings.push(typeof context === 'string' ? context : (message ?? ''));
    },
    error: () => {},
  };
}

describe('RaftNode membership changes', () => {
  it('grows 3 -> 5 through joint consensus under writes; the call resolves once C_new is committed', async () => {
    await using cluster = await TestCluster.start();
    const leader = await cluster.waitForLeader();
    const configs: ClusterConfig[] = [];
    leader.on('config-change', ({ config }) => configs.push(config));
    await cluster.addServer('n4');
    await cluster.addServer('n5');
    const writes = writeLoop(cluster, 'w');
    await waitFor(() => writes.acknowledged.length >= 5);

    const config = await leader.changeMembership({ voters: ['n1', 'n2', 'n3', 'n4', 'n5'] });
    expect(config).toEqual({ voters: ['n1', 'n2', 'n3', 'n4', 'n5'] });
    expect(leader.status()).toMatchObject({ joint: false, config });
    expect(leader.status().commitIndex).toBeGreaterThanOrEqual(leader.status().configIndex);
    // C_old,new came first, and acted before it committed.
    expect(configs).toEqual([
      { voters: ['n1', 'n2', 'n3', 'n4', 'n5'], outgoingVoters: ['n1', 'n2', 'n3'] },
      { voters: ['n1', 'n2', 'n3', 'n4', 'n5'] },
    ]);
    await waitFor(() => writes.acknowledged.length >= 15);
    await writes.stop();
    await expectAllApplied(cluster, ['n1', 'n2', 'n3', 'n4', 'n5'], 'w', writes.acknowledged);
  });

  it('adds a learner that catches up and is promoted to voter on its own (promote: true)', async () => {
    await using cluster = await TestCluster.start({ tuning: { promotionLagEntries: 4 } });
    const leader = await cluster.waitForLeader();
    for (let i = 0; i < 20; i++) await leader.propose(put(`k${i}`, String(i)));
    await cluster.addServer('n4');
    const added = await leader.addLearner('n4', { promote: true });
    expect(added).toEqual({ voters: ['n1', 'n2', 'n3'], learners: ['n4'], autoPromote: ['n4'] });
    await waitFor(() => leader.status().config.voters.includes('n4'), { what: 'promotion' });
    expect(leader.status().config).toEqual({ voters: ['n1', 'n2', 'n3', 'n4'] });
    await cluster.waitForApplied(leader.status().commitIndex, ['n4']);
    expect(cluster.disk('n4').stateMachine.get('k19')).toBe('19');
  });

  it('removes the leader: it steps down once the change commits, and another node leads (Raft paper 6)', async () => {
    await using cluster = await TestCluster.start();
    const leader = await cluster.waitForLeader();
    const writes = writeLoop(cluster, 'w');
    await waitFor(() => writes.acknowledged.length >= 5);
    const rest = cluster.ids.filter((id) => id !== leader.id);

    const config = await leader.removeNode(leader.id);
    expect(config).toEqual({ voters: rest });
    await waitFor(() => leader.status().role === 'follower', { what: 'the leader to step down' });
    const next = await cluster.waitForLeader({ among: rest });
    expect(rest).toContain(next.id);
    const before = writes.acknowledged.length;
    await waitFor(() => writes.acknowledged.length >= before + 5);
    await writes.stop();
    await expectAllApplied(cluster, rest, 'w', writes.acknowledged);
  });

  it('proposals a removed leader appended after the change fail with ProposalDroppedError once it knows it is out, instead of waiting forever', async () => {
    // Acknowledgements to the leader stop at the configuration entry (as if the entries after it
    // were lost): the leader commits the removal, steps down with the proposals beyond its
    // commit index, and is sent nothing more.
    let lost: { to: NodeId; above: number } | undefined;
    // Acknowledgements travel in requests to the leader and in the answers to its own requests.
    const cut = (messages: readonly Message[]): Message[] =>
      messages.map((m) =>
        m.type === 'append-response' && m.success && m.index > (lost?.above ?? 0)
          ? { ...m, index: lost?.above ?? 0 }
          : m,
      );
    await using cluster = await TestCluster.start({
      wrapTransport: (id, transport): Transport => ({
        request: async (to, request, options) => {
          const sent =
            request.type === 'raft' && lost !== undefined && to === lost.to
              ? { ...request, messages: cut(request.messages) }
              : request;
          const response = await transport.request(to, sent, options);
          return response.type === 'raft' && lost !== undefined && id === lost.to
            ? { type: 'raft', messages: cut(response.messages) }
            : response;
        },
        listen: (handler) => transport.listen(handler),
        close: () => transport.close?.() ?? Promise.resolve(),
      }),
    });
    const leader = await cluster.waitForLeader();
    await leader.propose(put('ready', 'yes'));
    const removal = leader.removeNode(leader.id);
    lost = { to: leader.id, above: leader.status().configIndex };
    expect(lost.above).toBe(leader.status().lastIndex);
    const proposals = Array.from({ length: 5 }, (_, i) =>
      leader.propose(put(`late${i}`, String(i))).then(
        () => 'applied',
        (error: unknown) => (error as Error).name,
      ),
    );
    await removal;
    expect(await Promise.all(proposals)).toEqual(Array(5).fill('ProposalDroppedError'));
  });

  it('a second change while one is under way fails with ConfigChangeInProgressError', async () => {
    await using cluster = await TestCluster.start();
    const leader = await cluster.waitForLeader();
    await cluster.addServer('n4');
    await cluster.addServer('n5');
    const first = leader.changeMembership({ voters: ['n1', 'n2', 'n3', 'n4'] });
    await expect(leader.changeMembership({ voters: ['n1', 'n2', 'n3', 'n5'] })).rejects.toThrow(
      ConfigChangeInProgressError,
    );
    await expect(first).resolves.toEqual({ voters: ['n1', 'n2', 'n3', 'n4'] });
  });

  it('a follower refuses with NotLeaderError naming the leader; an invalid membership is a TypeError', async () => {
    await using cluster = await TestCluster.start();
    const leader = await cluster.waitForLeader();
    const follower = cluster.followers(leader)[0]!;
    const refused = await follower.addLearner('n9').catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(NotLeaderError);
    expect((refused as NotLeaderError).leaderHint).toBe(leader.id);
    await expect(leader.changeMembership({ voters: [] })).rejects.toThrow(TypeError);
    await expect(leader.removeNode('n9')).rejects.toThrow(TypeError);
    await expect(leader.addLearner(leader.id)).rejects.toThrow(TypeError);
    expect(leader.status().config).toEqual({ voters: ['n1', 'n2', 'n3'] });
  });

  it('tells the transport the addresses the configuration carries', async () => {
    const told: Record<string, string>[] = [];
    await using cluster = await TestCluster.start({
      wrapTransport: (_id, transport): Transport => ({
        request: (to, request, options) => transport.request(to, request, options),
        listen: (handler) => transport.listen(handler),
        close: () => transport.close?.() ?? Promise.resolve(),
        updatePeers: (addresses) => {
          told.push({ ...addresses });
        },
      }),
    });
    const leader = await cluster.waitForLeader();
    await cluster.addServer('n4');
    await leader.addLearner('n4', { url: 'http://10.0.0.4:4000' });
    await waitFor(() => told.filter((a) => a.n4 === 'http://10.0.0.4:4000').length >= 4);
  });

  it('the addresses a change gave are kept with the configuration: they survive a restart and reach a new member through a snapshot', async () => {
    const told = new Map<NodeId, Record<string, string>[]>();
    await using cluster = await TestCluster.start({
      wrapTransport: (id, transport): Transport => ({
        request: (to, request, options) => transport.request(to, request, options),
        listen: (handler) => transport.listen(handler),
        close: () => transport.close?.() ?? Promise.resolve(),
        updatePeers: (addresses) => {
          told.set(id, [...(told.get(id) ?? []), { ...addresses }]);
        },
      }),
    });
    const URL4 = 'http://10.0.0.4:4000';
    const leader = await cluster.waitForLeader();
    await cluster.addServer('n4');
    await leader.addLearner('n4', { url: URL4 });
    for (let i = 0; i < 5; i++) await leader.propose(put(`k${i}`, String(i)));
    const follower = cluster.followers(leader).find((n) => n.id !== 'n4')!;
    await cluster.waitForApplied(leader.status().commitIndex, [follower.id]);

    // A restart: the address comes back from the node's own log, before anyone sends it a thing.
    await cluster.stopNode(follower.id);
    told.delete(follower.id);
    await cluster.startNode(follower.id);
    expect(told.get(follower.id)?.[0]).toEqual({ n4: URL4 });

    // A snapshot: the configuration entry that carried the address is compacted away on the
    // leader, so n5 learns the configuration, addresses included, from the snapshot alone.
    const snapshot = await leader.takeSnapshot();
    expect(snapshot?.config.addresses).toEqual({ n4: URL4 });
    await cluster.addServer('n5');
    await leader.addLearner('n5');
    await cluster.waitForApplied(leader.status().commitIndex, ['n5']);
    expect(cluster.node('n5').status().snapshotIndex).toBeGreaterThanOrEqual(snapshot!.index);
    expect(told.get('n5')?.some((addresses) => addresses.n4 === URL4)).toBe(true);
    await cluster.stopNode('n5');
    told.delete('n5');
    await cluster.startNode('n5');
    expect(told.get('n5')?.[0]).toEqual({ n4: URL4 });
  });

  it('a node started with a config option that differs from what it stored says so at warn level and in an event, and uses what it stored', async () => {
    await using cluster = await TestCluster.start();
    const leader = await cluster.waitForLeader();
    await cluster.addServer('n4');
    await leader.changeMembership({ voters: ['n1', 'n2', 'n3', 'n4'] });
    const follower = cluster.followers(leader).find((n) => n.id !== 'n4')!;
    await cluster.waitForApplied(leader.status().commitIndex, [follower.id]);
    await cluster.stopNode(follower.id);
    const logger = capturingLogger();
    const restarted = await cluster.startNode(follower.id, { logger });
    const events: unknown[] = [];
    restarted.on('config-option-ignored', (event) => events.push(event));
    expect(logger.warnings.some((w) => w.includes('differs from the configuration'))).toBe(true);
    expect(restarted.status().config).toEqual({ voters: ['n1', 'n2', 'n3', 'n4'] });
    await waitFor(() => events.length > 0, { what: 'the config-option-ignored event' });
    expect(events).toEqual([
      { given: { voters: ['n1', 'n2', 'n3'] }, stored: { voters: ['n1', 'n2', 'n3', 'n4'] } },
    ]);

    // Started again with the stored configuration as its option: no warning, no event.
    await cluster.stopNode(follower.id);
    const quiet = capturingLogger();
    const again = await cluster.startNode(follower.id, {
      logger: quiet,
      config: { voters: ['n1', 'n2', 'n3', 'n4'] },
    });
    const none: unknown[] = [];
    again.on('config-option-ignored', (event) => none.push(event));
    await waitFor(() => again.status().leaderId !== null, { what: 'a leader known' });
    expect(quiet.warnings.filter((w) => w.includes('differs from the configuration'))).toEqual([]);
    expect(none).toEqual([]);
  });

  it('replaces a node that lost its disk: remove it, then add it back as a new learner that is promoted', async () => {
    await using cluster = await TestCluster.start({ tuning: { promotionLagEntries: 4 } });
    const leader = await cluster.waitForLeader();
    for (let i = 0; i < 10; i++) await leader.propose(put(`k${i}`, String(i)));
    const lost = cluster.followers(leader)[0]!.id;
    await cluster.stopNode(lost);
    await leader.takeSnapshot();
    await leader.removeNode(lost);
    await cluster.addServer(lost);
    await leader.addLearner(lost, { promote: true });
    await waitFor(() => leader.status().config.voters.includes(lost), { what: 'promotion' });
    await cluster.waitForApplied(leader.status().commitIndex, [lost]);
    expect(cluster.disk(lost).stateMachine.get('k9')).toBe('9');
  });
});

describe('RaftNode leadership transfer (thesis 3.10)', () => {
  it('hands over to a given voter, and to the most up-to-date one when none is given', async () => {
    await using cluster = await TestCluster.start();
    const leader = await cluster.waitForLeader();
    await leader.propose(put('a', '1'));
    const target = cluster.followers(leader)[0]!;
    await expect(leader.transferLeadership(target.id)).resolves.toBe(target.id);
    await waitFor(() => target.status().role === 'leader');
    const next = await target.transferLeadership();
    expect(next).not.toBe(target.id);
    await expect(cluster.node(next).propose(put('b', '2'))).resolves.toEqual({
      op: 'put',
      value: '2',
    });
  });

  it('fails with LeadershipTransferError when the target cannot take over in time, and the leader resumes', async () => {
    await using cluster = await TestCluster.start();
    const leader = await cluster.waitForLeader();
    const target = cluster.followers(leader)[0]!;
    cluster.network.drop(leader.id, target.id);
    await expect(leader.transferLeadership(target.id, { timeoutMs: 100 })).rejects.toThrow(
      LeadershipTransferError,
    );
    expect(leader.status()).toMatchObject({ role: 'leader', leadTransferee: null });
    await expect(leader.propose(put('c', '3'))).resolves.toEqual({ op: 'put', value: '3' });
  });

  it('close({ transfer: true }) hands leadership over before closing', async () => {
    const logger = capturingLogger();
    await using cluster = await TestCluster.start({ node: { logger } });
    const leader: KvNode = await cluster.waitForLeader();
    await leader.close({ transfer: true });
    cluster.nodes.delete(leader.id);
    expect(logger.infos).toContain('handed leadership over before closing');
    const next = await cluster.waitForLeader();
    expect(next.id).not.toBe(leader.id);
  });
});

describe('RaftNode lease reads (thesis 6.4.1)', () => {
  it('serves lease reads on the leader and linearizable ones elsewhere', async () => {
    await using cluster = await TestCluster.start({ tuning: { leaseReads: true } });
    const leader = await cluster.waitForLeader();
    await leader.propose(put('x', '1'));
    const machine = cluster.disk(leader.id).stateMachine;
    await expect(leader.read(() => machine.get('x'), { consistency: 'lease' })).resolves.toBe('1');
    const follower = cluster.followers(leader)[0]!;
    const theirs = cluster.disk(follower.id).stateMachine;
    await expect(follower.read(() => theirs.get('x'), { consistency: 'lease' })).resolves.toBe('1');
  });
});

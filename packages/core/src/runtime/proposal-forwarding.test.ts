import { describe, expect, it } from 'vitest';
import { NotLeaderError, RaftError } from '../errors.ts';
import type { NodeId } from '../log-entry.ts';
import type { KvCommand } from '../testing/kv-state-machine.ts';
import { TestCluster, waitFor } from '../testing/test-cluster.test-helpers.ts';
import type { Transport } from '../transport.ts';

describe('ProposalForwarding', () => {
  it('a forwarded proposal the leader appended has an unknown outcome when the leader closes before it commits, never NotLeaderError: the entry may still commit (here it does), so a retry without a session would apply it twice', async () => {
    // The leader's AppendEntries to `held` fail while set: its entries reach no majority.
    let held: { from: NodeId; to: NodeId } | undefined;
    await using cluster = await TestCluster.start({
      // Election timeouts of 200-400 ms: the leader, hearing no quorum once its appends are
      // held, keeps leading well past the few ms this test needs.
      tickMs: 20,
      wrapTransport: (id, transport): Transport => ({
        request: (to, request, options) =>
          request.type === 'raft' && held?.from === id && held.to === to
            ? Promise.reject(new Error('held by the test'))
            : transport.request(to, request, options),
        listen: (handler) => transport.listen(handler),
        close: () => transport.close?.() ?? Promise.resolve(),
      }),
    });
    const leader = await cluster.waitForLeader();
    const [follower, other] = cluster.followers(leader) as [
      ReturnType<TestCluster['node']>,
      ReturnType<TestCluster['node']>,
    ];
    await cluster.stopNode(other.id);
    held = { from: leader.id, to: follower.id };
    const command: KvCommand = { op: 'put', key: 'k', value: 'once' };
    const lastIndex = leader.status().lastIndex;
    const forwarded = follower.propose(command).catch((error: unknown) => error);
    // The leader appended it (durably): it is in the log, and may commit under a later leader.
    await waitFor(() => (cluster.disk(leader.id).log?.entries.at(-1)?.index ?? 0) > lastIndex);
    await cluster.stopNode(leader.id);
    const error = await forwarded;
    expect(error).not.toBeInstanceOf(NotLeaderError);
    expect(error).toBeInstanceOf(RaftError);
    expect((error as RaftError).retryable).toBe(true);
    expect((error as RaftError).message).toMatch(/outcome is unknown/);
    // And it does commit: the leader comes back, the follower hears it, the entry reaches both.
    held = undefined;
    await cluster.startNode(leader.id);
    await waitFor(() => cluster.disk(follower.id).stateMachine.get('k') === 'once');
  });
});

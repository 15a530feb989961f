import { type NodeId, RaftNode } from '@tsraft/core';
import {
  FaultInjector,
  type KvCommand,
  type KvResult,
  KvStateMachine,
  MemoryLogStore,
  MemorySnapshotStore,
  pickLoopbackPort,
} from '@tsraft/core/testing';
import { describe, expect, it } from 'vitest';
import { SECRET } from './test-peers.test-helpers.ts';
import { createTrpcTransport } from './trpc-transport.ts';

type KvNode = RaftNode<KvCommand, KvResult>;

/** Three {@link RaftNode}s in this process, talking over the tRPC transport on 127.0.0.1. */
class LoopbackCluster {
  readonly nodes: Map<NodeId, KvNode> = new Map();
  readonly machines: Map<NodeId, KvStateMachine> = new Map();

  /** Starts `ids`; every node's real transport is wrapped by `faults` when given. */
  static async start(ids: NodeId[], faults?: FaultInjector): Promise<LoopbackCluster> {
    const cluster = new LoopbackCluster();
    const peers: Record<NodeId, string> = {};
    for (const id of ids) peers[id] = `http://127.0.0.1:${await pickLoopbackPort()}`;
    for (const id of ids) {
      const stateMachine = new KvStateMachine();
      cluster.machines.set(id, stateMachine);
      const node = await RaftNode.start<KvCommand, KvResult>({
        id,
        config: { voters: ids },
        logStore: new MemoryLogStore(),
        snapshotStore: new MemorySnapshotStore(),
        stateMachine,
        transport: (() => {
          const transport = createTrpcTransport({ nodeId: id, peers, secret: SECRET });
          return faults === undefined ? transport : faults.wrap(id, transport);
        })(),
        tickMs: 10,
      });
      cluster.nodes.set(id, node);
    }
    return cluster;
  }

  node(id: NodeId): KvNode {
    const node = this.nodes.get(id);
    if (node === undefined) throw new Error(`node ${id} is not running`);
    return node;
  }

  /** Waits until one running node leads and a majority of the cluster follows it. */
  async leader(size: number): Promise<KvNode> {
    let leader: KvNode | undefined;
    await expect
      .poll(
        () => {
          const statuses = [...this.nodes.values()].map((node) => node.status());
          // A deposed leader may still think it leads: pick the one a majority follows.
          const top = statuses.find(
            (candidate) =>
              candidate.role === 'leader' &&
              statuses.filter(
                (status) => status.leaderId === candidate.id && status.term === candidate.term,
              ).length *
                2 >
                size,
          );
          leader = top === undefined ? undefined : this.nodes.get(top.id);
          return leader !== undefined;
        },
        { timeout: 5000, interval: 10 },
      )
      .toBe(true);
    return leader as KvNode;
  }

  async stop(id: NodeId): Promise<void> {
    const node = this.nodes.get(id);
    this.nodes.delete(id);
    await node?.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await Promise.all([...this.nodes.keys()].map((id) => this.stop(id)));
  }
}

describe('a 3-node RaftNode cluster over the tRPC transport on loopback', () => {
  it('elects a leader (Raft paper 5.2), replicates and applies proposals on every node (5.3)', async () => {
    const ids = ['n1', 'n2', 'n3'];
    await using cluster = await LoopbackCluster.start(ids);
    const leader = await cluster.leader(ids.length);

    await expect(leader.propose({ op: 'put', key: 'a', value: '1' })).resolves.toEqual({
      op: 'put',
      value: '1',
    });
    // A follower forwards its proposal to the leader over the transport (`propose`).
    const follower = [...cluster.nodes.values()].find((node) => node !== leader)!;
    await expect(follower.propose({ op: 'append', key: 'a', value: '+2' })).resolves.toEqual({
      op: 'append',
      value: '1+2',
    });
    const batch = await Promise.all(
      Array.from({ length: 50 }, (_, i) => leader.propose({ op: 'put', key: `k${i}`, value: 'v' })),
    );
    expect(batch).toHaveLength(50);
    // A linearizable read on a follower asks the leader for a read index (thesis 6.4).
    await expect(follower.read(() => cluster.machines.get(follower.id)!.get('a'))).resolves.toBe(
      '1+2',
    );

    const commit = leader.status().commitIndex;
    await expect
      .poll(() => ids.every((id) => cluster.node(id).status().appliedIndex >= commit), {
        timeout: 5000,
      })
      .toBe(true);
    for (const id of ids) {
      expect(cluster.machines.get(id)!.get('a')).toBe('1+2');
      expect(cluster.machines.get(id)!.get('k49')).toBe('v');
    }

    // The leader stops: the other two elect a new one over HTTP, and writes continue.
    await cluster.stop(leader.id);
    const next = await cluster.leader(ids.length);
    expect(next.id).not.toBe(leader.id);
    await expect(next.propose({ op: 'put', key: 'after', value: 'failover' })).resolves.toEqual({
      op: 'put',
      value: 'failover',
    });
  });

  it('under injected faults over real HTTP: a partitioned leader is replaced, and after healing every node converges', async () => {
    const ids = ['n1', 'n2', 'n3'];
    const faults = new FaultInjector({ seed: 5 });
    await using cluster = await LoopbackCluster.start(ids, faults);
    const leader = await cluster.leader(ids.length);
    const firstTerm = leader.status().term;
    await leader.propose({ op: 'put', key: 'before', value: 'partition' });

    // Cut the leader off: the majority side elects a new leader and keeps accepting writes.
    const others = ids.filter((id) => id !== leader.id);
    faults.partition([leader.id], others);
    // Retried with one client session on whichever node of the majority leads: a leader elected
    // a moment ago may be replaced before the write commits, and the session applies it once.
    let during: unknown;
    await expect
      .poll(
        async () => {
          const next = others
            .map((id) => cluster.node(id))
            .find((node) => node.status().role === 'leader');
          try {
            during = await next?.propose(
              { op: 'append', key: 'log', value: 'a' },
              { session: { clientId: 'faulty-client', seq: 1 }, signal: AbortSignal.timeout(2000) },
            );
          } catch {
            return false;
          }
          return during !== undefined;
        },
        { timeout: 10_000, interval: 10 },
      )
      .toBe(true);
    expect(during).toEqual({ op: 'append', value: 'a' });

    // Heal, then run on a lossy, slow network: 15% of requests lost, 0-5 ms of delay each.
    faults.heal();
    faults.drop(0.15);
    faults.delay(0, 5);
    for (const value of ['b', 'c', 'd']) {
      await expect
        .poll(
          async () => {
            try {
              // Retried with the same session on whichever node leads now; a forwarded proposal
              // whose request was lost would otherwise wait out forwardTimeoutMs.
              const current = await cluster.leader(ids.length);
              await current.propose(
                { op: 'append', key: 'log', value },
                {
                  session: { clientId: 'faulty-client', seq: value.charCodeAt(0) },
                  signal: AbortSignal.timeout(2000),
                },
              );
              return true;
            } catch {
              return false;
            }
          },
          { timeout: 10_000, interval: 50 },
        )
        .toBe(true);
    }
    faults.heal();
    const commit = (await cluster.leader(ids.length)).status().commitIndex;
    await expect
      .poll(() => ids.every((id) => cluster.node(id).status().appliedIndex >= commit), {
        timeout: 10_000,
      })
      .toBe(true);
    for (const id of ids) {
      // Exactly once despite retries: each append applied one time, in order, on every node.
      expect(cluster.machines.get(id)!.get('log')).toBe('abcd');
      expect(cluster.machines.get(id)!.get('before')).toBe('partition');
    }
    // The old leader learned of the newer terms: one leader, one term, for every node (once the
    // heartbeats after the heal reached everyone).
    await expect
      .poll(
        () => {
          const statuses = ids.map((id) => cluster.node(id).status());
          return (
            statuses.filter((status) => status.role === 'leader').length === 1 &&
            new Set(statuses.map((status) => status.term)).size === 1
          );
        },
        { timeout: 10_000 },
      )
      .toBe(true);
    expect(cluster.node(ids[0]!).status().term).toBeGreaterThan(firstTerm);
  }, 60_000);
});

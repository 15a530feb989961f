import type { Attributes } from '@opentelemetry/api';
import {
  type DataPoint,
  type Histogram,
  MeterProvider,
  MetricReader,
  type ResourceMetrics,
} from '@opentelemetry/sdk-metrics';
import { type NodeId, RaftNode } from '@tsraft/core';
import {
  InProcessNetwork,
  type KvCommand,
  type KvResult,
  KvStateMachine,
  MemoryLogStore,
  MemorySnapshotStore,
} from '@tsraft/core/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { instrumentRaftNode } from './instrument-raft-node.ts';

/** A pull reader: `collect()` reads every instrument now (the SDK's in-memory path). */
class TestReader extends MetricReader {
  protected override onShutdown(): Promise<void> {
    return Promise.resolve();
  }
  protected override onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
}

type KvNode = RaftNode<KvCommand, KvResult>;

async function waitUntil(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function points(metrics: ResourceMetrics, name: string): DataPoint<number | Histogram>[] {
  const found = metrics.scopeMetrics
    .flatMap((scope) => scope.metrics)
    .filter((metric) => metric.descriptor.name === name);
  return found.flatMap((metric) => metric.dataPoints as DataPoint<number | Histogram>[]);
}

function value(metrics: ResourceMetrics, name: string, attributes: Attributes): number | undefined {
  const point = points(metrics, name).find((p) =>
    Object.entries(attributes).every(([key, v]) => p.attributes[key] === v),
  );
  return point === undefined ? undefined : (point.value as number);
}

function histogram(metrics: ResourceMetrics, name: string, attributes: Attributes): Histogram {
  const matching = points(metrics, name).filter((p) =>
    Object.entries(attributes).every(([key, v]) => p.attributes[key] === v),
  );
  expect(matching, name).toHaveLength(1);
  return matching[0]?.value as Histogram;
}

describe('instrumentRaftNode', () => {
  const ids: NodeId[] = ['n1', 'n2', 'n3'];
  let nodes: KvNode[] = [];
  afterEach(async () => {
    await Promise.all(nodes.map((node) => node.close()));
    nodes = [];
  });

  it("reports a cluster's gauges, counters and histograms to the app's meter provider, and stops on close", async () => {
    const network = new InProcessNetwork();
    nodes = await Promise.all(
      ids.map((id) =>
        RaftNode.start<KvCommand, KvResult>({
          id,
          config: { voters: ids },
          logStore: new MemoryLogStore(),
          snapshotStore: new MemorySnapshotStore(),
          stateMachine: new KvStateMachine(),
          transport: network.transport(id),
          tickMs: 5,
        }),
      ),
    );
    const reader = new TestReader();
    const provider = new MeterProvider({ readers: [reader] });
    const meter = provider.getMeter('test');
    const instrumentations = nodes.map((node) =>
      instrumentRaftNode(node, { meter, attributes: { cluster: 'bank' } }),
    );

    await waitUntil(() => nodes.some((n) => n.status().role === 'leader'), 'a leader');
    const leader = nodes.find((n) => n.status().role === 'leader') as KvNode;
    for (let i = 0; i < 5; i++) await leader.propose({ op: 'put', key: `k${i}`, value: 'v' });
    await expect(leader.propose({ op: 'nope' } as unknown as KvCommand)).rejects.toThrow();
    await leader.read(() => 1);
    await leader.read(() => 1, { consistency: 'local' });
    const stored = await leader.takeSnapshot();
    const target = leader.status().commitIndex;
    await waitUntil(() => nodes.every((n) => n.status().appliedIndex >= target), 'convergence');
    // One follower cut off falls behind while the leader goes on.
    const lagging = nodes.find((n) => n !== leader) as KvNode;
    network.partition(lagging.id);
    for (let i = 0; i < 3; i++) await leader.propose({ op: 'put', key: `late${i}`, value: 'v' });

    const { resourceMetrics: m } = await reader.collect();
    const at = { 'raft.node': leader.id, cluster: 'bank' };
    const status = leader.status();
    expect(value(m, 'raft.term', at)).toBe(status.term);
    expect(value(m, 'raft.role', { ...at, 'raft.role': 'leader' })).toBe(1);
    expect(value(m, 'raft.role', { ...at, 'raft.role': 'follower' })).toBe(0);
    expect(value(m, 'raft.role', { 'raft.node': lagging.id, 'raft.role': 'follower' })).toBe(1);
    expect(value(m, 'raft.commit_index', at)).toBe(status.commitIndex);
    expect(value(m, 'raft.applied_index', at)).toBe(status.appliedIndex);
    expect(value(m, 'raft.last_index', at)).toBe(status.lastIndex);
    expect(value(m, 'raft.snapshot_index', at)).toBe(stored?.index);
    const lag = (peer: NodeId) => value(m, 'raft.replication.lag', { ...at, 'raft.peer': peer });
    expect(lag(lagging.id)).toBe(status.lastIndex - (status.progress[lagging.id]?.match ?? 0));
    expect(lag(lagging.id)).toBeGreaterThanOrEqual(3);
    // Only the leader reports lag, and not for itself.
    expect(points(m, 'raft.replication.lag')).toHaveLength(2);

    const outcome = (o: string) =>
      value(m, 'raft.proposals', { ...at, 'raft.proposal.outcome': o });
    expect(outcome('applied')).toBe(8);
    expect(outcome('rejected')).toBe(1);
    expect(
      histogram(m, 'raft.proposal.duration', { ...at, 'raft.proposal.outcome': 'applied' }).count,
    ).toBe(8);
    expect(
      value(m, 'raft.reads', {
        ...at,
        'raft.read.consistency': 'linearizable',
        'raft.read.ok': true,
      }),
    ).toBe(1);
    expect(value(m, 'raft.reads', { ...at, 'raft.read.consistency': 'local' })).toBe(1);
    const elections = points(m, 'raft.elections').reduce((sum, p) => sum + (p.value as number), 0);
    expect(elections).toBeGreaterThanOrEqual(1);
    expect(histogram(m, 'raft.persist.duration', at).count).toBeGreaterThan(0);
    const applied = histogram(m, 'raft.apply.entries', at);
    expect(applied.sum).toBe(status.appliedIndex);
    const size = histogram(m, 'raft.snapshot.size', { ...at, 'raft.snapshot.cause': 'taken' });
    expect(size).toMatchObject({ count: 1, sum: stored?.size });

    for (const instrumentation of instrumentations) instrumentation.close();
    await leader.propose({ op: 'put', key: 'after', value: 'v' });
    const { resourceMetrics: after } = await reader.collect();
    // Closed: the gauges are no longer read (the SDK keeps their last values), the counters no
    // longer counted.
    expect(leader.status().commitIndex).toBeGreaterThan(status.commitIndex);
    expect(value(after, 'raft.commit_index', at)).toBe(status.commitIndex);
    expect(value(after, 'raft.proposals', { ...at, 'raft.proposal.outcome': 'applied' })).toBe(8);
    await provider.shutdown();
  });
});

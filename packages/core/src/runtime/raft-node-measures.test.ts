import { describe, expect, it } from 'vitest';
import { InProcessNetwork } from '../testing/in-process-transport.ts';
import { type KvCommand, type KvResult, KvStateMachine } from '../testing/kv-state-machine.ts';
import { MemoryLogStore } from '../testing/memory-log-store.ts';
import { MemorySnapshotStore } from '../testing/memory-snapshot-store.ts';
import { waitFor } from '../testing/test-cluster.test-helpers.ts';
import { RaftNode } from './raft-node.ts';
import type { RaftNodeEvents } from './raft-node-events.ts';

type Measured = 'persist' | 'apply' | 'proposal' | 'read' | 'snapshot';
type Seen = { [E in Measured]: RaftNodeEvents[E][0][] };

function record(node: RaftNode<KvCommand, KvResult>): Seen {
  const seen: Seen = { persist: [], apply: [], proposal: [], read: [], snapshot: [] };
  node.on('persist', (e) => seen.persist.push(e));
  node.on('apply', (e) => seen.apply.push(e));
  node.on('proposal', (e) => seen.proposal.push(e));
  node.on('read', (e) => seen.read.push(e));
  node.on('snapshot', (e) => seen.snapshot.push(e));
  return seen;
}

describe('the events a metrics exporter reads', () => {
  it('time persists, applies, proposals by outcome, reads by consistency, and snapshots with their size', async () => {
    const node = await RaftNode.start<KvCommand, KvResult>({
      id: 'n1',
      config: { voters: ['n1'] },
      logStore: new MemoryLogStore(),
      snapshotStore: new MemorySnapshotStore(),
      stateMachine: new KvStateMachine(),
      transport: new InProcessNetwork().transport('n1'),
      tickMs: 5,
    });
    try {
      const seen = record(node);
      await waitFor(() => node.status().role === 'leader', { what: 'a leader' });
      await node.propose({ op: 'put', key: 'a', value: '1' });
      await node.propose({ op: 'put', key: 'b', value: '2' });
      const malformed = { op: 'bogus' } as unknown as KvCommand;
      await expect(node.propose(malformed)).rejects.toThrow();
      await node.read(() => 1);
      await node.read(() => 2, { consistency: 'local' });
      await expect(
        node.read(() => {
          throw new Error('the read failed');
        }),
      ).rejects.toThrow('the read failed');
      const stored = await node.takeSnapshot();

      expect(seen.proposal.map((e) => e.outcome)).toEqual(['applied', 'applied', 'rejected']);
      expect(seen.read.map((e) => [e.consistency, e.ok])).toEqual([
        ['linearizable', true],
        ['local', true],
        ['linearizable', false],
      ]);
      // Three commands and the leader's no-op entry were persisted and applied.
      expect(seen.persist.reduce((sum, e) => sum + e.entries, 0)).toBe(4);
      expect(seen.apply.reduce((sum, e) => sum + e.entries, 0)).toBe(4);
      expect(seen.apply.at(-1)?.appliedIndex).toBe(node.status().appliedIndex);
      expect(seen.snapshot).toEqual([
        expect.objectContaining({ cause: 'taken', index: stored?.index, bytes: stored?.size }),
      ]);
      expect(stored?.size).toBeGreaterThan(0);
      for (const event of [...seen.persist, ...seen.apply, ...seen.proposal, ...seen.read]) {
        expect(event.durationMs).toBeGreaterThanOrEqual(0);
      }
    } finally {
      await node.close();
    }
  });
});

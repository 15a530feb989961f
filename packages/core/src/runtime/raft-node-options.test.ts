import { describe, expect, it } from 'vitest';
import { InProcessNetwork } from '../testing/in-process-transport.ts';
import { type KvCommand, type KvResult, KvStateMachine } from '../testing/kv-state-machine.ts';
import { MemoryLogStore } from '../testing/memory-log-store.ts';
import { MemorySnapshotStore } from '../testing/memory-snapshot-store.ts';
import { RaftNode } from './raft-node.ts';

/** Starts a one-node cluster with the given piece size. */
function startWith(snapshotChunkBytes: number) {
  return RaftNode.start<KvCommand, KvResult>({
    id: 'n1',
    config: { voters: ['n1'] },
    logStore: new MemoryLogStore(),
    snapshotStore: new MemorySnapshotStore(),
    stateMachine: new KvStateMachine(),
    transport: new InProcessNetwork().transport('n1'),
    snapshotChunkBytes,
  });
}

describe('RaftNode.start checks snapshotChunkBytes', () => {
  it('refuses a snapshotChunkBytes that is not a positive whole number (0 would send empty pieces forever, a fraction pieces that overlap and never complete)', async () => {
    for (const snapshotChunkBytes of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53]) {
      await expect(startWith(snapshotChunkBytes)).rejects.toThrow(
        `snapshotChunkBytes must be a positive whole number of bytes, got ${snapshotChunkBytes}`,
      );
    }
    await using node = await startWith(1);
    expect(node.status().closed).toBe(false);
  });
});

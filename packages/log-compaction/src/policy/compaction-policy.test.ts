import { RaftNode, SnapshotExportRefusedError } from '@tsraft/core';
import {
  InProcessNetwork,
  type KvCommand,
  type KvResult,
  KvStateMachine,
  MemoryLogStore,
  MemorySnapshotStore,
} from '@tsraft/core/testing';
import { describe, expect, it } from 'vitest';
import { CompactionPolicy } from './compaction-policy.ts';

/** A one-node cluster on memory stores, leading. */
async function singleNode(
  stateMachine = new KvStateMachine(),
): Promise<RaftNode<KvCommand, KvResult> & AsyncDisposable> {
  const node = await RaftNode.start<KvCommand, KvResult>({
    id: 'n1',
    config: { voters: ['n1'] },
    logStore: new MemoryLogStore(),
    snapshotStore: new MemorySnapshotStore(),
    stateMachine,
    transport: new InProcessNetwork().transport('n1'),
    tickMs: 5,
    tuning: { electionTicks: 10, heartbeatTicks: 2 },
  });
  await expect.poll(() => node.status().role).toBe('leader');
  return node;
}

const put = (key: string, value: string): KvCommand => ({ op: 'put', key, value });

describe('the compaction policy (Raft paper 7: snapshots bound the log)', () => {
  it('takes a snapshot after the configured number of applied entries, and the log shrinks', async () => {
    await using node = await singleNode();
    await using _policy = CompactionPolicy.start(node, {
      afterEntries: 20,
      afterBytes: 1 << 30,
      retainEntries: 5,
    });
    for (let i = 0; i < 19; i++) await node.propose(put(`k${i}`, 'v'));
    // 19 commands and the leader's no-op: the 20th applied entry.
    await expect.poll(() => node.status().snapshotIndex).toBeGreaterThanOrEqual(20);
    const { snapshotIndex, firstIndex } = node.status();
    // The last 5 entries stay behind the snapshot.
    expect(firstIndex).toBe(snapshotIndex - 5 + 1);
  });

  it('takes a snapshot after the configured bytes, whatever the number of entries', async () => {
    await using node = await singleNode();
    await using _policy = CompactionPolicy.start(node, { afterEntries: 1000, afterBytes: 10_000 });
    await node.propose(put('a', 'x'.repeat(6000)));
    expect(node.status().snapshotIndex).toBe(0);
    await node.propose(put('b', 'x'.repeat(6000)));
    await expect.poll(() => node.status().snapshotIndex).toBe(node.status().appliedIndex);
  });

  it('keeps the log bounded during a long write run', async () => {
    await using node = await singleNode();
    await using _policy = CompactionPolicy.start(node, { afterEntries: 50, retainEntries: 10 });
    let longest = 0;
    for (let i = 0; i < 600; i++) {
      await node.propose(put(`k${i % 40}`, `${i}`));
      const { lastIndex, firstIndex } = node.status();
      longest = Math.max(longest, lastIndex - firstIndex + 1);
    }
    expect(node.status().snapshotIndex).toBeGreaterThan(500);
    // A snapshot after 50 applied entries keeps 10; proposals go on while it is taken.
    expect(longest).toBeLessThan(110);
  });

  it('takes a snapshot when triggered, and stops watching once stopped', async () => {
    await using node = await singleNode();
    const policy = CompactionPolicy.start(node, { afterEntries: 5 });
    await node.propose(put('a', '1'));
    const taken = await policy.trigger();
    expect(taken?.index).toBe(node.status().appliedIndex);
    await expect(policy.trigger()).resolves.toBeUndefined();
    await policy.stop();
    for (let i = 0; i < 10; i++) await node.propose(put(`k${i}`, 'v'));
    expect(node.status().snapshotIndex).toBe(taken?.index);
  });

  it('logs a snapshot the state machine refuses to export and tries again later; the node goes on', async () => {
    const kv = new KvStateMachine();
    const exportSnapshot = kv.exportSnapshot.bind(kv);
    let refusing = true;
    kv.exportSnapshot = async (options) => {
      if (refusing) throw new SnapshotExportRefusedError('this state cannot be snapshotted');
      return exportSnapshot(options);
    };
    const errors: unknown[] = [];
    const logger = {
      debug: () => {},
      info: () => {},
      warn: () => {},
      error: (context: object | string) => errors.push(context),
    };
    await using node = await singleNode(kv);
    await using _policy = CompactionPolicy.start(node, {
      afterEntries: 5,
      retryAfterMs: 1,
      logger,
    });
    for (let i = 0; i < 5; i++) await node.propose(put(`k${i}`, 'v'));
    // Generous waits: on a loaded CI machine a snapshot may take more than expect.poll's 1 s.
    await expect.poll(() => errors.length, { timeout: 15_000 }).toBeGreaterThan(0);
    expect(errors[0]).toMatchObject({ err: expect.any(SnapshotExportRefusedError) });
    expect(node.status().closed).toBe(false);
    expect(node.status().snapshotIndex).toBe(0);
    refusing = false;
    await node.propose(put('after', 'v'));
    await expect.poll(() => node.status().snapshotIndex, { timeout: 15_000 }).toBeGreaterThan(5);
  });

  it('refuses bounds that are not positive integers', async () => {
    await using node = await singleNode();
    expect(() => CompactionPolicy.start(node, { afterEntries: 0 })).toThrow(RangeError);
    expect(() => CompactionPolicy.start(node, { afterBytes: 1.5 })).toThrow(RangeError);
    expect(() => CompactionPolicy.start(node, { retainEntries: -1 })).toThrow(RangeError);
  });
});

import { type NodeId, RaftNode } from '@tsraft/core';
import {
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

/** A request a node sent to a peer, as it went on the wire. */
interface Captured {
  readonly from: NodeId;
  readonly url: string;
  readonly init: RequestInit;
}

describe('a captured signed peer request cannot be replayed', () => {
  it('a forwarded proposal without a client session, replayed, is refused and applies once', async () => {
    const ids = ['n1', 'n2', 'n3'];
    const peers: Record<NodeId, string> = {};
    for (const id of ids) peers[id] = `http://127.0.0.1:${await pickLoopbackPort()}`;
    const captured: Captured[] = [];
    const machines = new Map<NodeId, KvStateMachine>();
    const nodes: RaftNode<KvCommand, KvResult>[] = [];
    try {
      for (const id of ids) {
        const machine = new KvStateMachine();
        machines.set(id, machine);
        const transport = createTrpcTransport({
          nodeId: id,
          peers,
          secret: SECRET,
          // Sends through fetch and keeps a copy of each forwarded proposal: an eavesdropper.
          fetch: (url, init) => {
            if (url.endsWith('/propose')) captured.push({ from: id, url, init });
            return fetch(url, init);
          },
        });
        nodes.push(
          await RaftNode.start<KvCommand, KvResult>({
            id,
            config: { voters: ids },
            logStore: new MemoryLogStore(),
            snapshotStore: new MemorySnapshotStore(),
            stateMachine: machine,
            transport,
            tickMs: 10,
          }),
        );
      }
      let leader: NodeId | null = null;
      await expect
        .poll(() => {
          leader = nodes[0]?.status().leaderId ?? null;
          return leader !== null && nodes.every((node) => node.status().leaderId === leader);
        })
        .toBe(true);
      const follower = nodes.find((node) => node.id !== leader) as RaftNode<KvCommand, KvResult>;
      await follower.propose({ op: 'append', key: 'k', value: 'x' });
      const proposal = captured.find((request) => request.from === follower.id) as Captured;
      expect(proposal).toBeDefined();

      const replay = await fetch(proposal.url, proposal.init);
      expect(replay.status).toBe(401);
      expect(await replay.text()).toMatch(/replayed request is refused/);

      // A later write applied everywhere: the replay, had it been accepted, would be before it.
      await follower.propose({ op: 'put', key: 'barrier', value: 'b' });
      for (const machine of machines.values()) {
        await expect.poll(() => machine.get('barrier')).toBe('b');
        expect(machine.get('k')).toBe('x');
      }
    } finally {
      await Promise.all(nodes.map((node) => node.close()));
    }
  });
});

import { type Logger, type NodeId, RaftNode } from '@tsraft/core';
import {
  type KvCommand,
  type KvResult,
  KvStateMachine,
  MemoryLogStore,
  MemorySnapshotStore,
  pickLoopbackPort,
} from '@tsraft/core/testing';
import { describe, expect, it } from 'vitest';
import { kvCommand } from './raft-app.test-helpers.ts';
import { createRaftProcedures } from './raft-procedures.ts';
import { createTrpcTransport } from './trpc-transport.ts';

/** A logger that keeps the `warn` lines. */
function warnings(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const ignore = (): void => {};
  const logger: Logger = {
    debug: ignore,
    info: ignore,
    error: ignore,
    warn: (context: object | string, message?: string) => {
      lines.push(typeof context === 'string' ? context : (message ?? ''));
    },
  };
  return { logger, lines };
}

describe('misconfiguration is loud', () => {
  it('nodes with different cluster secrets warn with what to do and emit peer-unauthorized', async () => {
    const ids = ['n1', 'n2'];
    const peers: Record<NodeId, string> = {};
    for (const id of ids) peers[id] = `http://127.0.0.1:${await pickLoopbackPort()}`;
    const secrets: Record<NodeId, string> = {
      n1: 'the first secret of this cluster',
      n2: 'a second secret, which differs',
    };
    const logs = new Map(ids.map((id) => [id, warnings()]));
    const refused: { node: NodeId; peer: NodeId; message: string }[] = [];
    const nodes: RaftNode<KvCommand, KvResult>[] = [];
    try {
      for (const id of ids) {
        const { logger } = logs.get(id) as ReturnType<typeof warnings>;
        const node = await RaftNode.start<KvCommand, KvResult>({
          id,
          config: { voters: ids },
          logStore: new MemoryLogStore(),
          snapshotStore: new MemorySnapshotStore(),
          stateMachine: new KvStateMachine(),
          transport: createTrpcTransport({
            nodeId: id,
            peers,
            secret: secrets[id] as string,
            logger,
          }),
          logger,
          tickMs: 10,
        });
        node.on('peer-unauthorized', ({ peer, error }) => {
          refused.push({ node: id, peer, message: error.message });
        });
        nodes.push(node);
      }
      await expect
        .poll(() => refused.map(({ node, peer }) => `${node}->${peer}`).sort(), { timeout: 5000 })
        .toEqual(['n1->n2', 'n2->n1']);
      expect(refused[0]?.message).toMatch(/refused this node's credentials \(401/);
      for (const id of ids) {
        const lines = logs.get(id)?.lines ?? [];
        // The sender's side and the receiver's side both say what to do.
        expect(lines.some((line) => /give every node the same cluster secret/.test(line))).toBe(
          true,
        );
        expect(
          lines.some((line) => /do not verify with this node's cluster secret/.test(line)),
        ).toBe(true);
      }
      expect(nodes.every((node) => node.status().leaderId === null)).toBe(true);
    } finally {
      await Promise.all(nodes.map((node) => node.close()));
    }
  });

  it('refuses a proposeTimeoutMs a timer cannot wait (Node would fire it after 1 ms), naming the limit', () => {
    const node = (): undefined => undefined;
    for (const proposeTimeoutMs of [0, -1, Number.NaN, Number.POSITIVE_INFINITY, 3_000_000_000]) {
      expect(() => createRaftProcedures({ node, command: kvCommand, proposeTimeoutMs })).toThrow(
        /proposeTimeoutMs must be more than 0 and at most 2147483647 ms/,
      );
    }
    expect(() =>
      createRaftProcedures({ node, command: kvCommand, proposeTimeoutMs: 2 ** 31 - 1 }),
    ).not.toThrow();
  });
});

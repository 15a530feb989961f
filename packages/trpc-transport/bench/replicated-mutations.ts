/**
 * Benchmark of the tRPC plugin: replicated mutations/s through a user's app router on a 3-node
 * cluster in this process (in-memory log stores, KV state machine, the tRPC peer transport over
 * loopback). Each node serves its peers under `/raft` and the app under `/trpc` on one port.
 *
 *   pnpm --filter @tsraft/trpc-transport bench:plugin [--seconds 2]
 *
 * Rows: a stamped `put` (64-byte value) through `raftSessionLink` + `httpLink` to the leader and to a follower
 * (which forwards it), with 1 and 64 calls in flight; and, as the reference, `RaftNode.propose`
 * called directly on the leader (Raft and the peer transport without the app's HTTP hop).
 * Everything shares this process's cores, so compare rows of one run, not absolute numbers; the
 * CPU time per call (of the whole process) depends less on what else runs on the machine.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createTRPCClient, httpLink } from '@trpc/client';
import { initTRPC } from '@trpc/server';
import { createHTTPHandler } from '@trpc/server/adapters/standalone';
import { benchCommandLine, numberOption } from '@tsraft/bench-cli';
import { type NodeId, RaftNode } from '@tsraft/core';
import {
  type KvCommand,
  type KvResult,
  KvStateMachine,
  MemoryLogStore,
  MemorySnapshotStore,
} from '@tsraft/core/testing';
import { createRaftProcedures } from '../src/raft-procedures.ts';
import { raftSessionLink } from '../src/raft-session-link.ts';
import { createTrpcTransport } from '../src/trpc-transport.ts';
import { kvCommand } from './kv-command.ts';

const SECRET = 'the benchmark cluster secret';
const VALUE = 'x'.repeat(64);

type KvNode = RaftNode<KvCommand, KvResult>;

function kvApp(node: () => KvNode) {
  const raft = createRaftProcedures({ node, command: kvCommand });
  return initTRPC.create().router({ execute: raft.replicatedMutation });
}

interface BenchNode {
  readonly node: KvNode;
  readonly server: Server;
}

async function startCluster(ids: NodeId[]): Promise<Map<NodeId, BenchNode>> {
  const servers = new Map<NodeId, Server>();
  const peers: Record<NodeId, string> = {};
  for (const id of ids) {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    servers.set(id, server);
    peers[id] = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }
  const nodes = new Map<NodeId, BenchNode>();
  await Promise.all(
    ids.map(async (id) => {
      const server = servers.get(id) as Server;
      const transport = createTrpcTransport({ nodeId: id, peers, secret: SECRET, listen: false });
      let node: KvNode | undefined;
      const app = createHTTPHandler({
        router: kvApp(() => node as KvNode),
        basePath: '/trpc',
      });
      server.on('request', (req, res) => {
        if (!transport.handle(req, res)) app(req, res);
      });
      node = await RaftNode.start<KvCommand, KvResult>({
        id,
        config: { voters: ids },
        logStore: new MemoryLogStore(),
        snapshotStore: new MemorySnapshotStore(),
        stateMachine: new KvStateMachine(),
        transport,
      });
      nodes.set(id, { node, server });
    }),
  );
  return nodes;
}

async function leaderOf(nodes: Map<NodeId, BenchNode>): Promise<KvNode> {
  for (;;) {
    const leader = [...nodes.values()].find(({ node }) => node.status().role === 'leader');
    if (leader !== undefined) return leader.node;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

interface Row {
  readonly path: string;
  readonly inFlight: number;
  readonly calls: number;
  readonly seconds: number;
  /** CPU time of this whole process (all three nodes and the clients), in microseconds. */
  readonly cpuMicros: number;
  readonly latencies: number[];
}

async function measure(
  path: string,
  inFlight: number,
  seconds: number,
  call: (loop: number) => Promise<unknown>,
): Promise<Row> {
  const warmUntil = performance.now() + 300;
  while (performance.now() < warmUntil) await call(0);
  const latencies: number[] = [];
  const cpu = process.cpuUsage();
  const started = performance.now();
  const until = started + seconds * 1000;
  await Promise.all(
    Array.from({ length: inFlight }, async (_, loop) => {
      while (performance.now() < until) {
        const t0 = performance.now();
        await call(loop);
        latencies.push(performance.now() - t0);
      }
    }),
  );
  const used = process.cpuUsage(cpu);
  return {
    path,
    inFlight,
    calls: latencies.length,
    seconds: (performance.now() - started) / 1000,
    cpuMicros: used.user + used.system,
    latencies,
  };
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? Number.NaN;
}

/**
 * Runs the plugin benchmark for `seconds` per row and prints its table: what
 * `pnpm --filter @tsraft/trpc-transport bench` shows after the peer transport's tables.
 */
export async function benchReplicatedMutations(options: { seconds: number }): Promise<void> {
  const ids = ['n1', 'n2', 'n3'];
  const nodes = await startCluster(ids);
  const leader = await leaderOf(nodes);
  const follower = ids.find((id) => id !== leader.id) as NodeId;
  const appUrl = (id: NodeId): string => {
    const server = (nodes.get(id) as BenchNode).server;
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}/trpc`;
  };
  const client = (id: NodeId) =>
    createTRPCClient<ReturnType<typeof kvApp>>({
      links: [raftSessionLink(), httpLink({ url: appUrl(id) })],
    });

  console.log(
    `\nReplicated mutations through the tRPC plugin: 3 nodes in this process, in-memory log stores, ${options.seconds} s per row`,
  );
  const rows: Row[] = [];
  for (const inFlight of [1, 64]) {
    const toLeader = client(leader.id);
    rows.push(
      await measure('plugin, to the leader', inFlight, options.seconds, (loop) =>
        toLeader.execute.mutate({ op: 'put', key: `k${loop}`, value: VALUE }),
      ),
    );
    const toFollower = client(follower);
    rows.push(
      await measure('plugin, to a follower (forwarded)', inFlight, options.seconds, (loop) =>
        toFollower.execute.mutate({ op: 'put', key: `k${loop}`, value: VALUE }),
      ),
    );
    rows.push(
      await measure(
        'RaftNode.propose on the leader (no app HTTP)',
        inFlight,
        options.seconds,
        (loop) => leader.propose({ op: 'put', key: `k${loop}`, value: VALUE }),
      ),
    );
  }
  console.table(
    rows.map((row) => {
      const sorted = [...row.latencies].sort((a, b) => a - b);
      return {
        path: row.path,
        'in flight': row.inFlight,
        'mutations/s': Math.round(row.calls / row.seconds),
        'p50 ms': percentile(sorted, 0.5).toFixed(2),
        'p99 ms': percentile(sorted, 0.99).toFixed(2),
        'CPU µs/call': Math.round(row.cpuMicros / row.calls),
      };
    }),
  );

  await Promise.all(
    [...nodes.values()].map(async ({ node, server }) => {
      server.closeAllConnections();
      server.close();
      await node.close();
    }),
  );
}

if (import.meta.main) {
  const seconds = await benchCommandLine(
    {
      program: 'trpc-transport bench:plugin',
      options: { seconds: { type: 'string', default: '2' } },
    },
    ({ values }) => numberOption('--seconds', values.seconds, { above: 0, atMost: 600 }),
  );
  await benchReplicatedMutations({ seconds });
}

/**
 * Benchmark of the app hop alone: the CPU a tRPC client process and a server process spend per
 * call, for the link stacks a user can put in front of a replicated mutation, beside plain tRPC.
 *
 *   ./dev --filter @tsraft/trpc-transport bench:hop [--seconds 3] [--inflight 1,64] [--pace-ms 0]
 *     [--stacks plain,put,links,batch-plain,batch-links]
 *
 * The server is a child process (this file with `--serve`): `createRaftHttpServer` with a router
 * holding `plain` (a tRPC mutation that answers at once, no Raft) and `put` (the plugin's
 * `replicated` procedure proposing to a one-voter `RaftNode` with in-memory stores and the KV
 * state machine, so Raft commits after its own persist and no peer round trip is measured).
 * The client (this process) keeps `inflight` calls outstanding for `--seconds` after a 1 s
 * warm-up; each row gives calls/s and the CPU of each process per call (`process.cpuUsage`).
 *
 * `--pace-ms N` makes each loop wait N ms between its calls (as a client of a replicated store
 * waits for the write to reach a majority): it shows what a call costs at a low rate, when the
 * processes sleep between calls. Both processes share this machine's cores: compare rows of one
 * run.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { createTRPCClient, httpBatchLink, httpLink, type TRPCLink } from '@trpc/client';
import { initTRPC } from '@trpc/server';
import {
  benchCommandLine,
  choiceListOption,
  integerListOption,
  numberOption,
} from '@tsraft/bench-cli';
import { RaftNode } from '@tsraft/core';
import {
  type KvCommand,
  type KvResult,
  KvStateMachine,
  MemoryLogStore,
  MemorySnapshotStore,
} from '@tsraft/core/testing';
import { z } from 'zod';
import { raftFailoverLink } from '../src/raft-failover-link.ts';
import { createRaftHttpServer } from '../src/raft-http-server.ts';
import { createRaftProcedures } from '../src/raft-procedures.ts';
import { raftSessionLink } from '../src/raft-session-link.ts';
import { createTrpcTransport } from '../src/trpc-transport.ts';

const VALUE = 'v'.repeat(256);
const putInput = z.object({ key: z.string().min(1).max(64), value: z.string().max(1024) });
const kvCommand: z.ZodType<KvCommand, KvCommand> = z.object({
  op: z.literal('put'),
  key: z.string(),
  value: z.string(),
});

// ---------------------------------------------------------------- the server (child process)

function hopRouter(node: () => RaftNode<KvCommand, KvResult>) {
  const raft = createRaftProcedures({ node, command: kvCommand });
  const t = initTRPC.create();
  const router = t.router({
    plain: t.procedure.input(putInput).mutation(() => ({ ok: true })),
    put: t.procedure
      .concat(raft.replicated)
      .input(putInput)
      .mutation(({ ctx, input }) => ctx.raft.propose({ op: 'put', ...input })),
  });
  return { raft, router };
}

type HopRouter = ReturnType<typeof hopRouter>['router'];

async function serve(): Promise<void> {
  let node: RaftNode<KvCommand, KvResult> | undefined;
  const { raft, router } = hopRouter(() => node as RaftNode<KvCommand, KvResult>);
  const transport = createTrpcTransport({
    nodeId: 'n1',
    peers: { n1: 'http://127.0.0.1:1' },
    secret: 'the hop benchmark secret',
    listen: false,
  });
  const server = createRaftHttpServer({ router, transport, raft, basePath: '/trpc' });
  const { port } = await server.listen({ port: 0 });
  node = await RaftNode.start<KvCommand, KvResult>({
    id: 'n1',
    config: { voters: ['n1'] },
    logStore: new MemoryLogStore(),
    snapshotStore: new MemorySnapshotStore(),
    stateMachine: new KvStateMachine(),
    transport,
  });
  while (node.status().role !== 'leader') await new Promise((r) => setTimeout(r, 10));
  process.on('message', () => {
    const used = process.cpuUsage();
    process.send?.({ cpuMicros: used.user + used.system });
  });
  process.on('disconnect', () => process.exit(0));
  process.send?.({ port });
}

// ---------------------------------------------------------------- the client (this process)

/** A link stack: what the client puts in front of the server, and which procedure it calls. */
interface Stack {
  /** Its name in `--stacks`. */
  readonly id: string;
  readonly name: string;
  readonly procedure: 'plain' | 'put';
  readonly links: (url: string) => TRPCLink<HopRouter>[];
}

const STACKS: readonly Stack[] = [
  {
    id: 'plain',
    name: 'httpLink -> plain',
    procedure: 'plain',
    links: (url) => [httpLink({ url })],
  },
  { id: 'put', name: 'httpLink -> put', procedure: 'put', links: (url) => [httpLink({ url })] },
  {
    id: 'links',
    name: 'session + failover(httpLink) -> put',
    procedure: 'put',
    links: (url) => [
      raftSessionLink(),
      raftFailoverLink({ nodes: { n1: url }, link: (u) => httpLink({ url: u }) }),
    ],
  },
  {
    id: 'batch-plain',
    name: 'httpBatchLink -> plain',
    procedure: 'plain',
    links: (url) => [httpBatchLink({ url })],
  },
  {
    id: 'batch-links',
    name: 'session + failover(httpBatchLink) -> put',
    procedure: 'put',
    links: (url) => [
      raftSessionLink(),
      raftFailoverLink({ nodes: { n1: url }, link: (u) => httpBatchLink({ url: u }) }),
    ],
  },
];

class ServerProcess {
  readonly #child: ChildProcess;
  constructor(child: ChildProcess) {
    this.#child = child;
  }
  cpuMicros(): Promise<number> {
    return new Promise((resolve) => {
      this.#child.once('message', (m: { cpuMicros: number }) => resolve(m.cpuMicros));
      this.#child.send({});
    });
  }
}

interface Row {
  readonly stack: string;
  readonly inflight: number;
  readonly calls: number;
  readonly seconds: number;
  readonly clientMicros: number;
  readonly serverMicros: number;
}

async function measure(
  server: ServerProcess,
  stack: Stack,
  url: string,
  options: { inflight: number; seconds: number; paceMs: number },
): Promise<Row> {
  const client = createTRPCClient<HopRouter>({ links: stack.links(url) });
  const call = (key: string) => client[stack.procedure].mutate({ key, value: VALUE });
  let phase: 'warmup' | 'window' | 'done' = 'warmup';
  let calls = 0;
  const loops = Array.from({ length: options.inflight }, async (_, loop) => {
    let i = 0;
    while (phase !== 'done') {
      await call(`k${loop}-${i++ % 100}`);
      if (phase === 'window') calls++;
      if (options.paceMs > 0) await new Promise((r) => setTimeout(r, options.paceMs));
    }
  });
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const serverBefore = await server.cpuMicros();
  const clientBefore = process.cpuUsage();
  const started = performance.now();
  phase = 'window';
  await new Promise((resolve) => setTimeout(resolve, options.seconds * 1000));
  phase = 'done';
  const seconds = (performance.now() - started) / 1000;
  const clientUsed = process.cpuUsage(clientBefore);
  const serverAfter = await server.cpuMicros();
  await Promise.all(loops);
  return {
    stack: stack.name,
    inflight: options.inflight,
    calls,
    seconds,
    clientMicros: clientUsed.user + clientUsed.system,
    serverMicros: serverAfter - serverBefore,
  };
}

async function runClient(options: {
  seconds: number;
  levels: number[];
  paceMs: number;
  stacks: readonly Stack[];
}): Promise<void> {
  const child = fork(import.meta.filename, ['--serve'], { execArgv: process.execArgv });
  const { port } = await new Promise<{ port: number }>((resolve) => child.once('message', resolve));
  const server = new ServerProcess(child);
  const url = `http://127.0.0.1:${port}/trpc`;
  const rows: Row[] = [];
  for (const inflight of options.levels) {
    for (const stack of options.stacks) {
      rows.push(await measure(server, stack, url, { ...options, inflight }));
    }
  }
  console.log(
    `\nThe app hop: client and server processes, ${options.seconds} s per row${options.paceMs > 0 ? `, ${options.paceMs} ms between a loop's calls` : ''}`,
  );
  console.table(
    rows.map((row) => ({
      stack: row.stack,
      'in flight': row.inflight,
      'calls/s': Math.round(row.calls / row.seconds),
      'client µs/call': Math.round(row.clientMicros / row.calls),
      'server µs/call': Math.round(row.serverMicros / row.calls),
    })),
  );
  child.disconnect();
}

if (import.meta.main) {
  if (process.argv.includes('--serve')) {
    await serve();
  } else {
    const ids = STACKS.map((stack) => stack.id);
    const options = await benchCommandLine(
      {
        program: 'trpc-transport bench:hop',
        options: {
          seconds: { type: 'string', default: '3' },
          inflight: { type: 'string', default: '1,64' },
          'pace-ms': { type: 'string', default: '0' },
          stacks: { type: 'string', default: ids.join(',') },
        },
      },
      ({ values }) => ({
        seconds: numberOption('--seconds', values.seconds, { above: 0, atMost: 600 }),
        levels: integerListOption('--inflight', values.inflight, { min: 1 }),
        paceMs: numberOption('--pace-ms', values['pace-ms'], { atLeast: 0 }),
        stacks: choiceListOption('--stacks', values.stacks, ids).map(
          (id) => STACKS.find((stack) => stack.id === id) as Stack,
        ),
      }),
    );
    await runClient(options);
  }
}

/**
 * A user's app, as it would be written against the published packages: a tRPC 11 + Kysely bank
 * that gets replicated writes from tsraft. The packaging test installs the packed tarballs with
 * the oldest and the newest supported tRPC, zod, Kysely and pg into a fresh folder, typechecks
 * this file (no casts, and the types that reach the client are asserted below), then runs it: a
 * 3-node cluster on in-memory PGlite databases, written to through the client links, its metrics
 * read through the OpenTelemetry API from the app's own SDK.
 */
import { createServer } from 'node:http';
import { PGlite } from '@electric-sql/pglite';
import { metrics } from '@opentelemetry/api';
import { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import { createTRPCClient, httpLink } from '@trpc/client';
import { initTRPC } from '@trpc/server';
import { createHTTPHandler } from '@trpc/server/adapters/standalone';
import { RaftNode } from '@tsraft/core';
import { pickLoopbackPort } from '@tsraft/core/testing';
import { instrumentRaftNode } from '@tsraft/opentelemetry';
import {
  type CommandOf,
  commandSchema,
  createPostgresStateMachine,
  defineCommand,
  domainError,
  PostgresLogStore,
  PostgresSnapshotStore,
  type ResultMap,
  type ResultOf,
} from '@tsraft/pg-storage';
import { raftErrorOf, raftFailoverLink, raftSessionLink } from '@tsraft/trpc-transport/client';
import { createTrpcTransport } from '@tsraft/trpc-transport/peer';
import { createRaftProcedures } from '@tsraft/trpc-transport/server';
import { Kysely, PGliteDialect, sql, type Transaction } from 'kysely';
import { z } from 'zod';

interface Database {
  accounts: { id: string; balance: number };
}

const commands = {
  open: defineCommand({
    input: z.object({ id: z.string().min(1), initial: z.number().int().min(0) }),
    handler: async (trx: Transaction<Database>, input) => {
      await trx.insertInto('accounts').values({ id: input.id, balance: input.initial }).execute();
      return { id: input.id, balance: input.initial };
    },
  }),
  transfer: defineCommand({
    input: z.object({ from: z.string(), to: z.string(), amount: z.number().int().positive() }),
    handler: async (trx: Transaction<Database>, input) => {
      const from = await trx
        .updateTable('accounts')
        .set((eb) => ({ balance: eb('balance', '-', input.amount) }))
        .where('id', '=', input.from)
        .returning('balance')
        .executeTakeFirst();
      if (from === undefined || Number(from.balance) < 0) {
        throw domainError('insufficient_funds', `${input.from} cannot pay ${input.amount}`);
      }
      const to = await trx
        .updateTable('accounts')
        .set((eb) => ({ balance: eb('balance', '+', input.amount) }))
        .where('id', '=', input.to)
        .returning('balance')
        .executeTakeFirstOrThrow();
      return { from: Number(from.balance), to: Number(to.balance) };
    },
  }),
};
type Commands = typeof commands;
type Command = CommandOf<Commands>;
type Result = ResultOf<Commands>;
type Node = RaftNode<Command, Result>;

/** The app's router: what the user had, plus replicated mutations and a linearizable read. */
function createAppRouter(node: () => Node, db: Kysely<Database>) {
  const raft = createRaftProcedures<Command, Result, ResultMap<Commands>>({
    node,
    command: commandSchema(commands),
  });
  const t = initTRPC.create();
  return t.router({
    hello: t.procedure.query(() => 'an existing procedure of the app'),
    open: t.procedure
      .concat(raft.replicated)
      .input(commands.open.input)
      .mutation(({ ctx, input }) => ctx.raft.propose({ name: 'open', input })),
    transfer: t.procedure
      .concat(raft.replicated)
      .input(commands.transfer.input)
      .mutation(({ ctx, input }) => ctx.raft.propose({ name: 'transfer', input })),
    balance: t.procedure
      .concat(raft.linearizableQuery)
      .input(z.object({ id: z.string() }))
      .query(async ({ input }) => {
        const row = await db
          .selectFrom('accounts')
          .select('balance')
          .where('id', '=', input.id)
          .executeTakeFirst();
        return row === undefined ? null : Number(row.balance);
      }),
  });
}
type AppRouter = ReturnType<typeof createAppRouter>;

// Compile-time checks: the client sees each procedure's own types, never `unknown`.
type Equal<A, B> =
  (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
type Client = ReturnType<typeof createTRPCClient<AppRouter>>;
const typesFlow: [
  Equal<Awaited<ReturnType<Client['open']['mutate']>>, { id: string; balance: number }>,
  Equal<Awaited<ReturnType<Client['transfer']['mutate']>>, { from: number; to: number }>,
  Equal<Awaited<ReturnType<Client['balance']['query']>>, number | null>,
  Equal<Awaited<ReturnType<Client['hello']['query']>>, string>,
] = [true, true, true, true];

/** Starts one node: its own PGlite, one HTTP server for the peer transport and the app. */
async function startNode(id: string, peers: Record<string, string>) {
  const db = new Kysely<Database>({ dialect: new PGliteDialect({ pglite: new PGlite() }) });
  await sql`create table accounts (id text primary key, balance int8 not null)`.execute(db);
  const transport = createTrpcTransport({
    nodeId: id,
    peers,
    secret: 'a cluster secret of at least 16 bytes',
    listen: false,
  });
  let node: Node | undefined;
  const app = createHTTPHandler({
    router: createAppRouter(() => {
      if (node === undefined) throw new Error('the node has not started yet');
      return node;
    }, db),
    basePath: '/trpc/',
  });
  const server = createServer((req, res) => {
    if (!transport.handle(req, res)) app(req, res);
  });
  const url = new URL(peers[id] ?? '');
  await new Promise<void>((resolve) => server.listen(Number(url.port), url.hostname, resolve));
  node = await RaftNode.start({
    id,
    config: { voters: Object.keys(peers) },
    logStore: await PostgresLogStore.open({ db }),
    snapshotStore: await PostgresSnapshotStore.open({ db }),
    stateMachine: await createPostgresStateMachine({ db, commands, tables: ['accounts'] }),
    transport,
  });
  const started = node;
  const instrumentation = instrumentRaftNode(started);
  return {
    node: started,
    async close() {
      instrumentation.close();
      await started.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await db.destroy();
    },
  };
}

/** The app's own SDK, read on demand (an exporter would do the same on a schedule). */
class PullReader extends MetricReader {
  protected override onShutdown(): Promise<void> {
    return Promise.resolve();
  }
  protected override onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
}
const reader = new PullReader();
metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }));

const peers: Record<string, string> = {};
for (const id of ['n1', 'n2', 'n3']) peers[id] = `http://127.0.0.1:${await pickLoopbackPort()}`;
const nodes = await Promise.all(Object.keys(peers).map((id) => startNode(id, peers)));
try {
  const client = createTRPCClient<AppRouter>({
    links: [
      raftSessionLink(),
      raftFailoverLink({
        nodes: Object.fromEntries(Object.entries(peers).map(([id, url]) => [id, `${url}/trpc`])),
        link: (url) => httpLink({ url }),
      }),
    ],
  });
  await client.open.mutate({ id: 'alice', initial: 100 });
  await client.open.mutate({ id: 'bob', initial: 0 });
  const moved = await client.transfer.mutate({ from: 'alice', to: 'bob', amount: 30 });
  const refused = await client.transfer
    .mutate({ from: 'bob', to: 'alice', amount: 1000 })
    .then(() => undefined, raftErrorOf);
  const balance = await client.balance.query({ id: 'bob' });
  const { resourceMetrics } = await reader.collect();
  const reported = new Set(
    resourceMetrics.scopeMetrics.flatMap((scope) =>
      scope.metrics.filter((m) => m.dataPoints.length > 0).map((m) => m.descriptor.name),
    ),
  );
  const metricsSeen = {
    term: reported.has('raft.term'),
    commitIndex: reported.has('raft.commit_index'),
    proposals: reported.has('raft.proposals'),
  };
  console.log(
    JSON.stringify({
      typesFlow,
      moved,
      refused: refused?.commandCode,
      balance,
      metrics: metricsSeen,
    }),
  );
} finally {
  await Promise.all(nodes.map((node) => node.close()));
}

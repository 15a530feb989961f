/**
 * One server process of `bench:e2e`: an HTTP server with the bench app (`bench-app.ts`) under
 * `/trpc` on its own Postgres (a `pg` Pool through Kysely), as a user would run it.
 *
 * - `TSRAFT_BENCH_MODE=replicated`: a Raft node: `@tsraft/pg-storage`'s log store, snapshot store
 *   and typed state machine, the tRPC peer transport under `/raft`, `createRaftProcedures`.
 *   Needs `TSRAFT_NODE_ID`, `TSRAFT_PEERS` (JSON: node id to base URL, this node included) and
 *   `TSRAFT_SECRET`.
 * - `TSRAFT_BENCH_MODE=direct`: the same upsert on the database, no Raft. Needs `TSRAFT_URL`.
 *
 * A replicated node answers `GET /bench/puts` with the number of `put` calls it served (a
 * follower's are the writes that took its forwarding hop).
 *
 * Both need `DATABASE_URL`; `TSRAFT_TICK_MS` sets the node's `tickMs`. Prints `{"ready":true}` once it serves; the end of stdin (the parent
 * went away) or SIGTERM closes it.
 */
import { createServer } from 'node:http';
import { createHTTPHandler } from '@trpc/server/adapters/standalone';
import { type NodeId, RaftNode } from '@tsraft/core';
import {
  type CommandOf,
  createPostgresStateMachine,
  guardPoolErrors,
  PostgresLogStore,
  PostgresSnapshotStore,
  type ResultOf,
} from '@tsraft/pg-storage';
import { createTrpcTransport } from '@tsraft/trpc-transport';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import {
  BENCH_TABLES,
  type BenchAppContext,
  type BenchCommands,
  type BenchDatabase,
  benchCommands,
  createBenchTables,
  createDirectApp,
  createReplicatedApp,
} from './bench-app.ts';

function required(name: string): string {
  const value = process.env[name];
  if (value === undefined || value === '') throw new Error(`${name} must be set`);
  return value;
}

const mode = required('TSRAFT_BENCH_MODE');
const pool = new pg.Pool({
  connectionString: required('DATABASE_URL'),
  max: 16,
  connectionTimeoutMillis: 5_000,
});
guardPoolErrors(pool); // a lost Postgres fails calls, never the process
const db = new Kysely<BenchDatabase>({ dialect: new PostgresDialect({ pool }) });
await createBenchTables(db);

let node: RaftNode<CommandOf<BenchCommands>, ResultOf<BenchCommands>> | undefined;
let listenUrl: URL;
let handle: (
  req: import('node:http').IncomingMessage,
  res: import('node:http').ServerResponse,
) => void;

if (mode === 'replicated') {
  const id: NodeId = required('TSRAFT_NODE_ID');
  const peers = JSON.parse(required('TSRAFT_PEERS')) as Record<NodeId, string>;
  const secret = required('TSRAFT_SECRET');
  const self = peers[id];
  if (self === undefined) throw new Error(`TSRAFT_PEERS does not list this node "${id}"`);
  listenUrl = new URL(self);
  const transport = createTrpcTransport({ nodeId: id, peers, secret, listen: false });
  let puts = 0;
  const { router, responseMeta } = createReplicatedApp({
    node: () => {
      if (node === undefined) throw new Error('the node has not started yet');
      return node;
    },
    onPut: () => {
      puts++;
    },
  });
  const app = createHTTPHandler({
    router,
    basePath: '/trpc',
    responseMeta,
    createContext: ({ req }): BenchAppContext => ({ admin: req.headers['x-admin'] === secret }),
  });
  handle = (req, res) => {
    if (req.method === 'GET' && req.url === '/bench/puts') {
      res.end(String(puts));
      return;
    }
    if (!transport.handle(req, res)) app(req, res);
  };
  const logStore = await PostgresLogStore.open({ db });
  const snapshotStore = await PostgresSnapshotStore.open({ db });
  const stateMachine = await createPostgresStateMachine({
    db,
    commands: benchCommands,
    tables: BENCH_TABLES,
  });
  const server = createServer((req, res) => handle(req, res));
  await new Promise<void>((resolve) =>
    server.listen(Number(listenUrl.port), listenUrl.hostname, resolve),
  );
  const tickMs = process.env.TSRAFT_TICK_MS;
  node = await RaftNode.start({
    id,
    config: { voters: Object.keys(peers) },
    ...(tickMs === undefined ? {} : { tickMs: Number(tickMs) }),
    logStore,
    snapshotStore,
    stateMachine,
    transport,
  });
  node.on('fatal', ({ error }) => {
    process.stderr.write(`${id} stopped: ${error.message}\n`);
    process.exit(1);
  });
  onShutdown(async () => {
    server.closeAllConnections();
    server.close();
    await node?.close();
  });
} else if (mode === 'direct') {
  listenUrl = new URL(required('TSRAFT_URL'));
  handle = createHTTPHandler({
    router: createDirectApp({ db }),
    basePath: '/trpc',
    createContext: (): BenchAppContext => ({ admin: false }),
  });
  const server = createServer((req, res) => handle(req, res));
  await new Promise<void>((resolve) =>
    server.listen(Number(listenUrl.port), listenUrl.hostname, resolve),
  );
  onShutdown(async () => {
    server.closeAllConnections();
    server.close();
  });
} else {
  throw new Error(`TSRAFT_BENCH_MODE must be replicated or direct, not "${mode}"`);
}
process.stdout.write(`${JSON.stringify({ ready: true })}\n`);

function onShutdown(close: () => Promise<void>): void {
  let closing = false;
  const shutdown = (): void => {
    if (closing) return;
    closing = true;
    void close()
      .catch(() => {})
      .then(() => db.destroy())
      .catch(() => {})
      .then(() => process.exit(0));
  };
  process.once('SIGTERM', shutdown);
  process.stdin.on('end', shutdown).resume();
}

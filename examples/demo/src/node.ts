/**
 * One node of the demo cluster, as an OS process (started by `main.ts`): a `RaftNode` whose Raft
 * log, vote, snapshots and bank tables live in its own PGlite database (an embedded Postgres) in
 * a local folder (its log compacted by snapshots every few entries), and one HTTP server on its own loopback URL that serves the Raft peer transport
 * (tRPC, every request signed with the cluster secret) under `/raft` and the bank app (`app.ts`)
 * under `/trpc`.
 *
 * Environment: `TSRAFT_NODE_ID`, `TSRAFT_PEERS` (JSON: node id to base URL, this node included),
 * `TSRAFT_SECRET` (the cluster secret; also the admin credential of `raftAdmin`),
 * `TSRAFT_DATA_DIR` (the PGlite folder; kept across restarts).
 * Reports to its parent with JSON lines on stdout; SIGTERM, SIGINT or the end of stdin (the
 * parent went away) closes it.
 */
import { mkdirSync } from 'node:fs';
import { createServer } from 'node:http';
import { PGlite } from '@electric-sql/pglite';
import { createHTTPHandler } from '@trpc/server/adapters/standalone';
import { type NodeId, RaftNode } from '@tsraft/core';
import { CompactionPolicy } from '@tsraft/log-compaction';
import {
  type CommandOf,
  createPostgresStateMachine,
  PostgresLogStore,
  PostgresSnapshotStore,
  type ResultOf,
} from '@tsraft/pg-storage';
import { createTrpcTransport } from '@tsraft/trpc-transport';
import { Kysely, PGliteDialect } from 'kysely';
import { type BankAppContext, createBankApp } from './app.ts';
import {
  BANK_TABLES,
  type BankCommands,
  type BankDatabase,
  bankCommands,
  createBankTables,
} from './bank.ts';

function required(name: string): string {
  const value = process.env[name];
  if (value === undefined || value === '') throw new Error(`${name} must be set`);
  return value;
}

/** One line to the parent (`main.ts` reads them). */
function report(event: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

const id: NodeId = required('TSRAFT_NODE_ID');
const peers = JSON.parse(required('TSRAFT_PEERS')) as Record<NodeId, string>;
const secret = required('TSRAFT_SECRET');
const dataDir = required('TSRAFT_DATA_DIR');
const self = peers[id];
if (self === undefined) throw new Error(`TSRAFT_PEERS does not list this node "${id}"`);

let node: RaftNode<CommandOf<BankCommands>, ResultOf<BankCommands>> | undefined;

// PGlite: Postgres compiled to WebAssembly, running in this process on a folder of its own.
const openedAt = performance.now();
mkdirSync(dataDir, { recursive: true });
const db = new Kysely<BankDatabase>({
  dialect: new PGliteDialect({ pglite: new PGlite(dataDir) }),
});
const transport = createTrpcTransport({ nodeId: id, peers, secret, listen: false });
const app = createHTTPHandler({
  router: createBankApp({
    node: () => {
      if (node === undefined) throw new Error('the node has not started yet');
      return node;
    },
    db,
  }),
  basePath: '/trpc',
  createContext: ({ req }): BankAppContext => ({ admin: req.headers['x-admin'] === secret }),
});
const server = createServer((req, res) => {
  if (!transport.handle(req, res)) app(req, res);
});

let closing = false;
async function shutdown(code: number): Promise<void> {
  if (closing) return;
  closing = true;
  server.closeAllConnections();
  server.close();
  await node?.close().catch(() => {});
  await db.destroy().catch(() => {});
  process.exit(code);
}
process.once('SIGTERM', () => void shutdown(0));
process.once('SIGINT', () => void shutdown(0));
process.stdin.on('end', () => void shutdown(0)).resume();

await createBankTables(db);
const logStore = await PostgresLogStore.open({ db });
const snapshotStore = await PostgresSnapshotStore.open({ db });
const stateMachine = await createPostgresStateMachine({
  db,
  commands: bankCommands,
  tables: BANK_TABLES,
});
report({ event: 'database-open', ms: Math.round(performance.now() - openedAt) });

const url = new URL(self);
await new Promise<void>((resolve) => server.listen(Number(url.port), url.hostname, resolve));

node = await RaftNode.start({
  id,
  config: { voters: Object.keys(peers) },
  logStore,
  snapshotStore,
  stateMachine,
  transport,
});
// Log compaction on (Raft paper 7): a snapshot every few entries, keeping no entries behind it, so
// that this short tour shows a node catching up through a snapshot; an application keeps the
// defaults (every 10,000 entries or 64 MiB of them, keeping the last 1,000).
CompactionPolicy.start(node, { afterEntries: 5, retainEntries: 0 });
node.on('leader-change', ({ leaderId, term }) => {
  if (leaderId === id) report({ event: 'leader', term });
});
node.on('fatal', ({ error }) => {
  process.stderr.write(`${id} stopped: ${error.message}\n`);
  void shutdown(1);
});
const { appliedIndex, lastIndex, term } = node.status();
report({ event: 'ready', appliedIndex, lastIndex, term });

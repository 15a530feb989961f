/**
 * One node of the snapshot benchmark (`snapshot.ts`), as an OS process: a real `RaftNode` on its
 * own Postgres with pg-storage and the tRPC peer transport, in a cluster whose only voter is the
 * leader and whose follower is a learner (so the leader leads alone while the follower is away).
 *
 * Environment: `TSRAFT_BENCH_ROLE` (`leader` or `follower`), `TSRAFT_BENCH_DB` (a postgres://
 * URL), `TSRAFT_BENCH_PEERS` (JSON: node id to base URL), `TSRAFT_BENCH_BYTES` (leader: the size
 * of the state to create), `TSRAFT_BENCH_EXPORT_CONNECTIONS`.
 *
 * Reports JSON lines on stdout. The leader fills its table directly, applies one command, then
 * measures an export alone (one connection, the reference) and `takeSnapshot()` (export and save:
 * "create"); the follower reports when it starts receiving the snapshot, when it holds it whole
 * and checked ("transfer"), and when it installed it ("install"). On SIGTERM each reports its
 * peak RSS and exits.
 */
import { createServer } from 'node:http';
import { type LogFn, type Logger, RaftNode } from '@tsraft/core';
import {
  type CommandOf,
  createPostgresStateMachine,
  defineCommand,
  guardPoolErrors,
  PostgresLogStore,
  PostgresSnapshotStore,
  type ResultOf,
} from '@tsraft/pg-storage';
import { createTrpcTransport } from '@tsraft/trpc-transport';
import { Kysely, PostgresDialect, sql, type Transaction } from 'kysely';
import pg from 'pg';
import { z } from 'zod';

interface BenchDatabase {
  bench_state: { id: number; payload: string };
}

const commands = {
  touch: defineCommand({
    input: z.object({ id: z.number().int() }),
    handler: async (trx: Transaction<BenchDatabase>, input) => {
      await sql`update bench_state set payload = payload where id = ${input.id}`.execute(trx);
      return { ok: true };
    },
  }),
};
type Commands = typeof commands;

const LEADER = 'leader';
const FOLLOWER = 'follower';
/** Characters of each row's payload: a row prints as about 1 KiB of snapshot text. */
const ROW_CHARS = 1024;

function required(name: string): string {
  const value = process.env[name];
  if (value === undefined || value === '') throw new Error(`${name} must be set`);
  return value;
}

/** Prints `event` with the time and the peak RSS so far (bytes). */
function report(event: Record<string, unknown>): void {
  const maxRss = process.resourceUsage().maxRSS * 1024;
  process.stdout.write(`${JSON.stringify({ maxRss, ...event, at: performance.now() })}\n`);
}

const role = required('TSRAFT_BENCH_ROLE');
const peers = JSON.parse(required('TSRAFT_BENCH_PEERS')) as Record<string, string>;
const id = role === 'leader' ? LEADER : FOLLOWER;

const pool = new pg.Pool({ connectionString: required('TSRAFT_BENCH_DB'), max: 8 });
guardPoolErrors(pool); // a lost Postgres fails calls, never the process
const db = new Kysely<BenchDatabase>({ dialect: new PostgresDialect({ pool }) });
await sql`create table if not exists bench_state (id int8 primary key, payload text not null)`.execute(
  db,
);

if (role === 'leader') {
  const bytes = Number(required('TSRAFT_BENCH_BYTES'));
  const rows = Math.ceil(bytes / (ROW_CHARS + 30));
  const filling = performance.now();
  for (let from = 1; from <= rows; from += 50_000) {
    const to = Math.min(rows, from + 49_999);
    await sql`
      insert into bench_state
      select g, repeat(md5(g::text), ${ROW_CHARS / 32}) from generate_series(${from}::int8, ${to}::int8) g
    `.execute(db);
  }
  report({ event: 'filled', rows, seconds: (performance.now() - filling) / 1000 });
}

/** Records when the snapshot exchange logs what the benchmark times. */
const marks = (message: string | undefined): void => {
  if (message === 'receiving a snapshot') report({ event: 'receiving' });
  if (message === 'received a snapshot') report({ event: 'received' });
  if (message === 'installed a snapshot') report({ event: 'installed' });
};
const info: LogFn = (context: object | string, message?: string) =>
  marks(typeof context === 'string' ? context : message);
const logger: Logger = {
  debug: () => {},
  info,
  warn: (context: object | string, message?: string) =>
    process.stderr.write(
      `${id} warn: ${typeof context === 'string' ? context : `${message} ${JSON.stringify(context, (_k, v) => (v instanceof Error ? v.message : v))}`}\n`,
    ),
  error: (context: object | string, message?: string) =>
    process.stderr.write(`${id} error: ${typeof context === 'string' ? context : message}\n`),
};

const logStore = await PostgresLogStore.open({ db });
const snapshotStore = await PostgresSnapshotStore.open({ db });
const stateMachine = await createPostgresStateMachine({
  db,
  commands,
  tables: ['bench_state'],
  exportConnections: Number(process.env.TSRAFT_BENCH_EXPORT_CONNECTIONS ?? 2),
  // The leader's rows were filled directly, the benchmark's shortcut to a large state.
  existingRows: 'accept',
});
const transport = createTrpcTransport({
  nodeId: id,
  peers,
  secret: 'the snapshot benchmark',
  listen: false,
});
const server = createServer((req, res) => {
  if (!transport.handle(req, res)) {
    res.statusCode = 404;
    res.end();
  }
});
const self = new URL(peers[id] as string);
await new Promise<void>((resolve) => server.listen(Number(self.port), self.hostname, resolve));
const node = await RaftNode.start<CommandOf<Commands>, ResultOf<Commands>>({
  id,
  config: { voters: [LEADER], learners: [FOLLOWER] },
  logStore,
  snapshotStore,
  stateMachine,
  transport,
  logger,
  verifySnapshotOnStart: false,
});
node.on('fatal', ({ error }) => {
  process.stderr.write(`${id} stopped: ${error.message}\n`);
  process.exit(1);
});
report({ event: 'ready' });

if (role === 'leader') {
  while (node.status().role !== 'leader') await new Promise((resolve) => setTimeout(resolve, 10));
  await stateMachine.propose(node, 'touch', { id: 1 });
  const reference = await createPostgresStateMachine({
    db,
    commands,
    tables: ['bench_state'],
    existingRows: 'accept',
  });
  const exporting = performance.now();
  let exported = 0;
  for await (const chunk of (await reference.exportSnapshot()).chunks) exported += chunk.byteLength;
  report({ event: 'exported', bytes: exported, seconds: (performance.now() - exporting) / 1000 });
  const creating = performance.now();
  const snapshot = await node.takeSnapshot();
  report({
    event: 'created',
    bytes: snapshot?.size,
    seconds: (performance.now() - creating) / 1000,
  });
}

process.once('SIGTERM', () => {
  report({ event: 'rss', maxRss: process.resourceUsage().maxRSS * 1024 });
  server.closeAllConnections();
  server.close();
  void node
    .close()
    .then(() => db.destroy())
    .finally(() => process.exit(0));
});

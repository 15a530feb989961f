/**
 * One node of a nemesis cluster, as an OS process (started by the nemesis harness): a `RaftNode`
 * under a `RaftSupervisor` (which restarts it in place when it stops on a fatal error, such as
 * its Postgres going away), whose Raft log, vote, snapshots and tables live in its own Postgres;
 * and one HTTP server on its own loopback URL that serves the peer transport under `/raft` and
 * the nemesis app (`nemesis-app.ts`) under `/trpc`.
 *
 * Environment:
 * - `TSRAFT_NODE_ID`; `TSRAFT_PEERS` (JSON: node id to base URL; this node's own entry is where it
 *   listens, the others are the fault-injecting proxies of its links); `TSRAFT_SECRET`;
 * - `TSRAFT_DATABASE_URL` (a Postgres server), or `TSRAFT_PGLITE_DIR` (an embedded PGlite in this
 *   process, on that folder);
 * - `TSRAFT_TICK_MS` (default 15).
 *
 * Writes JSON lines to stdout: events for the harness (`{"event":"ready"}`, `role`, `fatal`,
 * `recovered`) and the node's log at info level and above. SIGTERM or the end of stdin (the
 * harness went away) closes it.
 */
import { mkdirSync } from 'node:fs';
import { createServer } from 'node:http';
import { PGlite } from '@electric-sql/pglite';
import { createHTTPHandler } from '@trpc/server/adapters/standalone';
import { type Logger, type NodeId, RaftSupervisor } from '@tsraft/core';
import {
  createPostgresStateMachine,
  guardPoolErrors,
  PostgresLogStore,
  PostgresSnapshotStore,
} from '@tsraft/pg-storage';
import { createTrpcTransport, type TrpcTransport } from '@tsraft/trpc-transport';
import { Kysely, PGliteDialect, PostgresDialect } from 'kysely';
import pg from 'pg';
import {
  createNemesisApp,
  type NemesisAppContext,
  type NemesisCommand,
  type NemesisNodeStatus,
  type NemesisResult,
} from './nemesis-app.ts';
import {
  createNemesisTables,
  NEMESIS_TABLES,
  type NemesisDatabase,
  nemesisCommands,
} from './nemesis-commands.ts';

function required(name: string): string {
  const value = process.env[name];
  if (value === undefined || value === '') throw new Error(`${name} must be set`);
  return value;
}

/** One JSON line to the harness. */
function emit(line: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify({ t: Date.now(), ...line })}\n`);
}

const id: NodeId = required('TSRAFT_NODE_ID');
const peers = JSON.parse(required('TSRAFT_PEERS')) as Record<NodeId, string>;
const secret = required('TSRAFT_SECRET');
const databaseUrl = process.env.TSRAFT_DATABASE_URL;
const pgliteDir = process.env.TSRAFT_PGLITE_DIR;
/** Below the product default on purpose: see `NemesisClusterOptions.tickMs`. */
const tickMs = Number(process.env.TSRAFT_TICK_MS ?? 15);
const self = peers[id];
if (self === undefined) throw new Error(`TSRAFT_PEERS does not list this node "${id}"`);
if ((databaseUrl === undefined) === (pgliteDir === undefined)) {
  throw new Error('set exactly one of TSRAFT_DATABASE_URL and TSRAFT_PGLITE_DIR');
}

/** The node's log as JSON lines; `err` becomes its message. */
function lineLogger(bindings: Record<string, unknown> = {}): Logger {
  const at =
    (level: string) =>
    (context: object | string, message?: string): void => {
      const fields = typeof context === 'string' ? {} : { ...context };
      if ('err' in fields) fields.err = String((fields.err as Error)?.message ?? fields.err);
      emit({ level, msg: typeof context === 'string' ? context : message, ...bindings, ...fields });
    };
  return {
    debug: () => {},
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: (more) => lineLogger({ ...bindings, ...more }),
  };
}
const logger = lineLogger({ node: id });

/** PGlite lives as long as the process (one instance per folder); a pool lives one incarnation. */
const pglite =
  pgliteDir === undefined
    ? undefined
    : (() => {
        mkdirSync(pgliteDir, { recursive: true });
        return new Kysely<NemesisDatabase>({
          dialect: new PGliteDialect({ pglite: new PGlite(pgliteDir) }),
        });
      })();

/** A Kysely on a pool that fails calls instead of hanging them when Postgres hangs or goes. */
function connect(url: string): Kysely<NemesisDatabase> {
  const pool = new pg.Pool({
    connectionString: url,
    max: 8,
    connectionTimeoutMillis: 2_000,
    query_timeout: 5_000,
    statement_timeout: 5_000,
  });
  guardPoolErrors(pool); // a lost Postgres fails calls, never the process
  return new Kysely<NemesisDatabase>({ dialect: new PostgresDialect({ pool }) });
}

let transport: TrpcTransport | undefined;
let db: Kysely<NemesisDatabase> | undefined;
let lastFatal: string | null = null;

const supervisor = await startSupervisor();
let lastNode = supervisor.node;
const app = createHTTPHandler({
  router: createNemesisApp({
    node: () => {
      lastNode = supervisor.node ?? lastNode;
      if (lastNode === undefined) throw new Error('the node has not started');
      return lastNode;
    },
    db: () => db as Kysely<NemesisDatabase>,
    status,
  }),
  basePath: '/trpc',
  createContext: ({ req }): NemesisAppContext => ({ admin: req.headers['x-admin'] === secret }),
});
const server = createServer((req, res) => {
  if (transport?.handle(req, res) !== true) app(req, res);
});
server.keepAliveTimeout = 60_000;

let closing = false;
async function shutdown(code: number): Promise<void> {
  if (closing) return;
  closing = true;
  server.closeAllConnections();
  server.close();
  await supervisor.close().catch(() => {});
  await pglite?.destroy().catch(() => {});
  process.exit(code);
}
process.once('SIGTERM', () => void shutdown(0));
process.once('SIGINT', () => void shutdown(0));
process.stdin.on('end', () => void shutdown(0)).resume();

const url = new URL(self);
await new Promise<void>((resolve) => server.listen(Number(url.port), url.hostname, resolve));
emit({ event: 'ready', ...status() });

/**
 * Starts the supervisor, trying again while the first start fails (the node's Postgres may be
 * down or hung when the harness restarts the process).
 */
async function startSupervisor(): Promise<RaftSupervisor<NemesisCommand, NemesisResult>> {
  for (let attempt = 1; ; attempt++) {
    try {
      const started = await RaftSupervisor.start<NemesisCommand, NemesisResult>({
        backoff: { initialMs: 100, maxMs: 1_000 },
        logger,
        open: async ({ signal }) => {
          const incarnationDb = pglite ?? connect(databaseUrl as string);
          const release = async (): Promise<void> => {
            if (pglite === undefined) await incarnationDb.destroy().catch(() => {});
          };
          try {
            await createNemesisTables(incarnationDb);
            const stateMachine = await createPostgresStateMachine({
              db: incarnationDb,
              commands: nemesisCommands,
              tables: NEMESIS_TABLES,
            });
            const options = {
              id,
              config: { voters: Object.keys(peers) },
              logStore: await PostgresLogStore.open({ db: incarnationDb, signal }),
              snapshotStore: await PostgresSnapshotStore.open({ db: incarnationDb, signal }),
              stateMachine,
              transport: createTrpcTransport({ nodeId: id, peers, secret, listen: false }),
              tickMs,
              logger,
              release,
            };
            transport = options.transport;
            db = incarnationDb;
            return options;
          } catch (error) {
            await release();
            throw error;
          }
        },
      });
      started.on('role-change', ({ role, term }) => emit({ event: 'role', role, term }));
      started.on('fatal', ({ error }) => {
        lastFatal = error.message;
        emit({ event: 'fatal', message: error.message });
      });
      started.on('recovered', ({ incarnation, downtimeMs }) =>
        emit({ event: 'recovered', incarnation, downtimeMs }),
      );
      return started;
    } catch (error) {
      emit({ event: 'start-failed', attempt, message: (error as Error).message });
      await new Promise((resolve) => setTimeout(resolve, Math.min(1_000, 100 * attempt)));
    }
  }
}

function status(): NemesisNodeStatus {
  const current = supervisor.status();
  const common = { id, pid: process.pid, fatal: lastFatal };
  if (current.state === 'running') {
    return {
      ...common,
      state: 'running',
      incarnation: current.incarnation,
      role: current.closed ? null : current.role,
      term: current.term,
      leaderId: current.leaderId,
      commitIndex: current.commitIndex,
      appliedIndex: current.appliedIndex,
      lastIndex: current.lastIndex,
      firstIndex: current.firstIndex,
    };
  }
  const node = lastNode?.status();
  return {
    ...common,
    state: current.state,
    incarnation: current.state === 'recovering' ? current.incarnation : 0,
    role: null,
    term: node?.term ?? 0,
    leaderId: null,
    commitIndex: node?.commitIndex ?? 0,
    appliedIndex: node?.appliedIndex ?? 0,
    lastIndex: node?.lastIndex ?? 0,
    firstIndex: node?.firstIndex ?? 0,
  };
}

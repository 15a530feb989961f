import { RaftSupervisor } from '@tsraft/core';
import {
  type CommandOf,
  createPostgresStateMachine,
  PostgresLogStore,
  PostgresSnapshotStore,
  type ResultOf,
} from '@tsraft/pg-storage';
import { createTrpcTransport } from '@tsraft/trpc-transport/peer';
import { createRaftHttpServer } from '@tsraft/trpc-transport/server';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { createAppRouter } from './app-router.ts';
import { type Commands, commands, createTables, type Database, TABLES } from './commands.ts';
import { serveMetrics } from './metrics.ts';

export interface NodeSettings {
  /** This node's id, e.g. `n1`. */
  id: string;
  /** Every node's base URL, this one included: `{ n1: 'http://10.0.0.1:4100', ... }`. */
  peers: Record<string, string>;
  /** The cluster's shared secret: it signs every request between nodes. */
  secret: string;
  /** This node's own Postgres. */
  databaseUrl: string;
  /** Where to listen. */
  host: string;
  port: number;
  /** Who may use `raftAdmin`: here, requests carrying this token. */
  adminToken: string;
  /** Where Prometheus scrapes this node's metrics (step 8). Default: no metrics endpoint. */
  metricsPort?: number;
}

/** Starts one node of the cluster: its supervised Raft node and one HTTP server. */
export async function startNode(settings: NodeSettings) {
  const pool = new pg.Pool({ connectionString: settings.databaseUrl });
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  await createTables(db);

  // The transport is served by the HTTP server below (`listen: false`); a new one per incarnation.
  let transport = createTrpcTransport({
    nodeId: settings.id,
    peers: settings.peers,
    secret: settings.secret,
    listen: false,
  });
  // A node stops for good on a fatal error (its Postgres failed under it, say): the supervisor
  // opens it again with back-off, and the procedures follow the running incarnation.
  const supervisor = await RaftSupervisor.start<CommandOf<Commands>, ResultOf<Commands>>({
    open: async ({ incarnation }) => {
      if (incarnation > 1) {
        transport = createTrpcTransport({
          nodeId: settings.id,
          peers: settings.peers,
          secret: settings.secret,
          listen: false,
        });
      }
      return {
        id: settings.id,
        config: { voters: Object.keys(settings.peers) },
        logStore: await PostgresLogStore.open({ db }),
        snapshotStore: await PostgresSnapshotStore.open({ db }),
        stateMachine: await createPostgresStateMachine({ db, commands, tables: TABLES }),
        transport,
      };
    },
  });

  const { router, raft } = createAppRouter({ node: supervisor, db });
  const server = createRaftHttpServer({
    router,
    raft,
    basePath: '/trpc',
    // The peer endpoint of whichever transport runs now.
    transport: { handle: (req, res) => transport.handle(req, res) },
    createContext: ({ req }) => ({
      admin: req.headers.authorization === `Bearer ${settings.adminToken}`,
    }),
  });
  await server.listen({ host: settings.host, port: settings.port });
  const metrics =
    settings.metricsPort === undefined
      ? undefined
      : serveMetrics(supervisor, { host: settings.host, port: settings.metricsPort });

  return {
    supervisor,
    async close() {
      await metrics?.close();
      await server.close();
      await supervisor.close();
      await db.destroy();
    },
  };
}

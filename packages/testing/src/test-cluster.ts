import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type AnyTRPCRouter, initTRPC } from '@trpc/server';
import {
  type Logger,
  type NodeId,
  RaftNode,
  type RaftNodeOptions,
  type RaftNodeStatus,
  RaftSupervisor,
  type RaftSupervisorOptions,
} from '@tsraft/core';
import { pickLoopbackPort } from '@tsraft/core/testing';
import {
  type CommandMap,
  type CommandOf,
  createPostgresStateMachine,
  guardPoolErrors,
  PostgresLogStore,
  PostgresSnapshotStore,
  type ResultOf,
} from '@tsraft/pg-storage';
import { createTrpcTransport } from '@tsraft/trpc-transport/peer';
import {
  createRaftHttpServer,
  type RaftHttpServer,
  type RaftHttpServerOptions,
} from '@tsraft/trpc-transport/server';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import type { PostgresProvider, PostgresServer } from './postgres/postgres-server.ts';
import { selectProvider } from './postgres/select-provider.ts';
import { TcpProxy } from './tcp-proxy.ts';

/** The `RaftNode` a test cluster runs for the commands `C`. */
export type TestRaftNode<C extends CommandMap> = RaftNode<CommandOf<C>, ResultOf<C>>;

/** The `RaftSupervisor` of a node of a supervised test cluster ({@link TestClusterOptions.supervise}). */
export type TestRaftSupervisor<C extends CommandMap> = RaftSupervisor<CommandOf<C>, ResultOf<C>>;

/** What the app factory of {@link TestClusterOptions.app} is given, once per node start. */
export interface TestAppContext<C extends CommandMap, DB> {
  readonly id: NodeId;
  /**
   * The node's running `RaftNode`; throws while it is not started (as a real app's lookup would),
   * and in a supervised cluster `NodeRecoveringError` while its supervisor reopens it (the
   * supervisor's `runningNode()`).
   */
  readonly node: () => TestRaftNode<C>;
  /** The node's own database. */
  readonly db: Kysely<DB>;
}

/**
 * The app a test cluster serves on each node under `/trpc`: the user's own tRPC router, served by
 * `createRaftHttpServer` (from `@tsraft/trpc-transport/server`) with these of its options, as a
 * deployed node serves it, beside the node's peer endpoint: the same body limit, error masking and
 * (with `raft`) leader header as in production. `basePath` and `transport` are the cluster's.
 */
export type TestApp<TRouter extends AnyTRPCRouter> = Pick<
  RaftHttpServerOptions<TRouter>,
  | 'router'
  | 'createContext'
  | 'raft'
  | 'responseMeta'
  | 'onError'
  | 'maxBodyBytes'
  | 'exposeErrorDetails'
>;

/** Options of {@link TestCluster.start}. */
export interface TestClusterOptions<C extends CommandMap, DB, TRouter extends AnyTRPCRouter> {
  /** How many nodes, each a voter. Default: 3. */
  readonly size?: number;
  /** The app's commands (`defineCommand`), as given to `createPostgresStateMachine`. */
  readonly commands: C;
  /** The replicated tables (what `createPostgresStateMachine` snapshots, and what `compareTables` compares). */
  readonly tables: readonly string[];
  /** Creates the app's tables on a node's fresh database (runs once per database, before the node starts). */
  readonly migrate: (db: Kysely<DB>) => Promise<void>;
  /** The app's tRPC router for a node, served under `/trpc` beside the peer transport. Default: none. */
  readonly app?: (context: TestAppContext<C, DB>) => TestApp<TRouter>;
  /** Where the Postgres servers come from. Default: `selectProvider()` (testcontainers, else embedded). */
  readonly provider?: PostgresProvider;
  /** Extra `RaftNode.start` options of every node (tick, election tuning, logger). Default: none. */
  readonly node?: Pick<RaftNodeOptions<CommandOf<C>, ResultOf<C>>, 'tickMs' | 'tuning' | 'logger'>;
  /**
   * Run each node under a `RaftSupervisor`, as a deployed node runs (the guide's `node.ts`): a
   * node that stops on a fatal error (its Postgres failed under it) is opened again on its
   * database, with a new transport, by its supervisor, with `backoff` between tries. Default:
   * unsupervised, a fatal error stops the node until {@link TestCluster.restart}.
   */
  readonly supervise?: Pick<RaftSupervisorOptions<CommandOf<C>, ResultOf<C>>, 'backoff'>;
  /** Aborts the start; whatever started is disposed before the promise rejects. */
  readonly signal?: AbortSignal;
}

/** One node of a {@link TestCluster}: its Postgres, its database and, while it runs, its `RaftNode`. */
export interface TestClusterMember<C extends CommandMap, DB> {
  readonly id: NodeId;
  /** The node's Postgres server (stop, kill, pause, restart it to inject storage faults). */
  readonly postgres: PostgresServer;
  /** The node's database (follows the server across its restarts). */
  readonly db: Kysely<DB>;
  /** The URL of the node's tRPC app, e.g. for `httpLink({ url })` or `raftFailoverLink`'s `nodes`. */
  readonly appUrl: string;
  /**
   * The running `RaftNode`, or `undefined` while the node is killed (or, supervised, while its
   * supervisor reopens it).
   */
  readonly node: TestRaftNode<C> | undefined;
  /** The node's supervisor in a supervised cluster (its events, its status), while it runs. */
  readonly supervisor: TestRaftSupervisor<C> | undefined;
}

/** How long the waiting helpers wait by default. */
const DEFAULT_TIMEOUT_MS = 15_000;

interface Member<C extends CommandMap, DB> extends TestClusterMember<C, DB> {
  /** The node of an unsupervised cluster. */
  plain: TestRaftNode<C> | undefined;
  supervisor: TestRaftSupervisor<C> | undefined;
  http: RaftHttpServer | undefined;
  readonly port: number;
  readonly pool: pg.Pool;
}

/**
 * A cluster of real `RaftNode`s of the user's own app, for the user's tests: each node runs in
 * this process on its own Postgres server (one per node, from `provider`), with the tRPC peer
 * transport over real HTTP on loopback and the app's router under `/trpc` on the same server,
 * one `createRaftHttpServer` per node (the server wiring a deployed node uses).
 * Every peer link (one direction, one pair of nodes) goes through a TCP proxy, so that links can be
 * cut as a network partition would: bytes stop in both directions without a refusal.
 *
 * Faults: {@link kill} stops a node at once (its links cut first, so no goodbye reaches the
 * others; its database is kept) and {@link restart} starts it again on its database;
 * {@link isolate}, {@link partition} and {@link heal} cut and restore links; a node's Postgres
 * can be stopped, killed or paused (SIGSTOP, or `docker pause`) through `member(id).postgres`.
 *
 * Dispose it (`await using cluster = await TestCluster.start(...)`): every node, server, proxy
 * and Postgres server it started is stopped and removed, also when the test failed.
 */
export class TestCluster<C extends CommandMap, DB, TRouter extends AnyTRPCRouter = AnyTRPCRouter>
  implements AsyncDisposable
{
  readonly ids: readonly NodeId[];
  readonly secret: string = randomBytes(24).toString('base64url');
  readonly #options: TestClusterOptions<C, DB, TRouter>;
  readonly #members = new Map<NodeId, Member<C, DB>>();
  /** `from -> to`: the proxy `from` sends its Raft messages to `to` through. */
  readonly #links = new Map<string, TcpProxy>();
  readonly #servers: PostgresServer[] = [];
  #disposed = false;

  private constructor(options: TestClusterOptions<C, DB, TRouter>) {
    const size = options.size ?? 3;
    if (!Number.isInteger(size) || size < 1) {
      throw new TypeError(`size must be a positive integer, got ${size}`);
    }
    this.#options = options;
    this.ids = Array.from({ length: size }, (_, i) => `n${i + 1}`);
  }

  /** Starts the Postgres servers, creates the app's tables and starts every node. */
  static async start<C extends CommandMap, DB, TRouter extends AnyTRPCRouter = AnyTRPCRouter>(
    options: TestClusterOptions<C, DB, TRouter>,
  ): Promise<TestCluster<C, DB, TRouter>> {
    const cluster = new TestCluster(options);
    try {
      await cluster.#setUp();
      return cluster;
    } catch (error) {
      await cluster[Symbol.asyncDispose]();
      throw error;
    }
  }

  /** A node of the cluster; throws for an unknown id. */
  member(id: NodeId): TestClusterMember<C, DB> {
    return this.#member(id);
  }

  /** The URL of each node's tRPC app, by id (what `raftFailoverLink`'s `nodes` takes). */
  get appUrls(): Readonly<Record<NodeId, string>> {
    return Object.fromEntries(this.ids.map((id) => [id, this.#member(id).appUrl]));
  }

  /**
   * Waits until one running node leads with every other running node that can hear it agreeing
   * on its term, and returns it. Rejects after `timeoutMs` (default 15 s) naming each node's view.
   */
  async leader(options: { timeoutMs?: number } = {}): Promise<TestClusterMember<C, DB>> {
    let found: Member<C, DB> | undefined;
    await this.#waitUntil(
      () => {
        const leaders = this.#running().filter((m) => m.node?.status().role === 'leader');
        const top = leaders.sort((a, b) => termOf(b) - termOf(a))[0];
        found = top;
        return top !== undefined;
      },
      'a leader',
      options.timeoutMs,
    );
    return found as Member<C, DB>;
  }

  /**
   * Waits until every running node has applied everything the leader committed (and the leader
   * itself too): the state every test should compare. Rejects after `timeoutMs` (default 15 s).
   */
  async waitForConvergence(options: { timeoutMs?: number } = {}): Promise<void> {
    const leader = await this.leader(options);
    await this.#waitUntil(
      () => {
        const target = leader.node?.status().commitIndex ?? Number.POSITIVE_INFINITY;
        return this.#running().every((m) => (m.node?.status().appliedIndex ?? -1) >= target);
      },
      'every running node to apply what the leader committed',
      options.timeoutMs,
    );
  }

  /**
   * Reads each replicated table (or `tables`) on every running node and tells where they differ:
   * an empty list when all hold the same rows. Row order does not matter.
   */
  async compareTables(tables: readonly string[] = this.#options.tables): Promise<string[]> {
    const differences: string[] = [];
    const running = this.#running();
    for (const table of tables) {
      const contents = await Promise.all(running.map((m) => this.tableRows(m.id, table)));
      const reference = contents[0] ?? [];
      running.forEach((member, i) => {
        const rows = contents[i] ?? [];
        if (JSON.stringify(rows) !== JSON.stringify(reference)) {
          differences.push(
            `${table}: ${member.id} has ${rows.length} rows, ${running[0]?.id} has ${reference.length}` +
              ` (first difference: ${firstDifference(reference, rows)})`,
          );
        }
      });
    }
    return differences;
  }

  /** Waits for convergence, then throws unless every running node holds the same tables. */
  async expectConverged(options: { timeoutMs?: number } = {}): Promise<void> {
    await this.waitForConvergence(options);
    const differences = await this.compareTables();
    if (differences.length > 0) {
      throw new Error(`the nodes' tables differ:\n  ${differences.join('\n  ')}`);
    }
  }

  /** A table's rows on one node, each as JSON text, sorted (a comparable form). */
  async tableRows(id: NodeId, table: string): Promise<string[]> {
    const { rows } = await sql<Record<string, unknown>>`select * from ${sql.table(table)}`.execute(
      this.#member(id).db,
    );
    return rows.map((row) => JSON.stringify(row)).sort();
  }

  /**
   * Stops a node at once, as a crash would from its peers' side: its links are cut first (nothing
   * more reaches the others), then its server drops every connection and the node closes without
   * handing leadership over. Its database is kept for {@link restart}.
   */
  async kill(id: NodeId): Promise<void> {
    const member = this.#member(id);
    for (const proxy of this.#linksOf(id)) proxy.cut();
    await this.#stopNode(member);
  }

  /**
   * Starts a node again on its database (after {@link kill}, or closing a running one first),
   * with its links open. Resolves once the node runs.
   */
  async restart(id: NodeId): Promise<void> {
    const member = this.#member(id);
    await this.#stopNode(member);
    await this.#startNode(member);
    for (const proxy of this.#linksOf(id)) proxy.heal();
  }

  /** Cuts every link between `id` and the others, both ways (a node alone on its side of a partition). */
  isolate(id: NodeId): void {
    this.#member(id);
    for (const proxy of this.#linksOf(id)) proxy.cut();
  }

  /**
   * Splits the cluster: links between nodes of different groups are cut, links inside a group
   * are open. Every node must be in exactly one group.
   */
  partition(...groups: readonly (readonly NodeId[])[]): void {
    const groupOf = new Map<NodeId, number>();
    groups.forEach((group, index) => {
      for (const id of group) {
        this.#member(id);
        if (groupOf.has(id)) throw new TypeError(`node ${id} is in two groups`);
        groupOf.set(id, index);
      }
    });
    const missing = this.ids.filter((id) => !groupOf.has(id));
    if (missing.length > 0) throw new TypeError(`nodes in no group: ${missing.join(', ')}`);
    for (const [key, proxy] of this.#links) {
      const [from, to] = key.split('->') as [NodeId, NodeId];
      if (groupOf.get(from) === groupOf.get(to)) proxy.heal();
      else proxy.cut();
    }
  }

  /** Opens every link again (the nodes that run reconnect; killed nodes stay down). */
  heal(): void {
    for (const [key, proxy] of this.#links) {
      const [from, to] = key.split('->') as [NodeId, NodeId];
      if (this.#member(from).node !== undefined && this.#member(to).node !== undefined) {
        proxy.heal();
      }
    }
  }

  /** Stops every node, server and proxy and removes the Postgres servers. Safe to call twice. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    const failures: unknown[] = [];
    const attempt = async (work: () => Promise<unknown>): Promise<void> => {
      await work().catch((error: unknown) => failures.push(error));
    };
    for (const proxy of this.#links.values()) proxy.cut();
    await Promise.all([...this.#members.values()].map((m) => attempt(() => this.#stopNode(m))));
    await Promise.all([...this.#members.values()].map((m) => attempt(() => m.pool.end())));
    await Promise.all([...this.#links.values()].map((p) => attempt(() => p.close())));
    await Promise.all(this.#servers.map((s) => attempt(() => s[Symbol.asyncDispose]())));
    if (failures.length > 0) {
      throw new AggregateError(failures, 'disposing the test cluster failed in part');
    }
  }

  async #setUp(): Promise<void> {
    const { signal } = this.#options;
    const provider = this.#options.provider ?? (await selectProvider({ log: () => {} }));
    for (const _ of this.ids) {
      this.#servers.push(await provider.start(signal ? { signal } : {}));
    }
    const ports = new Map<NodeId, number>();
    for (const id of this.ids) ports.set(id, await pickLoopbackPort());
    for (const from of this.ids) {
      for (const to of this.ids) {
        if (from === to) continue;
        const proxy = await TcpProxy.start({
          name: `${from}->${to}`,
          target: { host: '127.0.0.1', port: ports.get(to) as number },
        });
        this.#links.set(`${from}->${to}`, proxy);
      }
    }
    for (const [i, id] of this.ids.entries()) {
      const postgres = this.#servers[i] as PostgresServer;
      const pool = followingPool(postgres);
      const db = new Kysely<DB>({ dialect: new PostgresDialect({ pool }) });
      const port = ports.get(id) as number;
      const member: Member<C, DB> = {
        id,
        postgres,
        db,
        pool,
        port,
        appUrl: `http://127.0.0.1:${port}/trpc`,
        plain: undefined,
        supervisor: undefined,
        get node() {
          return this.supervisor === undefined ? this.plain : this.supervisor.node;
        },
        http: undefined,
      };
      this.#members.set(id, member);
      await this.#options.migrate(db);
    }
    await Promise.all([...this.#members.values()].map((m) => this.#startNode(m)));
  }

  async #startNode(member: Member<C, DB>): Promise<void> {
    const { id, db, port } = member;
    const peers = Object.fromEntries(
      this.ids.map((peer) => [
        peer,
        peer === id
          ? `http://127.0.0.1:${port}`
          : `http://127.0.0.1:${this.#links.get(`${id}->${peer}`)?.port}`,
      ]),
    );
    const newTransport = () =>
      createTrpcTransport({ nodeId: id, peers, secret: this.secret, listen: false });
    // A supervised node gets a new transport per incarnation; the server serves the current one.
    let transport = newTransport();
    const node = (): TestRaftNode<C> => {
      if (member.supervisor !== undefined) return member.supervisor.runningNode();
      if (member.plain === undefined) throw new Error(`node ${id} is not running`);
      return member.plain;
    };
    const app = this.#options.app?.({ id, node, db });
    const peerEndpoint = {
      handle: (req: IncomingMessage, res: ServerResponse) => transport.handle(req, res),
    };
    const http =
      app === undefined
        ? // No app: the peer endpoint answers, `/trpc` has no procedures.
          createRaftHttpServer({
            router: initTRPC.create().router({}),
            basePath: '/trpc',
            transport: peerEndpoint,
          })
        : createRaftHttpServer<TRouter>({ ...app, basePath: '/trpc', transport: peerEndpoint });
    await http.listen({ host: '127.0.0.1', port });
    member.http = http;
    const open = async (signal?: AbortSignal) => {
      const stateMachine = await createPostgresStateMachine({
        db,
        commands: this.#options.commands,
        tables: this.#options.tables,
      });
      const options: RaftNodeOptions<CommandOf<C>, ResultOf<C>> = {
        ...this.#options.node,
        id,
        config: { voters: [...this.ids] },
        logStore: await PostgresLogStore.open({ db, ...(signal ? { signal } : {}) }),
        snapshotStore: await PostgresSnapshotStore.open({ db, ...(signal ? { signal } : {}) }),
        stateMachine: stateMachine as unknown as RaftNodeOptions<
          CommandOf<C>,
          ResultOf<C>
        >['stateMachine'],
        transport,
        ...(this.#options.node?.logger === undefined
          ? {}
          : { logger: this.#options.node.logger as Logger }),
      };
      return options;
    };
    try {
      const supervise = this.#options.supervise;
      if (supervise === undefined) {
        member.plain = await RaftNode.start<CommandOf<C>, ResultOf<C>>(await open());
      } else {
        member.supervisor = await RaftSupervisor.start<CommandOf<C>, ResultOf<C>>({
          ...supervise,
          ...(this.#options.node?.logger === undefined
            ? {}
            : { logger: this.#options.node.logger as Logger }),
          open: async ({ incarnation, signal }) => {
            if (incarnation > 1) transport = newTransport();
            return await open(signal);
          },
        });
      }
    } catch (error) {
      await http.close();
      member.http = undefined;
      throw error;
    }
  }

  async #stopNode(member: Member<C, DB>): Promise<void> {
    const { plain, supervisor, http } = member;
    member.plain = undefined;
    member.supervisor = undefined;
    member.http = undefined;
    if (http !== undefined) await http.close();
    await plain?.close();
    await supervisor?.close();
  }

  #member(id: NodeId): Member<C, DB> {
    const member = this.#members.get(id);
    if (member === undefined) {
      throw new TypeError(`no node "${id}" in this cluster (nodes: ${this.ids.join(', ')})`);
    }
    return member;
  }

  #running(): Member<C, DB>[] {
    return [...this.#members.values()].filter((m) => m.node !== undefined);
  }

  #linksOf(id: NodeId): TcpProxy[] {
    return [...this.#links.entries()]
      .filter(([key]) => key.startsWith(`${id}->`) || key.endsWith(`->${id}`))
      .map(([, proxy]) => proxy);
  }

  async #waitUntil(condition: () => boolean, what: string, timeoutMs?: number): Promise<void> {
    const deadline = Date.now() + (timeoutMs ?? DEFAULT_TIMEOUT_MS);
    while (!condition()) {
      if (Date.now() > deadline) {
        throw new Error(
          `timed out after ${timeoutMs ?? DEFAULT_TIMEOUT_MS} ms waiting for ${what}; ${this.#describe()}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  #describe(): string {
    return [...this.#members.values()]
      .map((m) => {
        if (m.node === undefined) {
          return m.supervisor === undefined ? `${m.id} down` : `${m.id} recovering`;
        }
        const s: RaftNodeStatus = m.node.status();
        return `${m.id} ${s.role} term ${s.term} commit ${s.commitIndex} applied ${s.appliedIndex}`;
      })
      .join(', ');
  }
}

function termOf<C extends CommandMap, DB>(member: Member<C, DB>): number {
  return member.node?.status().term ?? -1;
}

function firstDifference(a: readonly string[], b: readonly string[]): string {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    if (a[i] !== b[i]) return `${a[i] ?? '(none)'} vs ${b[i] ?? '(none)'}`;
  }
  return 'none';
}

/** A pg Pool that connects to the server's current URL (a restarted container may move ports). */
function followingPool(server: PostgresServer): pg.Pool {
  class FollowingClient extends pg.Client {
    constructor(config?: pg.ClientConfig) {
      super({ ...config, connectionString: server.url });
    }
  }
  const pool = new pg.Pool({
    Client: FollowingClient,
    connectionString: server.url,
    max: 6,
    connectionTimeoutMillis: 5_000,
  });
  // Every client, idle or checked out: a Postgres the test kills fails calls, never the process.
  guardPoolErrors(pool);
  return pool;
}

import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { createTRPCClient, httpLink, type TRPCClient } from '@trpc/client';
import { pickLoopbackPort } from '@tsraft/core/testing';
import type { PostgresProvider, PostgresServer } from '@tsraft/testing';
import { TcpProxy } from '@tsraft/testing';
import type { NemesisAppRouter, NemesisNodeStatus } from './node/nemesis-app.ts';
import { type NodeLine, NodeProcess } from './node-process.ts';

/** Options of {@link NemesisCluster.start}. */
export interface NemesisClusterOptions {
  /** How many nodes (3 or 5 in the scenarios; any size from 1 works). */
  readonly nodes: number;
  /** Where each node's Postgres comes from: a provider (one server per node), or PGlite in the node. */
  readonly postgres: PostgresProvider | 'pglite';
  /** Folder of the run: the nodes' logs go to `nodes/<id>.log`, PGlite data to `pglite/<id>`. */
  readonly outDir: string;
  /**
   * Milliseconds per engine tick of the nodes. Default 15, on purpose below the product default
   * (100 ms, core README "Timing"): a fault suite wants many leader changes per minute of run, and
   * its rounds (500 ms of calm around each fault) are sized for failovers of 150-300 ms, not
   * 1-2 s. On a loaded machine this timing also costs spurious elections, which a nemesis run
   * tolerates (they are more faults). Set 100 to check the shipped timing.
   */
  readonly tickMs?: number;
  /** Called with every JSON line a node prints. */
  readonly onLine?: (line: NodeLine) => void;
  /** Called when a node process exits without the harness killing it (it crashed). */
  readonly onCrash?: (crash: { readonly id: string; readonly exit: string }) => void;
  readonly signal?: AbortSignal;
}

/** One node: its process, its app's URL and, with a provider, its Postgres and the proxy to it. */
interface Member {
  readonly id: string;
  readonly process: NodeProcess;
  readonly appUrl: string;
  readonly postgres: PostgresServer | undefined;
  readonly postgresProxy: TcpProxy | undefined;
}

/** How long one status call to a node may take. */
const STATUS_TIMEOUT_MS = 1_000;

/**
 * A cluster of nemesis nodes as OS processes, each with its own Postgres, and a fault-injecting
 * TCP proxy on every peer link: node `a` reaches node `b` through the proxy of the link `a->b`
 * only, so links can be cut one way. Clients and the harness reach each node's app directly.
 * In front of each node's Postgres is a proxy too, so the node's address of its database stays
 * the same when a restarted server comes back on another port.
 */
export class NemesisCluster implements AsyncDisposable {
  readonly ids: readonly string[];
  readonly secret: string;
  readonly #members: ReadonlyMap<string, Member>;
  readonly #links: ReadonlyMap<string, TcpProxy>;
  readonly #admins = new Map<string, TRPCClient<NemesisAppRouter>>();
  /** Nodes whose Postgres the harness stopped or killed, and those it paused. */
  readonly #postgresDown = new Set<string>();
  readonly #postgresPaused = new Set<string>();

  private constructor(
    ids: readonly string[],
    secret: string,
    members: ReadonlyMap<string, Member>,
    links: ReadonlyMap<string, TcpProxy>,
  ) {
    this.ids = ids;
    this.secret = secret;
    this.#members = members;
    this.#links = links;
  }

  /**
   * Starts the servers, the proxies and the node processes; resolves once every node serves.
   * Whatever started is disposed of if a step fails.
   */
  static async start(options: NemesisClusterOptions): Promise<NemesisCluster> {
    const { signal } = options;
    const ids = Array.from({ length: options.nodes }, (_, i) => `n${i + 1}`);
    const secret = randomBytes(24).toString('hex');
    await using stack = new AsyncDisposableStack();
    await mkdir(join(options.outDir, 'nodes'), { recursive: true });
    const appPorts = new Map<string, number>();
    for (const id of ids) appPorts.set(id, await pickLoopbackPort());
    const links = new Map<string, TcpProxy>();
    for (const from of ids) {
      for (const to of ids) {
        if (from === to) continue;
        const proxy = await TcpProxy.start({
          name: `${from}->${to}`,
          target: { host: '127.0.0.1', port: appPorts.get(to) as number },
        });
        stack.use(proxy);
        links.set(`${from}->${to}`, proxy);
      }
    }
    const servers =
      options.postgres === 'pglite'
        ? ids.map(() => undefined)
        : await Promise.all(
            ids.map(async () => {
              const server = await (options.postgres as PostgresProvider).start(
                signal ? { signal } : {},
              );
              stack.use(server);
              return server;
            }),
          );
    const members = new Map<string, Member>();
    for (const [i, id] of ids.entries()) {
      const server = servers[i];
      let postgresProxy: TcpProxy | undefined;
      const env: Record<string, string> = {
        TSRAFT_NODE_ID: id,
        TSRAFT_SECRET: secret,
        TSRAFT_TICK_MS: String(options.tickMs ?? 15),
        TSRAFT_PEERS: JSON.stringify(
          Object.fromEntries(
            ids.map((peer) => [
              peer,
              peer === id
                ? `http://127.0.0.1:${appPorts.get(id)}`
                : `http://127.0.0.1:${links.get(`${id}->${peer}`)?.port}`,
            ]),
          ),
        ),
      };
      if (server === undefined) {
        env.TSRAFT_PGLITE_DIR = join(options.outDir, 'pglite', id);
      } else {
        const url = new URL(server.url);
        postgresProxy = stack.use(
          await TcpProxy.start({ name: `${id}->postgres`, target: targetOf(server) }),
        );
        url.hostname = '127.0.0.1';
        url.port = String(postgresProxy.port);
        env.TSRAFT_DATABASE_URL = url.href;
      }
      const process = stack.use(
        new NodeProcess({
          id,
          env,
          logFile: join(options.outDir, 'nodes', `${id}.log`),
          onLine: options.onLine ?? (() => {}),
          onCrash: options.onCrash ?? (() => {}),
        }),
      );
      members.set(id, {
        id,
        process,
        appUrl: `http://127.0.0.1:${appPorts.get(id)}/trpc`,
        postgres: server,
        postgresProxy,
      });
    }
    await Promise.all(
      [...members.values()].map((member) => member.process.start(signal ? { signal } : {})),
    );
    const cluster = new NemesisCluster(ids, secret, members, links);
    const owned = stack.move();
    cluster.#dispose = () => owned.disposeAsync();
    return cluster;
  }

  #dispose: () => Promise<void> = async () => {};

  /** The URL of node `id`'s tRPC app. */
  appUrl(id: string): string {
    return this.#member(id).appUrl;
  }

  /** The apps' URLs by node id (what `raftFailoverLink` takes). */
  appUrls(): Record<string, string> {
    return Object.fromEntries(this.ids.map((id) => [id, this.appUrl(id)]));
  }

  process(id: string): NodeProcess {
    return this.#member(id).process;
  }

  /** Whether each node has a Postgres server of its own the harness can stop, kill and pause. */
  get hasPostgresServers(): boolean {
    return this.ids.every((id) => this.#member(id).postgres !== undefined);
  }

  /** Stops node `id`'s Postgres cleanly (fast shutdown). */
  async stopPostgres(id: string): Promise<void> {
    await this.#server(id).stop();
    this.#postgresDown.add(id);
  }

  /** Kills node `id`'s Postgres (SIGKILL: crash recovery at the next start). */
  async killPostgres(id: string): Promise<void> {
    await this.#server(id).kill();
    this.#postgresDown.add(id);
  }

  /** Freezes node `id`'s Postgres: it hangs rather than refuses (see `PostgresServer.pause`). */
  async pausePostgres(id: string): Promise<void> {
    await this.#server(id).pause();
    this.#postgresPaused.add(id);
  }

  async resumePostgres(id: string): Promise<void> {
    await this.#server(id).resume();
    this.#postgresPaused.delete(id);
  }

  /**
   * Starts node `id`'s Postgres again after a stop or a kill, and points the node's proxy at
   * wherever it came back.
   */
  async restartPostgres(id: string): Promise<void> {
    const server = this.#server(id);
    await server.restart();
    this.#member(id).postgresProxy?.retarget(targetOf(server));
    this.#postgresDown.delete(id);
    this.#postgresPaused.delete(id);
  }

  /**
   * Undoes every fault the harness injected: links healed, paused processes and servers
   * resumed, stopped servers and processes started again. For a scenario that failed half-way.
   */
  async healAll(options: { signal?: AbortSignal } = {}): Promise<void> {
    this.healLinks();
    for (const id of this.ids) {
      if (this.#postgresPaused.has(id)) await this.resumePostgres(id);
      if (this.#postgresDown.has(id)) await this.restartPostgres(id);
      const process = this.process(id);
      process.resume();
      if (!process.running) await process.start(options);
    }
  }

  /** Cuts the link `from -> to` (`from`'s requests to `to`: Raft messages, forwarded proposals). */
  cut(from: string, to: string): void {
    this.#link(from, to).cut();
  }

  /** Cuts every link between the groups, both ways; links inside a group stay. */
  partition(groups: readonly (readonly string[])[]): void {
    for (const [i, group] of groups.entries()) {
      for (const other of groups.slice(i + 1)) {
        for (const a of group) {
          for (const b of other) {
            this.cut(a, b);
            this.cut(b, a);
          }
        }
      }
    }
  }

  /** Heals every peer link. */
  healLinks(): void {
    for (const link of this.#links.values()) link.heal();
  }

  /** The links cut now, as `a->b`. */
  cutLinks(): string[] {
    return [...this.#links].filter(([, link]) => link.isCut).map(([name]) => name);
  }

  /** An admin client of node `id`'s app (the cluster secret in `x-admin`), one attempt per call. */
  admin(id: string): TRPCClient<NemesisAppRouter> {
    let client = this.#admins.get(id);
    if (client === undefined) {
      client = createTRPCClient<NemesisAppRouter>({
        links: [httpLink({ url: this.appUrl(id), headers: { 'x-admin': this.secret } })],
      });
      this.#admins.set(id, client);
    }
    return client;
  }

  /** Node `id`'s status, or `undefined` when it does not answer within a second. */
  async status(id: string): Promise<NemesisNodeStatus | undefined> {
    if (!this.process(id).running || this.process(id).paused) return undefined;
    try {
      return await this.admin(id).admin.status.query(undefined, {
        signal: AbortSignal.timeout(STATUS_TIMEOUT_MS),
      });
    } catch {
      return undefined;
    }
  }

  /** The statuses of the nodes that answer. */
  async statuses(): Promise<Map<string, NemesisNodeStatus>> {
    const answers = await Promise.all(
      this.ids.map(async (id) => [id, await this.status(id)] as const),
    );
    const statuses = new Map<string, NemesisNodeStatus>();
    for (const [id, status] of answers) if (status !== undefined) statuses.set(id, status);
    return statuses;
  }

  /** Stops every process, proxy and server the cluster started. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.#dispose();
  }

  #member(id: string): Member {
    const member = this.#members.get(id);
    if (member === undefined) throw new Error(`no node "${id}" in this cluster`);
    return member;
  }

  #server(id: string): PostgresServer {
    const server = this.#member(id).postgres;
    if (server === undefined) throw new Error(`node ${id} has no Postgres server of its own`);
    return server;
  }

  #link(from: string, to: string): TcpProxy {
    const link = this.#links.get(`${from}->${to}`);
    if (link === undefined) throw new Error(`no link ${from}->${to} in this cluster`);
    return link;
  }
}

/** Where a server listens, from its URL. */
function targetOf(server: PostgresServer): { host: string; port: number } {
  const url = new URL(server.url);
  return {
    host: url.hostname === 'localhost' ? '127.0.0.1' : url.hostname,
    port: Number(url.port),
  };
}

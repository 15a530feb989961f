import {
  createTRPCClient,
  httpBatchLink,
  httpLink,
  type TRPCClient,
  type TRPCLink,
} from '@trpc/client';
import type { AnyTRPCRouter } from '@trpc/server';
import {
  type AppliedEntry,
  type CommandResult,
  type EngineTuning,
  type NodeId,
  RaftNode,
} from '@tsraft/core';
import {
  type FaultInjector,
  type KvCommand,
  type KvResult,
  KvStateMachine,
  type KvStateMachineOptions,
  MemoryLogStore,
  MemorySnapshotStore,
  pickLoopbackPort,
} from '@tsraft/core/testing';
import { expect } from 'vitest';
import { z } from 'zod';
import { raftFailoverLink } from './raft-failover-link.ts';
import { createRaftHttpServer, type RaftHttpServer } from './raft-http-server.ts';
import { raftSessionLink } from './raft-session-link.ts';
import { SECRET } from './test-peers.test-helpers.ts';
import { createTrpcTransport } from './trpc-transport.ts';

/** The value of the `x-admin` header that makes a caller an admin of the test apps. */
export const ADMIN_SECRET = 'let me in';

export type KvNode = RaftNode<KvCommand, KvResult>;

const key = z.string().min(1).max(256);

/** The KV state machine's commands, as the app validates them. */
export const kvCommand: z.ZodType<KvCommand, KvCommand> = z.discriminatedUnion('op', [
  z.object({ op: z.literal('get'), key }),
  z.object({ op: z.literal('put'), key, value: z.string() }),
  z.object({ op: z.literal('append'), key, value: z.string() }),
  z.object({ op: z.literal('cas'), key, expected: z.string().nullable(), value: z.string() }),
]);

/**
 * A {@link KvStateMachine} with a domain rule: a command on a key that starts with `!` is refused
 * on every node with a `CommandError` whose code is the rest of the key (`!CONFLICT` gives code
 * `CONFLICT`), and changes nothing.
 */
class RefusingKvStateMachine extends KvStateMachine {
  override async apply(
    entries: readonly AppliedEntry<KvCommand>[],
    options?: { signal?: AbortSignal },
  ): Promise<(CommandResult<KvResult> | undefined)[]> {
    const refused = entries.map(
      (entry) => entry.kind === 'command' && entry.command.key.startsWith('!'),
    );
    const harmless = entries.map((entry, i) =>
      refused[i] && entry.kind === 'command'
        ? { ...entry, command: { op: 'get' as const, key: entry.command.key } }
        : entry,
    );
    const results = await super.apply(harmless, options);
    return results.map((result, i) => {
      const entry = entries[i];
      if (!refused[i] || entry?.kind !== 'command') return result;
      return {
        status: 'error',
        error: {
          name: 'RefusedKeyError',
          message: `the key "${entry.command.key}" is reserved`,
          code: entry.command.key.slice(1),
        },
      };
    });
  }
}

/** The request context of the test apps: whether the caller presented the admin header. */
export interface AppContext {
  readonly admin: boolean;
}

/** What a test app's router is built from, per node. */
export interface AppDeps {
  /** The node (it starts after the router is built). */
  readonly node: () => KvNode;
  readonly machine: () => KvStateMachine;
}

/** Options of {@link AppCluster.start}. */
export interface AppClusterOptions<TRouter extends AnyTRPCRouter> {
  /** The user's app router of one node. */
  readonly app: (deps: AppDeps) => TRouter;
  readonly ids?: readonly NodeId[];
  /** Nodes to start now (default all); the others stay down. */
  readonly running?: readonly NodeId[];
  readonly forwardProposals?: boolean;
  readonly tuning?: Partial<EngineTuning>;
  readonly machine?: KvStateMachineOptions;
  readonly readTimeoutMs?: number;
  /** `RaftNodeOptions.leaderWaitMs` of every node. */
  readonly leaderWaitMs?: number;
  /** Wraps every node's transport, to inject network faults. */
  readonly faults?: FaultInjector;
  /** The `responseMeta` of each node's HTTP adapter (e.g. the plugin's leader header). */
  readonly responseMeta?: (deps: AppDeps) => () => { headers: Record<string, string> };
}

interface RunningNode {
  readonly node: KvNode;
  readonly machine: KvStateMachine;
  readonly server: RaftHttpServer;
}

/**
 * Raft nodes in this process, each with one HTTP server on 127.0.0.1 (`createRaftHttpServer`)
 * that serves the peer transport under `/raft` and the user's app router (`app`) under `/trpc`.
 */
export class AppCluster<TRouter extends AnyTRPCRouter> {
  readonly urls: Record<NodeId, string>;
  readonly running: Map<NodeId, RunningNode> = new Map();
  readonly #ids: readonly NodeId[];
  readonly #options: AppClusterOptions<TRouter>;

  private constructor(
    urls: Record<NodeId, string>,
    ids: readonly NodeId[],
    options: AppClusterOptions<TRouter>,
  ) {
    this.urls = urls;
    this.#ids = ids;
    this.#options = options;
  }

  static async start<TRouter extends AnyTRPCRouter>(
    options: AppClusterOptions<TRouter>,
  ): Promise<AppCluster<TRouter>> {
    const ids = options.ids ?? ['n1', 'n2', 'n3'];
    const urls: Record<NodeId, string> = {};
    for (const id of ids) urls[id] = `http://127.0.0.1:${await pickLoopbackPort()}`;
    const cluster = new AppCluster<TRouter>(urls, ids, options);
    await Promise.all((options.running ?? ids).map((id) => cluster.#startNode(id, ids, options)));
    return cluster;
  }

  /**
   * Starts a server outside the cluster's initial ids at `url` (default: a free loopback port),
   * knowing every URL known so far and bootstrapping from the initial voters. The nodes already
   * running do not know its URL: a membership change that adds it must carry it. Resolves with
   * its URL.
   */
  async startServer(id: NodeId, url?: string): Promise<string> {
    if (this.urls[id] !== undefined) throw new Error(`${id} has a URL already`);
    const own = url ?? `http://127.0.0.1:${await pickLoopbackPort()}`;
    this.urls[id] = own;
    await this.#startNode(id, this.#ids, this.#options);
    return own;
  }

  async #startNode(
    id: NodeId,
    ids: readonly NodeId[],
    options: AppClusterOptions<TRouter>,
  ): Promise<void> {
    const machine = new RefusingKvStateMachine(options.machine);
    const transport = createTrpcTransport({
      nodeId: id,
      peers: { ...this.urls },
      secret: SECRET,
      listen: false,
    });
    let node: KvNode | undefined;
    const deps: AppDeps = {
      node: () => {
        if (node === undefined) throw new Error(`node ${id} has not started`);
        return node;
      },
      machine: () => machine,
    };
    const server = createRaftHttpServer({
      router: options.app(deps),
      transport,
      basePath: '/trpc',
      ...(options.responseMeta === undefined
        ? {}
        : { raft: { responseMeta: options.responseMeta(deps) } }),
      createContext: ({ req }): AppContext => ({ admin: req.headers['x-admin'] === ADMIN_SECRET }),
    });
    await server.listen({ port: Number(new URL(this.urls[id] as string).port) });
    node = await RaftNode.start<KvCommand, KvResult>({
      id,
      config: { voters: [...ids] },
      logStore: new MemoryLogStore(),
      snapshotStore: new MemorySnapshotStore(),
      stateMachine: machine,
      transport: options.faults === undefined ? transport : options.faults.wrap(id, transport),
      tickMs: 10,
      ...(options.forwardProposals === undefined
        ? {}
        : { forwardProposals: options.forwardProposals }),
      ...(options.tuning === undefined ? {} : { tuning: options.tuning }),
      ...(options.readTimeoutMs === undefined ? {} : { readTimeoutMs: options.readTimeoutMs }),
      ...(options.leaderWaitMs === undefined ? {} : { leaderWaitMs: options.leaderWaitMs }),
    });
    this.running.set(id, { node, machine, server });
  }

  node(id: NodeId): KvNode {
    return this.#running(id).node;
  }

  machine(id: NodeId): KvStateMachine {
    return this.#running(id).machine;
  }

  #running(id: NodeId): RunningNode {
    const running = this.running.get(id);
    if (running === undefined) throw new Error(`node ${id} is not running`);
    return running;
  }

  /** A plain client of one node's app (httpLink, no session, no retries). */
  client(
    id: NodeId,
    options: { headers?: Record<string, string>; transformer?: WireTransformer } = {},
  ): TRPCClient<TRouter> {
    return createTRPCClient<TRouter>({
      links: [
        appHttpLink<TRouter>({
          url: `${this.urls[id]}/trpc`,
          headers: options.headers ?? {},
          transformer: options.transformer,
        }),
      ],
    });
  }

  /**
   * A client of the whole cluster: stamped, retried mutations ({@link raftSessionLink}) that
   * move between nodes ({@link raftFailoverLink}), starting at `initial`. `onFetchFailure`
   * counts requests that got no answer; `onFetch` sees the URL of every request. `transformer`:
   * the app's, if it has one. `batch`: `httpBatchLink` instead of `httpLink` under the failover
   * link (calls made together travel in one request).
   */
  sessionClient(
    options: {
      initial?: NodeId;
      batch?: boolean;
      onFetchFailure?: () => void;
      onFetch?: (url: string) => void;
      transformer?: WireTransformer;
    } = {},
  ): TRPCClient<TRouter> {
    const counted: typeof fetch = async (input, init) => {
      options.onFetch?.(String(input));
      try {
        return await fetch(input, init);
      } catch (error) {
        options.onFetchFailure?.();
        throw error;
      }
    };
    return createTRPCClient<TRouter>({
      links: [
        raftSessionLink(),
        raftFailoverLink({
          nodes: Object.fromEntries(
            Object.entries(this.urls).map(([id, url]) => [id, `${url}/trpc`]),
          ),
          link: (url) =>
            appHttpLink<TRouter>({
              url,
              fetch: counted,
              transformer: options.transformer,
              batch: options.batch ?? false,
            }),
          ...(options.initial === undefined ? {} : { initial: options.initial }),
        }),
      ],
    });
  }

  /** Waits until one running node leads and a majority of the whole cluster follows it. */
  async leader(): Promise<KvNode> {
    let leader: KvNode | undefined;
    const size = Object.keys(this.urls).length;
    await expect
      .poll(
        () => {
          const statuses = [...this.running.values()].map(({ node }) => node.status());
          const top = statuses.find((status) => status.role === 'leader');
          const agree = statuses.filter(
            (status) => status.leaderId === top?.id && status.term === top?.term,
          );
          leader = top === undefined ? undefined : this.running.get(top.id)?.node;
          return leader !== undefined && agree.length * 2 > size;
        },
        { timeout: 5000, interval: 10 },
      )
      .toBe(true);
    return leader as KvNode;
  }

  /** The running nodes other than `id`. */
  others(id: NodeId): NodeId[] {
    return [...this.running.keys()].filter((other) => other !== id);
  }

  /** Stops a node as a crash would look from outside: its connections drop, its port closes. */
  async stop(id: NodeId): Promise<void> {
    const running = this.running.get(id);
    if (running === undefined) return;
    this.running.delete(id);
    const closed = running.server.close();
    await running.node.close();
    await closed;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await Promise.all([...this.running.keys()].map((id) => this.stop(id)));
  }
}

/** A tRPC data transformer, such as superjson. */
export interface WireTransformer {
  serialize(value: unknown): unknown;
  deserialize(value: unknown): unknown;
}

/**
 * `httpLink` to a test app, with the app's transformer when it has one (none by default), typed
 * for `TRouter` (httpLink's options depend on whether the router has a transformer).
 */
function appHttpLink<TRouter extends AnyTRPCRouter>(options: {
  url: string;
  headers?: Record<string, string>;
  fetch?: typeof fetch;
  transformer: WireTransformer | undefined;
  /** `httpBatchLink` instead of `httpLink`. */
  batch?: boolean;
}): TRPCLink<TRouter> {
  const { transformer, batch, ...rest } = options;
  const link = batch === true ? httpBatchLink<AnyTRPCRouter> : httpLink<AnyTRPCRouter>;
  return link(
    transformer === undefined ? rest : ({ ...rest, transformer } as typeof rest),
  ) as TRPCLink<TRouter>;
}

/**
 * The demo's side of its node processes: starts `node.ts` once per node (with `process.execPath`
 * and the `@tsraft/source` condition), reads the JSON lines they report, kills and restarts
 * them, gives tRPC clients of their apps, and stops every process it started.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createTRPCClient, httpLink, type TRPCClient } from '@trpc/client';
import type { NodeId, RaftNodeStatus } from '@tsraft/core';
import { pickLoopbackPort } from '@tsraft/core/testing';
import { raftFailoverLink, raftSessionLink } from '@tsraft/trpc-transport';
import type { BankAppRouter } from './app.ts';

const ENTRY = fileURLToPath(new URL('./node.ts', import.meta.url));

/** What a node process reports once it serves. */
export interface ReadyReport {
  readonly pid: number;
  /** How long PGlite took to open and migrate, in ms. */
  readonly openMs: number;
  readonly appliedIndex: number;
  readonly lastIndex: number;
  readonly term: number;
}

/** A call through a session client, as the client saw it. */
export interface CallTrace {
  /** HTTP requests sent (the first attempt and the retries). */
  attempts: number;
  /** Requests that got no answer at all (the node was down), by node. */
  noAnswer: NodeId[];
  /** The node whose answer ended the call. */
  answeredBy: NodeId | undefined;
}

export class DemoCluster {
  readonly urls: Record<NodeId, string>;
  /** Called with each line a node reports that is not about its start (e.g. `leader`). */
  onReport: (id: NodeId, event: Record<string, unknown>) => void = () => {};
  readonly #secret: string;
  readonly #dataDir: (id: NodeId) => string;
  readonly #processes = new Map<NodeId, ChildProcess>();
  /** Every process ever started, until it exited. */
  readonly #running = new Set<ChildProcess>();

  private constructor(
    urls: Record<NodeId, string>,
    secret: string,
    dataDir: (id: NodeId) => string,
  ) {
    this.urls = urls;
    this.#secret = secret;
    this.#dataDir = dataDir;
    // Last resort should the demo exit without stopping them (an uncaught error).
    process.once('exit', () => {
      for (const child of this.#running) child.kill('SIGKILL');
    });
  }

  /** Picks a free loopback port per node; starts nothing yet. */
  static async create(options: {
    ids: readonly NodeId[];
    secret: string;
    dataDir: (id: NodeId) => string;
  }): Promise<DemoCluster> {
    const urls: Record<NodeId, string> = {};
    for (const id of options.ids) urls[id] = `http://127.0.0.1:${await pickLoopbackPort()}`;
    return new DemoCluster(urls, options.secret, options.dataDir);
  }

  get ids(): NodeId[] {
    return Object.keys(this.urls);
  }

  /** The nodes whose process runs. */
  get live(): NodeId[] {
    return [...this.#processes.keys()];
  }

  pid(id: NodeId): number | undefined {
    return this.#processes.get(id)?.pid;
  }

  /** Starts a node's process and resolves once it serves (its database open, its node started). */
  start(id: NodeId): Promise<ReadyReport> {
    const child = spawn(process.execPath, ['--conditions=@tsraft/source', ENTRY], {
      env: {
        ...process.env,
        TSRAFT_NODE_ID: id,
        TSRAFT_PEERS: JSON.stringify(this.urls),
        TSRAFT_SECRET: this.#secret,
        TSRAFT_DATA_DIR: this.#dataDir(id),
      },
      // stdin stays open: a node whose parent went away sees it end and stops.
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.#processes.set(id, child);
    this.#running.add(child);
    child.once('exit', () => {
      this.#running.delete(child);
      if (this.#processes.get(id) === child) this.#processes.delete(id);
    });
    let errors = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      errors += chunk.toString();
    });
    return new Promise<ReadyReport>((resolve, reject) => {
      let openMs = 0;
      let buffered = '';
      child.stdout?.on('data', (chunk: Buffer) => {
        buffered += chunk.toString();
        for (let end = buffered.indexOf('\n'); end >= 0; end = buffered.indexOf('\n')) {
          const line = buffered.slice(0, end);
          buffered = buffered.slice(end + 1);
          let event: Record<string, unknown>;
          try {
            event = JSON.parse(line) as Record<string, unknown>;
          } catch {
            continue; // not a report
          }
          if (event.event === 'database-open') openMs = Number(event.ms);
          else if (event.event === 'ready') {
            resolve({
              pid: child.pid ?? 0,
              openMs,
              appliedIndex: Number(event.appliedIndex),
              lastIndex: Number(event.lastIndex),
              term: Number(event.term),
            });
          } else this.onReport(id, event);
        }
      });
      child.once('exit', (code, signal) => {
        reject(new Error(`node ${id} exited (${code ?? signal}) ${errors.trim()}`.trim()));
      });
    });
  }

  /** Kills a node's process with SIGKILL (no chance to close anything) and waits for its exit. */
  async kill(id: NodeId): Promise<void> {
    const child = this.#processes.get(id);
    if (child === undefined) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  }

  /** Asks every running process to stop (SIGTERM), SIGKILL after 5 s; resolves when all exited. */
  async stopAll(): Promise<number> {
    const children = [...this.#running];
    await Promise.all(
      children.map(async (child) => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(timer);
      }),
    );
    return children.length;
  }

  /** A plain client of one node's app (with the admin credential, for `raftAdmin`). */
  client(id: NodeId): TRPCClient<BankAppRouter> {
    return createTRPCClient<BankAppRouter>({
      links: [httpLink({ url: `${this.urls[id]}/trpc`, headers: { 'x-admin': this.#secret } })],
    });
  }

  /**
   * The app's client of the whole cluster: `raftSessionLink` stamps each mutation with
   * `{ clientId, seq }` and retries it with the same stamp; `raftFailoverLink` sends each attempt
   * to one node and moves on when that node does not answer. `trace` records the last call.
   */
  sessionClient(initial: NodeId): { client: TRPCClient<BankAppRouter>; trace: CallTrace } {
    const trace: CallTrace = { attempts: 0, noAnswer: [], answeredBy: undefined };
    const nodeOf = (input: string | URL | Request): NodeId | undefined => {
      const url = String(input instanceof Request ? input.url : input);
      return this.ids.find((id) => url.startsWith(`${this.urls[id]}/`));
    };
    const traced: typeof fetch = async (input, init) => {
      trace.attempts++;
      try {
        const response = await fetch(input, init);
        trace.answeredBy = nodeOf(input);
        return response;
      } catch (error) {
        const id = nodeOf(input);
        if (id !== undefined) trace.noAnswer.push(id);
        throw error;
      }
    };
    const client = createTRPCClient<BankAppRouter>({
      links: [
        raftSessionLink(),
        raftFailoverLink({
          nodes: Object.fromEntries(this.ids.map((id) => [id, `${this.urls[id]}/trpc`])),
          initial,
          link: (url) => httpLink({ url, fetch: traced }),
        }),
      ],
    });
    return { client, trace };
  }

  /** Statuses of the running nodes that answer. */
  async statuses(): Promise<RaftNodeStatus[]> {
    const answers = await Promise.allSettled(
      this.live.map((id) => this.client(id).raftAdmin.status.query()),
    );
    return answers.flatMap((answer) => (answer.status === 'fulfilled' ? [answer.value] : []));
  }

  /** Waits until a running node leads and a majority of the cluster follows it in its term. */
  async leader(timeoutMs = 10_000): Promise<RaftNodeStatus> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const statuses = await this.statuses();
      const leader = statuses.find((status) => status.role === 'leader');
      const agree = statuses.filter(
        (status) => status.leaderId === leader?.id && status.term === leader?.term,
      );
      if (leader !== undefined && agree.length * 2 > this.ids.length) return leader;
      if (performance.now() > deadline) throw new Error('timed out waiting for a leader');
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }
}

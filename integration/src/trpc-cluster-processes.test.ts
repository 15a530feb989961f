import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createTRPCClient, httpLink, type TRPCClient } from '@trpc/client';
import type { NodeId, RaftNodeStatus } from '@tsraft/core';
import { pickLoopbackPort } from '@tsraft/core/testing';
import { raftFailoverLink, raftSessionLink } from '@tsraft/trpc-transport';
import { afterAll, describe, expect, it } from 'vitest';
import type { KvAppRouter } from './fixtures/kv-app.ts';

const ENTRY = fileURLToPath(new URL('./fixtures/kv-node.ts', import.meta.url));
const SECRET = 'the cluster secret of the process tests';

/** Every process any test started, killed in `afterAll` should a test not dispose of them. */
const started = new Set<ChildProcess>();
afterAll(() => {
  for (const child of started) child.kill('SIGKILL');
});

/** Three KV nodes as OS processes (`fixtures/kv-node.ts`), talking tRPC over loopback. */
class ProcessCluster {
  readonly urls: Record<NodeId, string>;
  readonly processes: Map<NodeId, ChildProcess> = new Map();
  readonly output: Map<NodeId, string> = new Map();

  private constructor(urls: Record<NodeId, string>) {
    this.urls = urls;
  }

  static async start(ids: readonly NodeId[]): Promise<ProcessCluster> {
    const urls: Record<NodeId, string> = {};
    for (const id of ids) urls[id] = `http://127.0.0.1:${await pickLoopbackPort()}`;
    const cluster = new ProcessCluster(urls);
    try {
      await Promise.all(ids.map((id) => cluster.#spawn(id)));
    } catch (error) {
      await cluster[Symbol.asyncDispose]();
      throw error;
    }
    return cluster;
  }

  async #spawn(id: NodeId): Promise<void> {
    const child = spawn(process.execPath, ['--conditions=@tsraft/source', ENTRY], {
      env: {
        ...process.env,
        TSRAFT_NODE_ID: id,
        TSRAFT_PEERS: JSON.stringify(this.urls),
        TSRAFT_SECRET: SECRET,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    started.add(child);
    this.processes.set(id, child);
    this.output.set(id, '');
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`node ${id} did not start: ${this.output.get(id)}`)),
        15_000,
      );
      const record = (chunk: Buffer): void => {
        const text = (this.output.get(id) ?? '') + chunk.toString();
        this.output.set(id, text);
        if (text.includes(`{"ready":"${id}"}`)) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout?.on('data', record);
      child.stderr?.on('data', record);
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`node ${id} exited (${code ?? signal}): ${this.output.get(id)}`));
      });
    });
  }

  /** A plain client of one node's app, as an admin. */
  admin(id: NodeId): TRPCClient<KvAppRouter> {
    return createTRPCClient<KvAppRouter>({
      links: [httpLink({ url: `${this.urls[id]}/trpc`, headers: { 'x-admin': SECRET } })],
    });
  }

  /** A client of the cluster with stamped, retried mutations that move between nodes. */
  sessionClient(initial: NodeId, onNoAnswer: () => void): TRPCClient<KvAppRouter> {
    const counted: typeof fetch = async (input, init) => {
      try {
        return await fetch(input, init);
      } catch (error) {
        onNoAnswer();
        throw error;
      }
    };
    return createTRPCClient<KvAppRouter>({
      links: [
        raftSessionLink(),
        raftFailoverLink({
          nodes: Object.fromEntries(
            Object.entries(this.urls).map(([id, url]) => [id, `${url}/trpc`]),
          ),
          initial,
          link: (url) => httpLink({ url, fetch: counted }),
        }),
      ],
    });
  }

  /** Statuses of the live nodes that answer; an unreachable node is left out. */
  async statuses(): Promise<RaftNodeStatus[]> {
    const answers = await Promise.allSettled(
      [...this.processes.keys()].map((id) => this.admin(id).raftAdmin.status.query()),
    );
    return answers.flatMap((answer) => (answer.status === 'fulfilled' ? [answer.value] : []));
  }

  /** Waits until a live node leads and a majority of the cluster follows it in its term. */
  async leader(): Promise<RaftNodeStatus> {
    const size = Object.keys(this.urls).length;
    let leader: RaftNodeStatus | undefined;
    await expect
      .poll(
        async () => {
          const statuses = await this.statuses();
          leader = statuses.find((status) => status.role === 'leader');
          const agree = statuses.filter(
            (status) => status.leaderId === leader?.id && status.term === leader?.term,
          );
          return leader !== undefined && agree.length * 2 > size;
        },
        { timeout: 10_000, interval: 25 },
      )
      .toBe(true);
    return leader as RaftNodeStatus;
  }

  /** Kills a node's process with SIGKILL (no chance to close anything) and waits for its exit. */
  async kill(id: NodeId): Promise<void> {
    const child = this.processes.get(id);
    this.processes.delete(id);
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGKILL');
    await exited;
    started.delete(child);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await Promise.all([...this.processes.keys()].map((id) => this.kill(id)));
  }
}

describe('a 3-node cluster as three OS processes, over tRPC on loopback', () => {
  it('SIGKILL of the leader while clients write: a new leader is elected, and every acknowledged write is applied exactly once on the survivors (Raft paper 5.2, thesis 6.3)', async () => {
    const ids = ['n1', 'n2', 'n3'];
    await using cluster = await ProcessCluster.start(ids);
    const leader = await cluster.leader();

    let unanswered = 0;
    const clients = Array.from({ length: 6 }, (_, c) =>
      cluster.sessionClient(ids[c % ids.length] as NodeId, () => unanswered++),
    );
    const acknowledged = clients.map(() => [] as string[]);
    let stop = false;
    const writers = clients.map(async (client, c) => {
      for (let w = 0; !stop; w++) {
        const token = `c${c}w${w};`;
        const result = await client.execute.mutate({ op: 'append', key: `c${c}`, value: token });
        expect(result).toEqual({
          op: 'append',
          value: expect.stringMatching(new RegExp(`${token}$`)),
        });
        acknowledged[c]?.push(token);
      }
    });
    // A writer that fails (a mutation the link gave up on) fails the test at once.
    const writing = Promise.all(writers);
    const stoppedEarly = writing.then(() => {
      throw new Error('the writers stopped');
    });
    stoppedEarly.catch(() => {});
    const whileWriting = (wait: Promise<unknown>): Promise<unknown> =>
      Promise.race([wait, stoppedEarly]);
    // The first calls of a fresh process are slow (cold code): allow a few seconds.
    await whileWriting(
      expect
        .poll(() => acknowledged.every((tokens) => tokens.length >= 5), { timeout: 10_000 })
        .toBe(true),
    );
    const before = acknowledged.map((tokens) => tokens.length);

    await cluster.kill(leader.id);
    const next = await cluster.leader();
    expect(next.id).not.toBe(leader.id);
    expect(next.term).toBeGreaterThan(leader.term);
    await whileWriting(
      expect
        .poll(() => acknowledged.every((tokens, c) => tokens.length >= (before[c] ?? 0) + 10), {
          timeout: 20_000,
        })
        .toBe(true),
    );
    stop = true;
    await writing;
    // Clients of the killed node lost requests in flight or found its port closed: they retried.
    expect(unanswered).toBeGreaterThan(0);

    // Both survivors applied everything the new leader committed...
    const survivors = [...cluster.processes.keys()];
    const { commitIndex } = await cluster.admin(next.id).raftAdmin.status.query();
    await expect
      .poll(async () => {
        const statuses = await cluster.statuses();
        return (
          statuses.length === survivors.length &&
          statuses.every((status) => status.appliedIndex >= commitIndex)
        );
      })
      .toBe(true);
    // ...and each client's key holds exactly its acknowledged tokens, each once, in order.
    for (const id of survivors) {
      const client = cluster.admin(id);
      for (const [c, tokens] of acknowledged.entries()) {
        await expect(client.getLocal.query({ key: `c${c}` })).resolves.toBe(tokens.join(''));
      }
    }
    // A linearizable read through a follower agrees.
    const follower = survivors.find((id) => id !== next.id) as NodeId;
    await expect(cluster.admin(follower).get.query({ key: 'c0' })).resolves.toBe(
      acknowledged[0]?.join(''),
    );
  });
});

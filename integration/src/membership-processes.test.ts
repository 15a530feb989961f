import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createTRPCClient, httpLink, type TRPCClient } from '@trpc/client';
import type { NodeId, RaftNodeStatus } from '@tsraft/core';
import { pickLoopbackPort } from '@tsraft/core/testing';
import { type PostgresServer, selectProvider } from '@tsraft/testing';
import { raftErrorOf, raftFailoverLink, raftSessionLink } from '@tsraft/trpc-transport';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LogAppRouter } from './fixtures/pg-log-app.ts';

/**
 * Membership changes of a cluster of OS processes, each with its own Postgres
 * (`fixtures/pg-log-node.ts`), under writes: add a fourth and a fifth node to a running
 * 3-node cluster, then remove two of the originals, the leader among them (Raft paper 6,
 * thesis 4). Every acknowledged write must be on every member of the final configuration.
 */

const ENTRY = fileURLToPath(new URL('./fixtures/pg-log-node.ts', import.meta.url));
const SECRET = 'the cluster secret of the membership tests';
const IDS: readonly NodeId[] = ['n1', 'n2', 'n3', 'n4', 'n5'];
const ORIGINALS: readonly NodeId[] = ['n1', 'n2', 'n3'];

const servers = new Map<NodeId, PostgresServer>();
const urls: Record<NodeId, string> = {};
const processes = new Map<NodeId, ChildProcess>();

beforeAll(async () => {
  const provider = await selectProvider();
  const started = await Promise.all(IDS.map(() => provider.start()));
  for (const [i, id] of IDS.entries()) servers.set(id, started[i] as PostgresServer);
  for (const id of IDS) urls[id] = `http://127.0.0.1:${await pickLoopbackPort()}`;
});

afterAll(async () => {
  for (const child of processes.values()) child.kill('SIGKILL');
  for (const server of servers.values()) await server[Symbol.asyncDispose]();
});

/** Starts node `id` as a process that knows the nodes `peers` and waits until it serves. */
async function startNode(id: NodeId, peers: readonly NodeId[]): Promise<void> {
  const child = spawn(process.execPath, ['--conditions=@tsraft/source', ENTRY], {
    env: {
      ...process.env,
      TSRAFT_NODE_ID: id,
      TSRAFT_PEERS: JSON.stringify(Object.fromEntries(peers.map((p) => [p, urls[p]]))),
      TSRAFT_VOTERS: JSON.stringify(ORIGINALS),
      TSRAFT_SECRET: SECRET,
      TSRAFT_PG_URL: servers.get(id)?.url ?? '',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  processes.set(id, child);
  let output = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${id} did not start: ${output}`)), 30_000);
    const record = (chunk: Buffer): void => {
      output += chunk.toString();
      if (output.includes(`{"ready":"${id}"}`)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout?.on('data', record);
    child.stderr?.on('data', record);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${id} exited (${code ?? signal}): ${output}`));
    });
  });
}

/** Stops node `id` with SIGTERM (a leader hands leadership over first) and waits for its exit. */
async function stopNode(id: NodeId): Promise<void> {
  const child = processes.get(id);
  processes.delete(id);
  if (child === undefined || child.exitCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  await exited;
}

function admin(id: NodeId): TRPCClient<LogAppRouter> {
  return createTRPCClient<LogAppRouter>({
    links: [httpLink({ url: `${urls[id]}/trpc`, headers: { 'x-admin': SECRET } })],
  });
}

async function statuses(): Promise<RaftNodeStatus[]> {
  const answers = await Promise.allSettled(
    [...processes.keys()].map((id) => admin(id).raftAdmin.status.query()),
  );
  return answers.flatMap((answer) => (answer.status === 'fulfilled' ? [answer.value] : []));
}

/** The leader of the highest term among the running nodes, once there is one. */
async function leader(): Promise<RaftNodeStatus> {
  let found: RaftNodeStatus | undefined;
  await expect
    .poll(
      async () => {
        const leaders = (await statuses()).filter((s) => s.role === 'leader');
        found = leaders.sort((a, b) => b.term - a.term)[0];
        return found !== undefined;
      },
      { timeout: 20_000, interval: 50 },
    )
    .toBe(true);
  return found as RaftNodeStatus;
}

/**
 * Runs an admin call on the current leader, again while it fails in a retryable way (another
 * change under way, a leader change), as an operator's script would.
 */
async function onLeader<T>(call: (client: TRPCClient<LogAppRouter>) => Promise<T>): Promise<T> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const current = await leader();
    try {
      return await call(admin(current.id));
    } catch (error) {
      if (raftErrorOf(error)?.retryable !== true || Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

/** The tokens a writer appended, in order: `;`-terminated. */
function tokensOf(value: string | undefined): string[] {
  return (value ?? '').split(';').filter((token) => token !== '');
}

describe('membership changes of a cluster of OS processes on Postgres, under writes', () => {
  it('adds a 4th and a 5th node, removes two originals (the leader among them): every acknowledged write is on every final member (Raft paper 6)', async () => {
    await Promise.all(ORIGINALS.map((id) => startNode(id, ORIGINALS)));
    await leader();

    // Writers: exactly-once appends through whichever node answers, retried with their stamp.
    const acknowledged = [0, 1, 2, 3].map(() => [] as string[]);
    let stop = false;
    const writers = acknowledged.map(async (tokens, c) => {
      const client = createTRPCClient<LogAppRouter>({
        links: [
          raftSessionLink(),
          raftFailoverLink({
            nodes: Object.fromEntries(IDS.map((id) => [id, `${urls[id]}/trpc`])),
            initial: ORIGINALS[c % ORIGINALS.length] as NodeId,
            link: (url) => httpLink({ url }),
          }),
        ],
      });
      for (let w = 0; !stop; w++) {
        const token = `c${c}w${w}`;
        try {
          await client.append.mutate({ key: `c${c}`, token: `${token};` });
          tokens.push(token);
        } catch {
          // Given up on after its retries: it may or may not have applied; a new token follows.
        }
      }
    });
    const progress = async (more: number): Promise<void> => {
      const from = acknowledged.map((tokens) => tokens.length);
      await expect
        .poll(() => acknowledged.every((tokens, c) => tokens.length >= (from[c] ?? 0) + more), {
          timeout: 30_000,
        })
        .toBe(true);
    };
    await progress(5);

    // Grow: the new nodes know the cluster; the cluster learns their URLs from the change.
    for (const id of ['n4', 'n5']) {
      await startNode(id, IDS);
      await onLeader((client) =>
        client.raftAdmin.addLearner.mutate({ id, url: urls[id], promote: true }),
      );
      await expect
        .poll(async () => (await leader()).config.voters.includes(id), { timeout: 30_000 })
        .toBe(true);
      await progress(3);
    }
    expect((await leader()).config).toMatchObject({ voters: [...IDS] });

    // Shrink: an original follower, then the leader itself (it steps down once it commits).
    const oldLeader = (await leader()).id;
    expect(ORIGINALS).toContain(oldLeader);
    const follower = ORIGINALS.find((id) => id !== oldLeader) as NodeId;
    await onLeader((client) => client.raftAdmin.removeNode.mutate({ id: follower }));
    await progress(3);
    await onLeader((client) => client.raftAdmin.removeNode.mutate({ id: oldLeader }));
    const final = IDS.filter((id) => id !== follower && id !== oldLeader);
    await expect
      .poll(
        async () => {
          const current = await leader();
          return current.id !== oldLeader && current.config.voters.join() === final.join();
        },
        { timeout: 30_000 },
      )
      .toBe(true);
    await stopNode(follower);
    await stopNode(oldLeader);
    await progress(5);
    stop = true;
    await Promise.all(writers);

    // Every member of the final configuration applied everything, and holds every acknowledged
    // token exactly once, in order.
    const { commitIndex } = await await onLeader((client) => client.raftAdmin.status.query());
    await expect
      .poll(
        async () => {
          const applied = await Promise.all(
            final.map(async (id) => (await admin(id).raftAdmin.status.query()).appliedIndex),
          );
          return applied.every((index) => index >= commitIndex);
        },
        { timeout: 30_000 },
      )
      .toBe(true);
    for (const id of final) {
      const log = await admin(id).localLog.query();
      for (const [c, tokens] of acknowledged.entries()) {
        const held = tokensOf(log[`c${c}`]);
        expect(new Set(held).size, `${id}: a token twice in c${c}`).toBe(held.length);
        expect(
          held.filter((token) => tokens.includes(token)),
          `${id}: the acknowledged tokens of c${c}`,
        ).toEqual(tokens);
      }
    }
  });
});

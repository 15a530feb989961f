import { request as httpRequest } from 'node:http';
import { createTRPCClient, httpLink, TRPCClientError } from '@trpc/client';
import { initTRPC, TRPCError } from '@trpc/server';
import { RaftNode, RaftSupervisor } from '@tsraft/core';
import {
  type KvCommand,
  type KvResult,
  KvStateMachine,
  MemoryLogStore,
  MemorySnapshotStore,
} from '@tsraft/core/testing';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { kvCommand } from './raft-app.test-helpers.ts';
import { raftErrorOf } from './raft-client-error.ts';
import { raftFailoverLink } from './raft-failover-link.ts';
import { createRaftHttpServer, type RaftHttpServerOptions } from './raft-http-server.ts';
import { createRaftProcedures, type RaftNodeSource } from './raft-procedures.ts';
import { raftSessionLink } from './raft-session-link.ts';
import { SECRET } from './test-peers.test-helpers.ts';
import { createTrpcTransport } from './trpc-transport.ts';

/** An app in development mode (tRPC adds stacks to its errors) that fails in several ways. */
function failingApp() {
  const t = initTRPC.create({ isDev: true });
  return t.router({
    boom: t.procedure.query(() => {
      throw new Error('ENOENT: no such file /var/lib/app/secret-table.db');
    }),
    denied: t.procedure.query(() => {
      throw new TRPCError({ code: 'UNAUTHORIZED', message: 'show your token' });
    }),
    echo: t.procedure.input(z.object({ s: z.string() })).mutation(({ input }) => input.s.length),
  });
}

/** Starts a server on a free port of 127.0.0.1; disposing it closes it. */
async function serve<TRouter extends Parameters<typeof createRaftHttpServer>[0]['router']>(
  options: RaftHttpServerOptions<TRouter>,
) {
  const server = createRaftHttpServer(options);
  const { port } = await server.listen({ port: 0 });
  return Object.assign(server, { url: `http://127.0.0.1:${port}` });
}

/** A POST whose headers announce `contentLength` bytes; resolves with the status of the answer. */
function announce(url: string, path: string, contentLength: number): Promise<number> {
  const target = new URL(url);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: target.hostname,
        port: target.port,
        path,
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': String(contentLength) },
      },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
        req.destroy();
      },
    );
    req.on('error', reject);
    req.flushHeaders();
  });
}

/** A node of one voter on its own server: it leads at once. */
async function singleNode() {
  const server = createRaftHttpServer({ router: initTRPC.create().router({}) });
  const { port } = await server.listen({ port: 0 });
  await server.close();
  const url = `http://127.0.0.1:${port}`;
  const transport = createTrpcTransport({
    nodeId: 'b',
    peers: { b: url },
    secret: SECRET,
    listen: false,
  });
  const machine = new KvStateMachine();
  const node = await RaftNode.start<KvCommand, KvResult>({
    id: 'b',
    config: { voters: ['b'] },
    logStore: new MemoryLogStore(),
    snapshotStore: new MemorySnapshotStore(),
    stateMachine: machine,
    transport,
    tickMs: 10,
  });
  return { node, machine, transport, port };
}

function kvRouter(node: RaftNodeSource<KvCommand, KvResult>) {
  const raft = createRaftProcedures({ node, command: kvCommand });
  return { raft, router: initTRPC.create().router({ execute: raft.replicatedMutation }) };
}

describe('createRaftHttpServer: safe defaults', () => {
  it('sends no stack and no message of an unexpected error unless asked; keeps deliberate messages', async () => {
    await using safe = await serve({ router: failingApp() });
    const boom = await fetch(`${safe.url}/boom`);
    expect(boom.status).toBe(500);
    const text = await boom.text();
    expect(text).not.toMatch(/stack|\n\s+at |\\n\s+at |\.ts:\d+|\/var\/lib|ENOENT/);
    expect(JSON.parse(text).error.message).toMatch(/internal server error/);
    const denied = await (await fetch(`${safe.url}/denied`)).text();
    expect(denied).not.toMatch(/stack/);
    expect(JSON.parse(denied).error.message).toBe('show your token');

    await using open = await serve({ router: failingApp(), exposeErrorDetails: true });
    const detailed = await (await fetch(`${open.url}/boom`)).text();
    expect(detailed).toMatch(/ENOENT/);
    expect(JSON.parse(detailed).error.data.stack).toMatch(/\n\s+at /);
  });

  it('limits the app body to 1 MiB by default, before reading an announced body or while counting a chunked one', async () => {
    await using server = await serve({ router: failingApp() });
    const post = (s: string, chunked = false) =>
      fetch(`${server.url}/echo`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: chunked ? new Blob([JSON.stringify({ s })]).stream() : JSON.stringify({ s }),
        ...(chunked ? { duplex: 'half' } : {}),
      } as RequestInit);
    expect((await post('x'.repeat(1000))).status).toBe(200);
    expect((await post('x'.repeat(2 * 1024 * 1024))).status).toBe(413);
    expect((await post('x'.repeat(2 * 1024 * 1024), true)).status).toBe(413);
    // 200 MiB announced and never sent: only a refusal made before reading answers.
    expect(await announce(server.url, '/echo', 200 * 1024 * 1024)).toBe(413);
    expect((await post('x'.repeat(1000))).status).toBe(200);

    await using larger = await serve({ router: failingApp(), maxBodyBytes: 4 * 1024 * 1024 });
    const accepted = await fetch(`${larger.url}/echo`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ s: 'x'.repeat(2 * 1024 * 1024) }),
    });
    expect(accepted.status).toBe(200);
  });

  it('serves the app and the peer endpoint of a node on one port, with the leader header', async () => {
    const { node, machine, transport, port } = await singleNode();
    const { raft, router } = kvRouter(node);
    await using server = createRaftHttpServer({ router, transport, raft });
    await server.listen({ port });
    try {
      await expect.poll(() => node.status().role).toBe('leader');
      const client = createTRPCClient<typeof router>({
        links: [httpLink({ url: `http://127.0.0.1:${port}` })],
      });
      await expect(client.execute.mutate({ op: 'put', key: 'k', value: 'v' })).resolves.toEqual({
        op: 'put',
        value: 'v',
      });
      expect(machine.get('k')).toBe('v');
      const answer = await fetch(`http://127.0.0.1:${port}/execute`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ op: 'get', key: 'k' }),
      });
      expect(answer.headers.get('x-tsraft-leader')).toBe('b');
      // Your own responseMeta is merged with it: your headers, and the leader's unless you set it.
      await using merged = createRaftHttpServer({
        router,
        raft,
        responseMeta: () => ({ headers: { 'x-app': 'mine' }, status: 201 }),
      });
      const { port: mergedPort } = await merged.listen({ port: 0 });
      const mergedAnswer = await fetch(`http://127.0.0.1:${mergedPort}/execute`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ op: 'get', key: 'k' }),
      });
      expect(mergedAnswer.status).toBe(201);
      expect(mergedAnswer.headers.get('x-app')).toBe('mine');
      expect(mergedAnswer.headers.get('x-tsraft-leader')).toBe('b');
      await using overridden = createRaftHttpServer({
        router,
        raft,
        responseMeta: () => ({ headers: { 'x-tsraft-leader': 'elsewhere' } }),
      });
      const { port: overriddenPort } = await overridden.listen({ port: 0 });
      const overriddenAnswer = await fetch(`http://127.0.0.1:${overriddenPort}/execute`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ op: 'get', key: 'k' }),
      });
      expect(overriddenAnswer.headers.get('x-tsraft-leader')).toBe('elsewhere');
      // The peer endpoint answers on the same port (unsigned: refused, not 404).
      expect((await fetch(`http://127.0.0.1:${port}/raft/raft`, { method: 'POST' })).status).toBe(
        401,
      );
    } finally {
      await node.close();
    }
  });
});

describe("createRaftHttpServer: merging the app's responseMeta", () => {
  function echoApp() {
    const t = initTRPC.create();
    return t.router({
      echo: t.procedure.input(z.object({ s: z.string() })).mutation(({ input }) => input.s),
    });
  }
  const post = (port: number): Promise<Response> =>
    fetch(`http://127.0.0.1:${port}/echo`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ s: 'x' }),
    });

  it('answers as usual when the app responseMeta returns nothing (as tRPC itself allows)', async () => {
    await using server = createRaftHttpServer({
      router: echoApp(),
      raft: { responseMeta: () => ({ headers: { 'x-tsraft-leader': 'b' } }) },
      // A JavaScript app's function with an early return: tRPC accepts it.
      responseMeta: (() => undefined) as unknown as RaftHttpServerOptions<
        ReturnType<typeof echoApp>
      >['responseMeta'],
    });
    const { port } = await server.listen({ port: 0 });
    const answer = await post(port);
    expect(answer.status).toBe(200);
    expect(answer.headers.get('x-tsraft-leader')).toBe('b');
  });

  it('names the current leader even when the app returns the same Headers object every time', async () => {
    let leader = 'a';
    const shared = new Headers({ 'cache-control': 'no-store' });
    await using server = createRaftHttpServer({
      router: echoApp(),
      raft: { responseMeta: () => ({ headers: { 'x-tsraft-leader': leader } }) },
      responseMeta: () => ({ headers: shared }),
    });
    const { port } = await server.listen({ port: 0 });
    const first = await post(port);
    expect(first.headers.get('x-tsraft-leader')).toBe('a');
    expect(first.headers.get('cache-control')).toBe('no-store');
    leader = 'b';
    expect((await post(port)).headers.get('x-tsraft-leader')).toBe('b');
    expect(shared.has('x-tsraft-leader')).toBe(false);
  });
});

describe('errors while a node is not running', () => {
  it('a lookup with no node yet answers SERVICE_UNAVAILABLE, recovering, retryable on another node', async () => {
    const { router } = kvRouter(() => undefined);
    await using server = await serve({ router });
    const client = createTRPCClient<typeof router>({ links: [httpLink({ url: server.url })] });
    const error = await client.execute.mutate({ op: 'put', key: 'k', value: 'v' }).catch((e) => e);
    expect(error).toBeInstanceOf(TRPCClientError);
    expect(error.data.code).toBe('SERVICE_UNAVAILABLE');
    expect(raftErrorOf(error)).toEqual({
      kind: 'recovering',
      retryable: true,
      tryAnotherNode: true,
      leaderHint: null,
    });
  });

  it('a closed supervisor is not retryable on that node: the client is told to try another', async () => {
    const { node: b, transport } = await singleNode();
    await b.close();
    const supervisor = await RaftSupervisor.start<KvCommand, KvResult>({
      open: async () => ({
        id: 'b',
        config: { voters: ['b'] },
        logStore: new MemoryLogStore(),
        snapshotStore: new MemorySnapshotStore(),
        stateMachine: new KvStateMachine(),
        transport,
        tickMs: 10,
      }),
    });
    await supervisor.close();
    const { router } = kvRouter(supervisor);
    await using server = await serve({ router });
    const client = createTRPCClient<typeof router>({ links: [httpLink({ url: server.url })] });
    const error = await client.execute.mutate({ op: 'put', key: 'k', value: 'v' }).catch((e) => e);
    expect(error.data.code).toBe('SERVICE_UNAVAILABLE');
    expect(error.message).toMatch(/try another node/);
    expect(raftErrorOf(error)).toEqual({
      kind: 'closed',
      retryable: false,
      tryAnotherNode: true,
      leaderHint: null,
    });
  });

  it('the client links move from a node that is not running to one that serves, and say how long they tried', async () => {
    const { node, machine, transport, port } = await singleNode();
    const serving = kvRouter(node);
    await using b = createRaftHttpServer({ router: serving.router, transport });
    await b.listen({ port });
    const { router } = kvRouter(() => undefined);
    await using a = await serve({ router });
    try {
      await expect.poll(() => node.status().role).toBe('leader');
      const client = createTRPCClient<typeof router>({
        links: [
          raftSessionLink(),
          raftFailoverLink({
            nodes: { a: a.url, b: `http://127.0.0.1:${port}` },
            link: (url) => httpLink({ url }),
          }),
        ],
      });
      await client.execute.mutate({ op: 'append', key: 'k', value: 'x' });
      expect(machine.get('k')).toBe('x');

      const stuck = createTRPCClient<typeof router>({
        links: [
          raftSessionLink({ retryForMs: 200 }),
          raftFailoverLink({ nodes: { a: a.url }, link: (url) => httpLink({ url }) }),
        ],
      });
      const error = await stuck.execute.mutate({ op: 'put', key: 'k', value: 'v' }).catch((e) => e);
      expect(error.message).toMatch(/gave up after \d+ attempts in \d+ ms/);
    } finally {
      await node.close();
    }
  });
});

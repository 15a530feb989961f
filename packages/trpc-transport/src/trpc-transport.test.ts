import { Buffer } from 'node:buffer';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { LogEntry, Message, PeerIdentity, PeerRequest, SnapshotChunk } from '@tsraft/core';
import { pickLoopbackPort } from '@tsraft/core/testing';
import { describe, expect, it } from 'vitest';
import { randomBytes, SECRET, TestPeers } from './test-peers.test-helpers.ts';
import { createTrpcTransport, type TrpcTransportOptions } from './trpc-transport.ts';

const entry = (index: number, data: Uint8Array): LogEntry => ({
  index,
  term: 2,
  type: 'command',
  data,
});

const append = (entries: LogEntry[]): Message => ({
  type: 'append',
  from: 'n1',
  to: 'n2',
  term: 2,
  prevIndex: 0,
  prevTerm: 0,
  entries,
  commit: 0,
});

/** One message of every type but `snapshot`, which travels by itself. */
const EVERY_MESSAGE: Message[] = [
  append([]),
  {
    type: 'append-response',
    from: 'n1',
    to: 'n2',
    term: 2,
    success: false,
    index: 4,
    hint: { index: 2, term: 1 },
  },
  { type: 'append-response', from: 'n1', to: 'n2', term: 2, success: true, index: 9 },
  { type: 'vote', from: 'n1', to: 'n2', term: 3, prevote: true, lastIndex: 7, lastTerm: 2 },
  {
    type: 'vote',
    from: 'n1',
    to: 'n2',
    term: 3,
    prevote: false,
    lastIndex: 7,
    lastTerm: 2,
    transfer: true,
  },
  { type: 'vote-response', from: 'n1', to: 'n2', term: 3, prevote: false, granted: true },
  { type: 'heartbeat', from: 'n1', to: 'n2', term: 2, commit: 5, round: 1 },
  { type: 'heartbeat-response', from: 'n1', to: 'n2', term: 2, round: 1, lastIndex: 5 },
  { type: 'snapshot-response', from: 'n1', to: 'n2', term: 2, index: 10 },
  { type: 'read-index', from: 'n1', to: 'n2', term: 2, id: 'read-1' },
  { type: 'read-index-response', from: 'n1', to: 'n2', term: 2, id: 'read-1', index: null },
  { type: 'timeout-now', from: 'n1', to: 'n2', term: 2 },
];

function timeout(ms: number): { signal: AbortSignal } {
  return { signal: AbortSignal.timeout(ms) };
}

/**
 * A plain HTTP server on 127.0.0.1 that answers every request with `respond`, known as node
 * `n2`, and the transport of node `n1` that calls it; disposing closes both.
 */
async function serverAsPeer(
  respond: (req: IncomingMessage, res: ServerResponse) => void,
  options: Partial<TrpcTransportOptions> = {},
) {
  const server = createServer(respond);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const n1 = createTrpcTransport({
    nodeId: 'n1',
    peers: { n1: 'http://127.0.0.1:1', n2: url },
    secret: SECRET,
    listen: false,
    ...options,
  });
  return {
    server,
    url,
    n1,
    async [Symbol.asyncDispose](): Promise<void> {
      await n1.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

describe('TrpcTransport over real HTTP on 127.0.0.1', () => {
  it("passes the reply flag on and carries the peer's answering messages back in the response", async () => {
    const answers: Message[] = [
      { type: 'append-response', from: 'n2', to: 'n1', term: 2, success: true, index: 9 },
      { type: 'heartbeat-response', from: 'n2', to: 'n1', term: 2, round: 3, lastIndex: 9 },
    ];
    await using peers = await TestPeers.start({
      answer: async (_from, request) =>
        request.type === 'raft' && request.reply === true
          ? { type: 'raft', messages: answers }
          : { type: 'ack' },
    });
    const n1 = peers.transport('n1');
    await expect(
      n1.request('n2', { type: 'raft', messages: [append([])], reply: true }, timeout(10_000)),
    ).resolves.toEqual({ type: 'raft', messages: answers });
    await expect(
      n1.request('n2', { type: 'raft', messages: [append([])] }, timeout(10_000)),
    ).resolves.toEqual({ type: 'ack' });
    expect(peers.received.map((r) => (r.request as { reply?: boolean }).reply)).toEqual([
      true,
      undefined,
    ]);
  });

  it('carries the node identities of every request and of a raft answer, and a refusal of one, across the wire', async () => {
    const sent: PeerIdentity = {
      clusterId: 'alpha',
      incarnation: 'inc-1',
      receiverIncarnation: 'inc-2',
      members: { n2: 'inc-2', n3: 'inc-3' },
      membersAsOf: 12,
    };
    const answered: PeerIdentity = {
      clusterId: null,
      incarnation: 'inc-2',
      receiverIncarnation: null,
    };
    await using peers = await TestPeers.start({
      answer: async (_from, request) => {
        if (request.type === 'propose') {
          return { type: 'rejected', reason: 'refused', message: 'node n1 lost its durable state' };
        }
        return { type: 'raft', messages: [], identity: answered };
      },
    });
    const n1 = peers.transport('n1');
    await expect(
      n1.request(
        'n2',
        { type: 'raft', messages: [append([])], reply: true, identity: sent },
        timeout(10_000),
      ),
    ).resolves.toEqual({ type: 'raft', messages: [], identity: answered });
    await expect(
      n1.request(
        'n2',
        { type: 'propose', envelope: new Uint8Array([1]), identity: sent },
        timeout(10_000),
      ),
    ).resolves.toEqual({
      type: 'rejected',
      reason: 'refused',
      message: 'node n1 lost its durable state',
    });
    expect(peers.received.map((r) => (r.request as { identity?: PeerIdentity }).identity)).toEqual([
      sent,
      sent,
    ]);
  });

  it('refuses an answer that carries a message from another node or for another node', async () => {
    const forged: Message[][] = [
      [{ type: 'append-response', from: 'n3', to: 'n1', term: 2, success: true, index: 9 }],
      [{ type: 'append-response', from: 'n2', to: 'n3', term: 2, success: true, index: 9 }],
    ];
    let next = 0;
    await using peers = await TestPeers.start({
      answer: async () => ({ type: 'raft', messages: forged[next++] ?? [] }),
    });
    const n1 = peers.transport('n1');
    const ask = () =>
      n1.request('n2', { type: 'raft', messages: [append([])], reply: true }, timeout(10_000));
    await expect(ask()).rejects.toThrow(/answered with a message from "n3" to "n1"/);
    await expect(ask()).rejects.toThrow(/answered with a message from "n2" to "n3"/);
  });

  it('carries every Raft message type, with binary entries of any size, byte for byte', async () => {
    await using peers = await TestPeers.start();
    const large = randomBytes(3 * 1024 * 1024);
    const entries = [
      entry(1, new Uint8Array(0)),
      entry(2, randomBytes(256)),
      entry(3, large),
      // A Buffer is a Uint8Array: it arrives as a plain Uint8Array with the same bytes.
      entry(4, Buffer.from('a Buffer payload')),
      // A view into a larger buffer carries only its own bytes.
      entry(5, large.subarray(10, 20)),
    ];
    const messages = [append(entries), ...EVERY_MESSAGE];
    const response = await peers
      .transport('n1')
      .request('n2', { type: 'raft', messages }, timeout(10_000));
    expect(response).toEqual({ type: 'ack' });

    expect(peers.received).toHaveLength(1);
    const received = peers.received[0]!;
    expect(received.from).toBe('n1');
    expect(received.to).toBe('n2');
    const request = received.request as PeerRequest & { type: 'raft' };
    expect(request.type).toBe('raft');
    // Compared without the payloads first (a Buffer and a Uint8Array never compare equal).
    const withoutData = (list: readonly Message[]) =>
      list.map((m) =>
        m.type === 'append'
          ? { ...m, entries: m.entries.map((e) => ({ ...e, data: e.data.byteLength })) }
          : m,
      );
    expect(withoutData(request.messages)).toEqual(withoutData(messages));
    const got = (request.messages[0] as Message & { type: 'append' }).entries;
    for (const [i, sent] of entries.entries()) {
      const data = got[i]!.data;
      expect(data.constructor).toBe(Uint8Array);
      expect(Buffer.from(data).equals(Buffer.from(sent.data))).toBe(true);
      expect(data.buffer.byteLength).toBe(data.byteLength);
    }
  });

  it('learns peers from updatePeers: a member a membership change added is reached and accepted', async () => {
    await using peers = await TestPeers.start();
    const url3 = `http://127.0.0.1:${await pickLoopbackPort()}`;
    const n3 = createTrpcTransport({
      nodeId: 'n3',
      peers: { ...peers.urls, n3: url3 },
      secret: SECRET,
    });
    try {
      await n3.listen(async () => ({ type: 'ack' }));
      const ping = { type: 'raft', messages: [] } as const;
      await expect(peers.transport('n1').request('n3', ping, timeout(5000))).rejects.toThrow(
        /not a peer/,
      );
      await expect(n3.request('n2', ping, timeout(5000))).rejects.toThrow();
      expect(peers.received).toEqual([]);

      peers.transport('n1').updatePeers({ n3: url3, n4: 'not a URL' });
      peers.transport('n2').updatePeers({ n3: url3 });
      await expect(peers.transport('n1').request('n3', ping, timeout(5000))).resolves.toEqual({
        type: 'ack',
      });
      await expect(n3.request('n2', ping, timeout(5000))).resolves.toEqual({ type: 'ack' });
      expect(peers.received.map((r) => `${r.from}->${r.to}`)).toEqual(['n3->n2']);
      await expect(peers.transport('n1').request('n4', ping, timeout(5000))).rejects.toThrow(
        /not a peer/,
      );
    } finally {
      await n3.close();
    }
  });

  it('forwards a proposal and returns the leader answer (binary result, rejection with a hint)', async () => {
    let answer = 0;
    await using peers = await TestPeers.start({
      answer: async (_from, request) => {
        if (request.type !== 'propose') throw new Error('expected a proposal');
        answer += 1;
        return answer === 1
          ? {
              type: 'proposed',
              result: Buffer.concat([Buffer.from(request.envelope), Buffer.from('!')]),
              index: 7,
              term: 3,
            }
          : { type: 'rejected', reason: 'not-leader', leaderHint: 'n3', message: 'not the leader' };
      },
    });
    const n1 = peers.transport('n1');
    const proposed = await n1.request(
      'n2',
      { type: 'propose', envelope: Buffer.from('{"command":1}') },
      timeout(5000),
    );
    expect(proposed).toMatchObject({ type: 'proposed', index: 7, term: 3 });
    const result = (proposed as { result: Uint8Array }).result;
    expect(result.constructor).toBe(Uint8Array);
    expect(Buffer.from(result).toString()).toBe('{"command":1}!');
    const envelope = (peers.received[0]!.request as { envelope: Uint8Array }).envelope;
    expect(envelope.constructor).toBe(Uint8Array);

    await expect(
      n1.request('n2', { type: 'propose', envelope: new Uint8Array(0) }, timeout(5000)),
    ).resolves.toEqual({
      type: 'rejected',
      reason: 'not-leader',
      leaderHint: 'n3',
      message: 'not the leader',
    });
  });

  it('sends a piece of a snapshot with its metadata, and brings back the progress', async () => {
    await using peers = await TestPeers.start({
      answer: () => Promise.resolve({ type: 'snapshot-progress', received: 3 * 1024 * 1024 }),
    });
    const data = randomBytes(1024 * 1024);
    const message: Message & { type: 'snapshot' } = {
      type: 'snapshot',
      from: 'n1',
      to: 'n2',
      term: 4,
      snapshot: {
        index: 100,
        term: 3,
        config: {
          voters: ['n1', 'n2', 'n3'],
          outgoingVoters: ['n1', 'n2', 'n5'],
          learners: ['n4', 'n5'],
          autoPromote: ['n4'],
          addresses: { n4: 'http://127.0.0.1:4004' },
        },
      },
    };
    const chunk: SnapshotChunk = {
      size: 8 * 1024 * 1024,
      sha256: 'ab'.repeat(32),
      offset: 2 * 1024 * 1024,
      data,
      crc32: 0xffff_fffe,
    };
    await expect(
      peers.transport('n1').request('n2', { type: 'snapshot', message, chunk }, timeout(20_000)),
    ).resolves.toEqual({ type: 'snapshot-progress', received: 3 * 1024 * 1024 });
    const request = peers.received[0]!.request as PeerRequest & { type: 'snapshot' };
    expect(request.message).toEqual(message);
    expect({ ...request.chunk, data: undefined }).toEqual({ ...chunk, data: undefined });
    expect(Buffer.from(request.chunk.data).equals(Buffer.from(data))).toBe(true);
  });

  it('rejects at the deadline of the AbortSignal, and the peer handler sees its signal abort', async () => {
    let handlerSignal: AbortSignal | undefined;
    await using peers = await TestPeers.start({
      answer: (_from, _request, { signal }) => {
        handlerSignal = signal;
        return new Promise((resolve) => setTimeout(() => resolve({ type: 'ack' }), 5000));
      },
    });
    // The handler answers after 5 s: only the deadline can end the request before that.
    await expect(
      peers.transport('n1').request('n2', { type: 'raft', messages: [] }, timeout(100)),
    ).rejects.toMatchObject({ name: 'AbortError' });
    await expect.poll(() => handlerSignal?.aborted).toBe(true);
  });

  it('rejects on the refused connection when the peer is unreachable, not at the deadline', async () => {
    const port = await pickLoopbackPort();
    await using transport = disposable(
      createTrpcTransport({
        nodeId: 'n1',
        peers: {
          n1: `http://127.0.0.1:${await pickLoopbackPort()}`,
          n2: `http://127.0.0.1:${port}`,
        },
        secret: SECRET,
      }),
    );
    await expect(
      transport.request('n2', { type: 'raft', messages: [] }, timeout(5000)),
    ).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    await expect(
      transport.request('n9', { type: 'raft', messages: [] }, timeout(5000)),
    ).rejects.toThrow(/not a peer/);
  });

  it('keeps the connection to a peer alive across requests', async () => {
    let connections = 0;
    const peer = createTrpcTransport({
      nodeId: 'n2',
      peers: { n1: 'http://127.0.0.1:1', n2: 'http://127.0.0.1:1' },
      secret: SECRET,
      listen: false,
    });
    await peer.listen(async () => ({ type: 'ack' }));
    // Mounted into a server of the application's own, beside its other routes.
    await using app = await serverAsPeer((req, res) => {
      if (!peer.handle(req, res)) res.writeHead(200).end('the app');
    });
    const { server, url, n1 } = app;
    server.on('connection', () => {
      connections += 1;
    });
    try {
      for (let i = 0; i < 20; i += 1) {
        await n1.request('n2', { type: 'raft', messages: [] }, timeout(5000));
      }
      // undici opens a second socket when a request follows the first one at once; after that
      // every request reuses the pooled connections.
      expect(connections).toBeLessThanOrEqual(2);
      expect(await (await fetch(`${url}/elsewhere`)).text()).toBe('the app');
      // close() closes the idle connections it kept (the test's own fetch keeps one).
      const open = () =>
        new Promise<number>((resolve) => server.getConnections((_, n) => resolve(n)));
      const before = await open();
      await n1.close();
      await expect.poll(open).toBeLessThan(before);
    } finally {
      await peer.close();
    }
  });

  it('rejects a malformed answer instead of handing it to Raft', async () => {
    const answers = [
      '{"result":{"data":{"json":{"type":"granted"}}}}',
      '{"result":{"data":{"json":{"type":"proposed","result":"not binary"}}}}',
      '<html>a proxy error page</html>',
    ];
    await using peer = await serverAsPeer((req, res) => {
      req.resume();
      res.setHeader('content-type', 'application/json');
      const answer = answers.shift();
      if (answer !== undefined) {
        res.end(answer);
        return;
      }
      // Cut off mid-answer.
      res.setHeader('content-length', 100);
      res.write('{"result":');
      setTimeout(() => res.destroy(), 10);
    });
    for (let i = 0; i < 4; i += 1) {
      await expect(
        peer.n1.request('n2', { type: 'raft', messages: [] }, timeout(5000)),
      ).rejects.toThrow();
    }
  });

  it.each([
    ['node:http', undefined],
    ['a fetch of its own', (url: string, init: RequestInit) => fetch(url, init)],
  ])(
    'refuses an answer over maxResponseBytes without buffering it, sent with %s',
    async (_name, send) => {
      let sent = 0;
      await using peer = await serverAsPeer(
        (req, res) => {
          req.resume();
          res.setHeader('content-type', 'application/json');
          // An endless answer: only the client's limit ends it.
          const chunk = Buffer.alloc(64 * 1024, 'a');
          const pump = (): void => {
            while (!res.destroyed && res.write(chunk)) sent += chunk.byteLength;
            if (!res.destroyed) res.once('drain', pump);
          };
          pump();
        },
        { maxResponseBytes: 1024 * 1024, ...(send === undefined ? {} : { fetch: send }) },
      );
      await expect(
        peer.n1.request('n2', { type: 'raft', messages: [] }, timeout(5000)),
      ).rejects.toThrow(/exceeds the limit of 1048576 bytes/);
      expect(sent).toBeLessThan(64 * 1024 * 1024);
    },
  );

  it('refuses an answer over the default limit of 4 MiB', async () => {
    await using peer = await serverAsPeer((req, res) => {
      req.resume();
      res.setHeader('content-type', 'application/json');
      res.end(Buffer.alloc(5 * 1024 * 1024, 'a'));
    });
    await expect(
      peer.n1.request('n2', { type: 'raft', messages: [] }, timeout(5000)),
    ).rejects.toThrow(/exceeds the limit of 4194304 bytes/);
  });

  it("cuts off an answer that never ends at the call's deadline, and drops the connection", async () => {
    let dropped = false;
    await using peer = await serverAsPeer((req, res) => {
      req.resume();
      res.setHeader('content-type', 'application/json');
      res.write('{"result":');
      // A byte now and then, forever: under every size limit.
      const drip = setInterval(() => res.write(' '), 10);
      res.once('close', () => {
        clearInterval(drip);
        dropped = true;
      });
    });
    await expect(
      peer.n1.request('n2', { type: 'raft', messages: [] }, timeout(300)),
    ).rejects.toMatchObject({ name: 'AbortError' });
    await expect.poll(() => dropped, { timeout: 2000 }).toBe(true);
  });

  it("rejects with the peer's error status and message, and the handler is never reached", async () => {
    await using peers = await TestPeers.start();
    await using forger = disposable(
      createTrpcTransport({
        nodeId: 'n1',
        peers: peers.urls,
        secret: 'not the cluster secret at all',
        listen: false,
      }),
    );
    await expect(
      forger.request('n2', { type: 'raft', messages: [] }, timeout(5000)),
    ).rejects.toThrow(/refused this node's credentials \(401: .*signature/);
    expect(peers.received).toHaveLength(0);
  });

  it('close() aborts requests in flight and refuses new ones', async () => {
    await using peers = await TestPeers.start({
      answer: () => new Promise((resolve) => setTimeout(() => resolve({ type: 'ack' }), 2000)),
    });
    const n1 = peers.transport('n1');
    const inFlight = n1.request('n2', { type: 'raft', messages: [] }, timeout(5000));
    await new Promise((resolve) => setTimeout(resolve, 50));
    await n1.close();
    await expect(inFlight).rejects.toThrow();
    await expect(n1.request('n2', { type: 'raft', messages: [] }, timeout(5000))).rejects.toThrow(
      /closed/,
    );
  });
});

function disposable<T extends { close(): Promise<void> }>(value: T): T & AsyncDisposable {
  return Object.assign(value, { [Symbol.asyncDispose]: () => value.close() });
}

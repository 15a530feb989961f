import { type ClientRequest, request as httpRequest } from 'node:http';
import type { Message } from '@tsraft/core';
import { describe, expect, it } from 'vitest';
import { createTrpcPeerServer } from './peer-server.ts';
import { peerTransformer } from './peer-wire.ts';
import {
  freshNonce,
  SECRET,
  signedHeaders,
  signedPost,
  TestPeers,
} from './test-peers.test-helpers.ts';

/** A request body as the peer client writes it. */
const encode = (value: unknown): string => JSON.stringify(peerTransformer.serialize(value));

const heartbeat: Message = {
  type: 'heartbeat',
  from: 'n1',
  to: 'n2',
  term: 1,
  commit: 0,
  round: 0,
};
const goodBody = encode({ messages: [heartbeat] });
const PATH = '/raft/raft';

/** An error body must say what went wrong, and nothing about the server's insides. */
function expectCleanError(text: string, message: RegExp): void {
  expect(text).not.toMatch(/stack|\n\s+at |node_modules|\.ts:\d+/);
  const body = JSON.parse(text) as { error: { json: { message: string } } };
  expect(body.error.json.message).toMatch(message);
}

/**
 * A hand-made POST to `PATH` with exactly `headers`, whose body `send` writes (or not): resolves
 * with the answer's status as soon as it arrives, then drops the connection.
 */
function rawPost(
  baseUrl: string,
  headers: Record<string, string>,
  send: (req: ClientRequest) => void,
): Promise<number> {
  const url = new URL(baseUrl);
  return new Promise<number>((resolve, reject) => {
    const req = httpRequest(
      { host: url.hostname, port: url.port, path: PATH, method: 'POST', headers },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
        req.destroy();
      },
    );
    req.on('error', reject);
    send(req);
  });
}

describe('the peer server refuses bad requests over real HTTP, and keeps serving', () => {
  it('serves a correctly signed request', async () => {
    await using peers = await TestPeers.start();
    const answer = await signedPost(peers.url('n2'), PATH, goodBody);
    expect(answer.status).toBe(200);
    expect(peerTransformer.deserialize(JSON.parse(answer.text).result.data)).toEqual({
      type: 'ack',
    });
    expect(peers.received).toHaveLength(1);
  });

  it.each([
    ['an unknown node id', { from: 'mallory' }, /not a peer/],
    ['a wrong secret', { secret: 'not the cluster secret at all' }, /signature/],
    ['a request signed for another node', { to: 'n3' }, /signature/],
    ['a tampered body', { signedBody: encode({ messages: [] }) }, /signed digest/],
    ['a stale timestamp', { timestamp: Date.now() - 10 * 60_000 }, /timestamp/],
    ['no signature', { headers: { 'x-tsraft-signature': '' } }, /no node id/],
    ['a signature with stray characters', { signatureSuffix: '!!==' }, /signature/],
  ])('answers 401 to %s; the handler is never reached', async (_name, forged, message) => {
    await using peers = await TestPeers.start();
    const answer = await signedPost(peers.url('n2'), PATH, goodBody, forged);
    expect(answer.status).toBe(401);
    expectCleanError(answer.text, message);
    expect(peers.received).toHaveLength(0);
    // Still serving.
    expect((await signedPost(peers.url('n2'), PATH, goodBody)).status).toBe(200);
  });

  it.each([
    ['malformed JSON', '{"json": {"messages": [', /malformed JSON/],
    ['a wrong message type', encode({ messages: [{ ...heartbeat, type: 'coup' }] }), /type/],
    ['a missing term', encode({ messages: [{ ...heartbeat, term: undefined }] }), /term/],
    ['a negative index', encode({ messages: [{ ...heartbeat, commit: -1 }] }), /commit/],
    ['a fractional term', encode({ messages: [{ ...heartbeat, term: 1.5 }] }), /term/],
    ['messages that are not an array', encode({ messages: 'many' }), /messages/],
    [
      'entry data that is not base64',
      JSON.stringify({
        json: {
          messages: [
            {
              type: 'append',
              from: 'n1',
              to: 'n2',
              term: 1,
              prevIndex: 0,
              prevTerm: 0,
              commit: 0,
              entries: [{ index: 1, term: 1, type: 'command', data: 'plain text' }],
            },
          ],
        },
      }),
      /data/,
    ],
    [
      'a message from a forged sender',
      encode({ messages: [{ ...heartbeat, from: 'n3' }] }),
      /sender/,
    ],
    ['a message for another node', encode({ messages: [{ ...heartbeat, to: 'n3' }] }), /addressed/],
    ['a proposal without an envelope', encode({}), /envelope/],
    [
      'a proposal whose binary envelope is not base64 text',
      JSON.stringify({
        json: { envelope: 3 },
        meta: { values: { envelope: [['custom', 'b64']] } },
      }),
      /base64/,
    ],
  ])(
    'answers 400 to %s with a clear message; the handler is never reached',
    async (name, body, message) => {
      await using peers = await TestPeers.start();
      const path = name.includes('proposal') ? '/raft/propose' : PATH;
      const answer = await signedPost(peers.url('n2'), path, body);
      expect(answer.status).toBe(400);
      expectCleanError(answer.text, message);
      expect(peers.received).toHaveLength(0);
      expect((await signedPost(peers.url('n2'), PATH, goodBody)).status).toBe(200);
    },
  );

  it('answers 401 to a stale timestamp before reading the body', async () => {
    await using peers = await TestPeers.start();
    // Announces a body and never sends it: only a refusal made before reading can answer.
    const status = await rawPost(
      peers.url('n2'),
      {
        ...signedHeaders(PATH, goodBody, { timestamp: Date.now() - 10 * 60_000 }),
        'content-length': '1000',
      },
      (req) => req.flushHeaders(),
    );
    expect(status).toBe(401);
    expect(peers.received).toHaveLength(0);
  });

  it('accepts each signed request once: a replay is refused with 401, the handler reached once', async () => {
    await using peers = await TestPeers.start();
    const headers = signedHeaders(PATH, goodBody);
    const send = () =>
      fetch(`${peers.url('n2')}${PATH}`, { method: 'POST', body: goodBody, headers });
    expect((await send()).status).toBe(200);
    const replayed = await send();
    expect(replayed.status).toBe(401);
    expectCleanError(await replayed.text(), /replayed request is refused/);
    expect(peers.received).toHaveLength(1);
  });

  it('accepts requests of one stream out of order, each once', async () => {
    await using peers = await TestPeers.start();
    const stream = freshNonce().split('.')[0];
    const post = (counter: number) =>
      signedPost(peers.url('n2'), PATH, goodBody, { nonce: `${stream}.${counter}` });
    expect((await post(3)).status).toBe(200);
    expect((await post(1)).status).toBe(200); // overtaken by 3 on the way
    expect((await post(2)).status).toBe(200);
    expect((await post(2)).status).toBe(401);
    expect((await post(3)).status).toBe(401);
    expect((await post(4)).status).toBe(200);
    expect(peers.received).toHaveLength(4);
    const malformed = await signedPost(peers.url('n2'), PATH, goodBody, { nonce: 'not-a-nonce' });
    expect(malformed.status).toBe(401);
    expectCleanError(malformed.text, /nonce is malformed/);
  });

  it('answers 401 to a wrong signature before reading any of a 60 MiB body', async () => {
    await using peers = await TestPeers.start();
    // Announces 60 MiB and sends none of it: only a refusal made before reading can answer.
    const status = await rawPost(
      peers.url('n2'),
      {
        ...signedHeaders(PATH, goodBody, { secret: 'not the cluster secret at all' }),
        'content-length': String(60 * 1024 * 1024),
      },
      (req) => req.flushHeaders(),
    );
    expect(status).toBe(401);
    expect(peers.received).toHaveLength(0);
  });

  it('lists at most ten validation issues in a 400 answer', async () => {
    await using peers = await TestPeers.start();
    const bad = Array.from({ length: 5000 }, () => ({ ...heartbeat, term: -1 }));
    const answer = await signedPost(peers.url('n2'), PATH, encode({ messages: bad }));
    expect(answer.status).toBe(400);
    expectCleanError(answer.text, /and 4990 more issues/);
    expect(answer.text.length).toBeLessThan(10_000);
  });

  it('answers 413 to a body over the limit, announced or not, and never buffers it', async () => {
    await using peers = await TestPeers.start({ maxBodyBytes: 4096 });
    const big = encode({ messages: [heartbeat], padding: 'x'.repeat(8192) });
    const announced = await signedPost(peers.url('n2'), PATH, big);
    expect(announced.status).toBe(413);
    expectCleanError(announced.text, /exceeds the limit of 4096 bytes/);

    // Chunked, without Content-Length: the server counts bytes as they arrive.
    const status = await rawPost(peers.url('n2'), signedHeaders(PATH, 'y'.repeat(8192)), (req) => {
      for (let i = 0; i < 4; i += 1) req.write('y'.repeat(2048));
      req.end();
    });
    expect(status).toBe(413);
    expect(peers.received).toHaveLength(0);
    expect((await signedPost(peers.url('n2'), PATH, goodBody)).status).toBe(200);
  });

  it('answers 404 outside the procedures, 405 to other methods than POST, and a handler error without its stack', async () => {
    await using peers = await TestPeers.start({
      answer: () => {
        throw new Error('the handler broke');
      },
    });
    expect((await signedPost(peers.url('n2'), '/raft/nope', goodBody)).status).toBe(404);
    expect((await signedPost(peers.url('n2'), '/other', goodBody)).status).toBe(404);
    expect((await signedPost(peers.url('n2'), '/raft?raft', goodBody)).status).toBe(404);
    const put = await signedPost(peers.url('n2'), PATH, goodBody, { method: 'PUT' });
    expect(put.status).toBe(405);
    expectCleanError(put.text, /POST/);
    expect(peers.received).toHaveLength(0);
    expect((await signedPost(peers.url('n2'), `${PATH}?unused=1`, goodBody)).status).toBe(500);
    const failed = await signedPost(peers.url('n2'), PATH, goodBody);
    expect(failed.status).toBe(500);
    expectCleanError(failed.text, /the handler broke/);
  });

  it('mounted into another server, declines foreign paths and answers 503 until it has a handler', async () => {
    const server = createTrpcPeerServer({
      nodeId: 'n2',
      peers: { n1: '', n2: '' },
      secret: SECRET,
    });
    const address = await server.listen({ port: 0 });
    try {
      const answer = await signedPost(`http://127.0.0.1:${address.port}`, PATH, goodBody);
      expect(answer.status).toBe(503);
      expectCleanError(answer.text, /not serving/);
      const seen: string[] = [];
      server.setHandler(async (from) => {
        seen.push(from);
        return { type: 'ack' };
      });
      expect((await signedPost(`http://127.0.0.1:${address.port}`, PATH, goodBody)).status).toBe(
        200,
      );
      expect(seen).toEqual(['n1']);
      const declined = server.handle(
        { url: '/raftery' } as Parameters<typeof server.handle>[0],
        {} as Parameters<typeof server.handle>[1],
      );
      expect(declined).toBe(false);
    } finally {
      await server.close();
    }
  });
});

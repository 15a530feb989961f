import { Buffer } from 'node:buffer';
import { readFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import type { NodeId, PeerRequest } from '@tsraft/core';
import { pickLoopbackPort } from '@tsraft/core/testing';
import { describe, expect, it } from 'vitest';
import type { PeerFetch } from './peer-client.ts';
import { SECRET } from './test-peers.test-helpers.ts';
import { createTrpcTransport } from './trpc-transport.ts';

const cert = readFileSync(new URL('./fixtures/tls/cert.pem', import.meta.url));
const key = readFileSync(new URL('./fixtures/tls/key.pem', import.meta.url));

/** A `fetch` over `node:https` that trusts exactly the test certificate (a private CA). */
const trustingFetch: PeerFetch = (url, init) =>
  new Promise((resolve, reject) => {
    const request = httpsRequest(
      url,
      {
        method: init.method ?? 'GET',
        headers: init.headers as Record<string, string>,
        ca: cert,
        ...(init.signal === null || init.signal === undefined ? {} : { signal: init.signal }),
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => {
          const headers = new Headers();
          for (const [name, value] of Object.entries(response.headers)) {
            if (typeof value === 'string') headers.set(name, value);
          }
          resolve(
            new Response(Buffer.concat(chunks), { status: response.statusCode ?? 500, headers }),
          );
        });
        response.on('error', reject);
      },
    );
    request.on('error', reject);
    request.end(typeof init.body === 'string' ? init.body : undefined);
  });

const ping: PeerRequest = { type: 'raft', messages: [] };

describe('the peer transport over HTTPS (the tls option)', () => {
  it('carries requests between nodes over TLS, and a client that does not trust the certificate is refused', async () => {
    const peers: Record<NodeId, string> = {
      n1: `https://127.0.0.1:${await pickLoopbackPort()}`,
      n2: `https://127.0.0.1:${await pickLoopbackPort()}`,
    };
    const received: NodeId[] = [];
    const open = (id: NodeId, fetch?: PeerFetch) =>
      createTrpcTransport({
        nodeId: id,
        peers,
        secret: SECRET,
        tls: { cert, key },
        ...(fetch === undefined ? {} : { fetch }),
      });
    const n1 = open('n1', trustingFetch);
    const n2 = open('n2', trustingFetch);
    const stranger = open('n1');
    try {
      await n1.listen(async () => ({ type: 'ack' }));
      await n2.listen(async (from) => {
        received.push(from);
        return { type: 'ack' };
      });

      await expect(n1.request('n2', ping, { signal: AbortSignal.timeout(5000) })).resolves.toEqual({
        type: 'ack',
      });
      expect(received).toEqual(['n1']);

      // The global fetch does not trust the self-signed certificate: the TLS handshake fails.
      await expect(
        stranger.request('n2', ping, { signal: AbortSignal.timeout(5000) }),
      ).rejects.toThrow();
      // Plain HTTP to the HTTPS port gets no answer a client could parse.
      const plain = await fetch(peers.n2!.replace('https:', 'http:'), {
        signal: AbortSignal.timeout(5000),
      }).then(
        (response) => response.status,
        () => 'refused',
      );
      expect(plain).not.toBe(200);
      expect(received).toEqual(['n1']);
    } finally {
      await Promise.all([n1.close(), n2.close(), stranger.close()]);
    }
  });
});

import { Buffer } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import { Agent as HttpAgent, request as httpRequest, type RequestOptions } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { NodeId, PeerRequest, PeerResponse } from '@tsraft/core';
import { PeerAuthenticationError } from '@tsraft/core';
import { peerResponse } from './peer-schemas.ts';
import { bodyDigest, type PeerSignature, SIGNATURE_HEADERS } from './peer-signature.ts';
import { peerTransformer } from './peer-wire.ts';
import { encodeSnapshotPiece, SNAPSHOT_PIECE_CONTENT_TYPE } from './snapshot-piece-wire.ts';

/** The `fetch` the peer client sends with; the global one by default. */
export type PeerFetch = (url: string, init: RequestInit) => Promise<Response>;

/** Options of {@link PeerClient}. */
export interface PeerClientOptions {
  /** This node: the sender every request is signed as. */
  readonly from: NodeId;
  /** The peer. */
  readonly to: NodeId;
  /** The peer's base URL, e.g. `http://10.0.0.2:4100`. */
  readonly baseUrl: string;
  /** Path prefix of the peer procedures on that server, e.g. `/raft`. */
  readonly basePath: string;
  readonly signature: PeerSignature;
  /**
   * Sends through this `fetch` when given. Default: `node:http` (or `node:https`) with a
   * keep-alive agent of this client's own: less than half the CPU of `fetch` per request on
   * loopback (see the package's benchmark).
   */
  readonly fetch?: PeerFetch;
  /** Answers longer than this many bytes are refused (the call rejects), never buffered past it. */
  readonly maxResponseBytes: number;
}

/** One POST of a body (JSON text, or binary parts sent one after the other): the answer's status and body text. */
type Send = (
  path: string,
  headers: Record<string, string>,
  body: string | readonly Uint8Array[],
  signal: AbortSignal,
) => Promise<{ status: number; text: string }>;

/**
 * The client of one peer. Each call is one signed HTTP request of tRPC's wire protocol for a
 * mutation (`POST <basePath>/<procedure>`, the input as the body, the answer as
 * `{ result: { data } }` or `{ error }`), in the package's wire encoding (`peer-wire.ts`): what
 * tRPC's untyped client with `httpLink` sends, without its link chain, observables and
 * per-request abort controllers. No batching, no retries. An answer that is not a well-formed
 * {@link PeerResponse} rejects.
 */
export class PeerClient {
  readonly #from: NodeId;
  readonly #to: NodeId;
  readonly #signature: PeerSignature;
  readonly #send: Send;
  /** The keep-alive agent of the default sender; `undefined` with a `fetch` of the caller's. */
  readonly #agent: HttpAgent | undefined;
  /** The path of the procedures, e.g. `/raft`, without a trailing slash. */
  readonly #path: string;
  /** This client's nonce stream (128 random bits) and its last counter: one nonce per request. */
  readonly #stream = randomBytes(16).toString('base64url');
  #counter = 0;

  constructor(options: PeerClientOptions) {
    const base = new URL(options.basePath, new URL(options.baseUrl));
    this.#path = base.pathname.replace(/\/+$/, '');
    this.#from = options.from;
    this.#to = options.to;
    this.#signature = options.signature;
    if (options.fetch === undefined) {
      this.#agent =
        base.protocol === 'https:'
          ? new HttpsAgent({ keepAlive: true })
          : new HttpAgent({ keepAlive: true });
      this.#send = nodeHttpSend(base, this.#agent, options.maxResponseBytes);
    } else {
      this.#agent = undefined;
      this.#send = fetchSend(base.origin, options.fetch, options.maxResponseBytes);
    }
  }

  /** Closes the idle connections of the default sender (requests in flight abort by signal). */
  close(): void {
    this.#agent?.destroy();
  }

  /**
   * Sends `request` once. Rejects when the peer is unreachable, when `signal` aborts, when the
   * peer answers with an error status (401: `PeerAuthenticationError`), or when its answer is
   * malformed or longer than the limit.
   */
  async request(request: PeerRequest, signal: AbortSignal): Promise<PeerResponse> {
    // The procedure is the request's type; the input is the rest.
    const { type, ...input } = request;
    const path = `${this.#path}/${type}`;
    // A snapshot piece travels binary (`snapshot-piece-wire.ts`); everything else as JSON.
    const body =
      request.type === 'snapshot'
        ? encodeSnapshotPiece(request)
        : JSON.stringify(peerTransformer.serialize(input));
    const parts = {
      method: 'POST',
      path,
      from: this.#from,
      to: this.#to,
      timestamp: String(Date.now()),
      nonce: `${this.#stream}.${++this.#counter}`,
      bodyDigest: bodyDigest(body),
    };
    const headers = {
      'content-type': typeof body === 'string' ? 'application/json' : SNAPSHOT_PIECE_CONTENT_TYPE,
      [SIGNATURE_HEADERS.from]: this.#from,
      [SIGNATURE_HEADERS.timestamp]: parts.timestamp,
      [SIGNATURE_HEADERS.nonce]: parts.nonce,
      [SIGNATURE_HEADERS.bodyDigest]: parts.bodyDigest,
      [SIGNATURE_HEADERS.signature]: this.#signature.sign(parts),
    };
    const { status, text } = await this.#send(path, headers, body, signal);
    let answer: { result?: { data?: unknown }; error?: unknown };
    try {
      answer = JSON.parse(text);
    } catch {
      throw new Error(`peer "${this.#to}" answered ${status} with a body that is not JSON`);
    }
    if (status !== 200 || answer?.result === undefined) {
      const error = peerTransformer.deserialize(answer?.error) as { message?: unknown } | undefined;
      const message = typeof error?.message === 'string' ? error.message : 'no message';
      if (status === 401) {
        throw new PeerAuthenticationError(
          `peer "${this.#to}" refused this node's credentials (401: ${message})`,
        );
      }
      throw new Error(`peer "${this.#to}" answered ${status}: ${message}`);
    }
    const response = peerResponse.parse(peerTransformer.deserialize(answer.result.data));
    if (response.type === 'raft') {
      for (const message of response.messages) {
        if (message.from !== this.#to || message.to !== this.#from) {
          throw new Error(
            `peer "${this.#to}" answered with a message from "${message.from}" to "${message.to}" (${message.type})`,
          );
        }
      }
    }
    return response;
  }
}

/** Sends with `node:http(s)` through `agent`, to `base`'s host and port. */
function nodeHttpSend(base: URL, agent: HttpAgent, maxResponseBytes: number): Send {
  const request = base.protocol === 'https:' ? httpsRequest : httpRequest;
  const target: RequestOptions = {
    protocol: base.protocol,
    hostname: base.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: base.port,
    method: 'POST',
    agent,
  };
  return (path, headers, body, signal) =>
    new Promise((resolve, reject) => {
      const req = request(
        {
          ...target,
          path,
          signal,
          headers: { ...headers, 'content-length': byteLength(body) },
        },
        (res) => {
          const chunks: Buffer[] = [];
          let bytes = 0;
          res.on('data', (chunk: Buffer) => {
            bytes += chunk.byteLength;
            if (bytes > maxResponseBytes) {
              const error = tooLong(maxResponseBytes);
              reject(error);
              req.destroy(error);
              return;
            }
            chunks.push(chunk);
          });
          res.on('end', () => {
            if (bytes > maxResponseBytes) return;
            resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') });
          });
          res.on('error', reject);
          res.on('close', () => {
            if (!res.complete) reject(new Error('the connection closed before the answer ended'));
          });
        },
      );
      req.on('error', reject);
      if (typeof body === 'string') {
        req.end(body);
      } else {
        for (const part of body) req.write(part);
        req.end();
      }
    });
}

/** Sends with a `fetch` of the caller's, to `origin`. */
function fetchSend(origin: string, send: PeerFetch, maxResponseBytes: number): Send {
  return async (path, headers, body, signal) => {
    const response = await send(origin + path, {
      method: 'POST',
      body: typeof body === 'string' ? body : Buffer.concat(body),
      signal,
      headers,
    });
    if (response.body === null) return { status: response.status, text: '' };
    const reader = response.body.getReader();
    const chunks: Uint8Array[] = [];
    let bytes = 0;
    for (let read = await reader.read(); !read.done; read = await reader.read()) {
      bytes += read.value.byteLength;
      if (bytes > maxResponseBytes) {
        const error = tooLong(maxResponseBytes);
        await reader.cancel(error);
        throw error;
      }
      chunks.push(read.value);
    }
    return { status: response.status, text: Buffer.concat(chunks).toString('utf8') };
  };
}

function byteLength(body: string | readonly Uint8Array[]): number {
  if (typeof body === 'string') return Buffer.byteLength(body);
  let bytes = 0;
  for (const part of body) bytes += part.byteLength;
  return bytes;
}

function tooLong(maxResponseBytes: number): Error {
  return new Error(`the answer exceeds the limit of ${maxResponseBytes} bytes`);
}

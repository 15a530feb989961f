import type { NodeId, PeerRequest, PeerResponse } from '@tsraft/core';
import { peerResponse } from './peer-schemas.ts';
import { type PeerSignature, SIGNATURE_HEADERS } from './peer-signature.ts';
import { peerTransformer } from './peer-wire.ts';

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
  /** Default: the global `fetch` (undici, keep-alive connections). */
  readonly fetch?: PeerFetch;
}

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
  readonly #fetch: PeerFetch;
  /** The origin, e.g. `http://10.0.0.2:4100`. */
  readonly #origin: string;
  /** The path of the procedures, e.g. `/raft`, without a trailing slash. */
  readonly #path: string;

  constructor(options: PeerClientOptions) {
    const base = new URL(options.basePath, new URL(options.baseUrl));
    this.#origin = base.origin;
    this.#path = base.pathname.replace(/\/+$/, '');
    this.#from = options.from;
    this.#to = options.to;
    this.#signature = options.signature;
    this.#fetch = options.fetch ?? ((input, init) => fetch(input, init));
  }

  /**
   * Sends `request` once. Rejects when the peer is unreachable, when `signal` aborts, when the
   * peer answers with an error status, or when its answer is malformed.
   */
  async request(request: PeerRequest, signal: AbortSignal): Promise<PeerResponse> {
    // The procedure is the request's type; the input is the rest.
    const { type, ...input } = request;
    const path = `${this.#path}/${type}`;
    const body = JSON.stringify(peerTransformer.serialize(input));
    const timestamp = String(Date.now());
    const parts = { method: 'POST', path, from: this.#from, to: this.#to, timestamp };
    const response = await this.#fetch(this.#origin + path, {
      method: 'POST',
      body,
      signal,
      headers: {
        'content-type': 'application/json',
        [SIGNATURE_HEADERS.from]: this.#from,
        [SIGNATURE_HEADERS.timestamp]: timestamp,
        [SIGNATURE_HEADERS.signature]: this.#signature.sign(parts, body),
      },
    });
    const text = await response.text();
    let answer: { result?: { data?: unknown }; error?: unknown };
    try {
      answer = JSON.parse(text);
    } catch {
      throw new Error(
        `peer "${this.#to}" answered ${response.status} with a body that is not JSON`,
      );
    }
    if (!response.ok || answer?.result === undefined) {
      const error = peerTransformer.deserialize(answer?.error) as { message?: unknown } | undefined;
      const message = typeof error?.message === 'string' ? error.message : 'no message';
      throw new Error(`peer "${this.#to}" answered ${response.status}: ${message}`);
    }
    return peerResponse.parse(peerTransformer.deserialize(answer.result.data));
  }
}

import { createTRPCUntypedClient, httpLink, type TRPCUntypedClient } from '@trpc/client';
import type { AnyTRPCRouter } from '@trpc/server';
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
 * The client of one peer: tRPC's untyped client over `httpLink` (one HTTP request per call, no
 * batching, no retries) with the package's wire encoding (`peer-wire.ts`); every request is signed. An
 * answer that is not a well-formed {@link PeerResponse} rejects.
 */
export class PeerClient {
  readonly #client: TRPCUntypedClient<AnyTRPCRouter>;

  constructor(options: PeerClientOptions) {
    const base = new URL(options.basePath, new URL(options.baseUrl));
    const origin = base.origin;
    const url = base.href;
    const send: PeerFetch = options.fetch ?? ((input, init) => fetch(input, init));
    const { from, to, signature } = options;
    const signedFetch = (input: string, init: RequestInit): Promise<Response> => {
      const timestamp = String(Date.now());
      const method = init.method ?? 'GET';
      const body = typeof init.body === 'string' ? init.body : '';
      const path = input.startsWith(origin) ? input.slice(origin.length) : input;
      const signed = signature.sign({ method, path, from, to, timestamp }, body);
      return send(input, {
        ...init,
        headers: {
          ...(init.headers as Record<string, string>),
          [SIGNATURE_HEADERS.from]: from,
          [SIGNATURE_HEADERS.timestamp]: timestamp,
          [SIGNATURE_HEADERS.signature]: signed,
        },
      });
    };
    this.#client = createTRPCUntypedClient<AnyTRPCRouter>({
      links: [
        httpLink({
          url,
          transformer: peerTransformer,
          fetch: signedFetch as typeof fetch,
        }),
      ],
    });
  }

  /**
   * Sends `request` once. Rejects when the peer is unreachable, when `signal` aborts, when the
   * peer answers with an error status, or when its answer is malformed.
   */
  async request(request: PeerRequest, signal: AbortSignal): Promise<PeerResponse> {
    // The procedure is the request's type; the envelope schemas drop the `type` field itself.
    const answer = await this.#client.mutation(request.type, request, { signal });
    return peerResponse.parse(answer);
  }
}

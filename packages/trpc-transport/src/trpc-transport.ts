import type { NodeId, PeerHandler, PeerRequest, PeerResponse, Transport } from '@tsraft/core';
import { PeerClient, type PeerFetch } from './peer-client.ts';
import {
  DEFAULT_BASE_PATH,
  type ListenAddress,
  TrpcPeerServer,
  type TrpcPeerServerOptions,
} from './peer-server.ts';
import { PeerSignature } from './peer-signature.ts';

/** Options of {@link createTrpcTransport}. */
export interface TrpcTransportOptions extends Omit<TrpcPeerServerOptions, 'handler'> {
  /**
   * Every node of the cluster, this one included: id to base URL (`http://host:port`, or
   * `https://` with `tls`). Requests go to `${url}${basePath}/<procedure>`.
   */
  readonly peers: Readonly<Record<NodeId, string>>;
  /**
   * Where `listen` starts this node's server. Default: the host and port of this node's own URL
   * in `peers`. `false`: start no server; mount {@link TrpcTransport.handle} into yours.
   */
  readonly listen?: ListenAddress | false;
  /**
   * The `fetch` requests go through, e.g. one with an undici `Agent` that trusts a private CA.
   * Default: `node:http(s)` with a keep-alive agent per peer (Node's default CAs for `https`),
   * closed by {@link TrpcTransport.close}.
   */
  readonly fetch?: PeerFetch;
  /**
   * Largest answer accepted from a peer, in bytes: a longer one fails the call (the peer is then
   * reported unreachable) and is never buffered past the limit. The largest answer Raft expects
   * is the result of a forwarded proposal; raise the limit if your commands return more.
   * Default {@link DEFAULT_MAX_RESPONSE_BYTES} (4 MiB). An answer that never ends is cut off by the
   * call's deadline (the node's `requestTimeoutMs`, `forwardTimeoutMs`, `snapshotTimeoutMs`).
   */
  readonly maxResponseBytes?: number;
}

/** Default limit of a peer's answer: 4 MiB. */
export const DEFAULT_MAX_RESPONSE_BYTES: number = 4 * 1024 * 1024;

/**
 * A {@link Transport} over HTTP(S) with tRPC: one signed tRPC mutation per {@link PeerRequest},
 * a client per peer, and a server that authenticates, bounds and validates what arrives.
 *
 * `request` makes one attempt, never retries, and rejects when the peer is unreachable, the
 * signal aborts, or the answer is an error or malformed: the node runtime then reports the peer
 * unreachable, and Raft retries on its own schedule.
 */
export class TrpcTransport implements Transport {
  readonly #nodeId: NodeId;
  readonly #server: TrpcPeerServer;
  readonly #clients = new Map<NodeId, PeerClient>();
  readonly #listenAt: ListenAddress | false;
  readonly #lifetime = new AbortController();
  readonly #signature: PeerSignature;
  readonly #basePath: string;
  readonly #maxResponseBytes: number;
  readonly #fetch: PeerFetch | undefined;
  /** Base URL of each peer a client was made for. */
  readonly #urls = new Map<NodeId, string>();

  constructor(options: TrpcTransportOptions) {
    const self = options.peers[options.nodeId];
    if (self === undefined) {
      throw new TypeError(`peers must list this node "${options.nodeId}" with its own URL`);
    }
    this.#nodeId = options.nodeId;
    this.#server = new TrpcPeerServer(options);
    this.#listenAt = options.listen ?? addressOf(self);
    this.#signature = new PeerSignature(options.secret);
    this.#basePath = options.basePath ?? DEFAULT_BASE_PATH;
    this.#maxResponseBytes = options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
    if (!(this.#maxResponseBytes > 0)) throw new TypeError('maxResponseBytes must be positive');
    this.#fetch = options.fetch;
    this.updatePeers(options.peers);
  }

  /**
   * Adds peers, or moves them to a new URL: the node runtime calls it with the addresses its
   * configuration carries, so that a member added by a membership change (`addLearner(id,
   * { url })`) is reached, and its requests accepted, by every member. Peers are never dropped:
   * a removed member's requests still arrive, and Raft ignores them. An address that is not a
   * URL is skipped: the member stays unreachable from here.
   */
  updatePeers(addresses: Readonly<Record<NodeId, string>>): void {
    for (const [id, baseUrl] of Object.entries(addresses)) {
      if (id === this.#nodeId || this.#urls.get(id) === baseUrl || !URL.canParse(baseUrl)) {
        continue;
      }
      this.#clients.get(id)?.close();
      this.#urls.set(id, baseUrl);
      this.#clients.set(
        id,
        new PeerClient({
          from: this.#nodeId,
          to: id,
          baseUrl,
          basePath: this.#basePath,
          signature: this.#signature,
          maxResponseBytes: this.#maxResponseBytes,
          ...(this.#fetch === undefined ? {} : { fetch: this.#fetch }),
        }),
      );
    }
    this.#server.addPeers(Object.keys(addresses));
  }

  /** Sends `request` to `to` once; see the class comment for when it rejects. */
  async request(
    to: NodeId,
    request: PeerRequest,
    options: { signal: AbortSignal },
  ): Promise<PeerResponse> {
    options.signal.throwIfAborted();
    this.#lifetime.signal.throwIfAborted();
    const client = this.#clients.get(to);
    if (client === undefined) throw new Error(`"${to}" is not a peer of node "${this.#nodeId}"`);
    return client.request(request, AbortSignal.any([options.signal, this.#lifetime.signal]));
  }

  /**
   * Installs the handler of verified requests and, unless `listen: false`, starts this node's
   * server. Resolves once it accepts connections.
   */
  async listen(handler: PeerHandler): Promise<void> {
    this.#server.setHandler(handler);
    if (this.#listenAt !== false && this.#server.address() === undefined) {
      await this.#server.listen(this.#listenAt);
    }
  }

  /**
   * The request listener to mount into an HTTP(S) server of your own (with `listen: false`):
   * serves the peer procedures under the base path and returns true, or returns false.
   */
  get handle(): TrpcPeerServer['handle'] {
    return this.#server.handle;
  }

  /** The address this node's own server is bound to, while it listens. */
  address(): { host: string; port: number } | undefined {
    return this.#server.address();
  }

  /** Aborts requests in flight, refuses new ones, and closes the server. Idempotent. */
  async close(): Promise<void> {
    this.#lifetime.abort(new Error(`the transport of node "${this.#nodeId}" is closed`));
    for (const client of this.#clients.values()) client.close();
    await this.#server.close();
  }
}

/** Creates a {@link TrpcTransport}: the tRPC peer transport of node `nodeId`. */
export function createTrpcTransport(options: TrpcTransportOptions): TrpcTransport {
  return new TrpcTransport(options);
}

function addressOf(baseUrl: string): ListenAddress {
  const url = new URL(baseUrl);
  const port = url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port);
  return { host: url.hostname.replace(/^\[(.*)\]$/, '$1'), port };
}

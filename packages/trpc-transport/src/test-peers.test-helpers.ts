import type { NodeId, PeerHandler, PeerRequest } from '@tsraft/core';
import { pickLoopbackPort } from '@tsraft/core/testing';
import { bodyDigest, PeerSignature, SIGNATURE_HEADERS } from './peer-signature.ts';
import { createTrpcTransport, type TrpcTransport } from './trpc-transport.ts';

export const SECRET = 'a cluster secret for the tests';

export interface ReceivedRequest {
  readonly to: NodeId;
  readonly from: NodeId;
  readonly request: PeerRequest;
}

/** Nodes with a real {@link TrpcTransport} each, listening on 127.0.0.1; disposes them all. */
export class TestPeers {
  readonly urls: Record<NodeId, string>;
  readonly transports: Map<NodeId, TrpcTransport> = new Map();
  readonly received: ReceivedRequest[] = [];

  private constructor(urls: Record<NodeId, string>) {
    this.urls = urls;
  }

  /**
   * Starts `ids`; every node records what it receives and answers with `answer` (default: ack).
   */
  static async start(
    options: { ids?: NodeId[]; answer?: PeerHandler; maxBodyBytes?: number } = {},
  ): Promise<TestPeers> {
    const ids = options.ids ?? ['n1', 'n2'];
    const urls: Record<NodeId, string> = {};
    for (const id of ids) urls[id] = `http://127.0.0.1:${await pickLoopbackPort()}`;
    const peers = new TestPeers(urls);
    for (const id of ids) {
      const transport = createTrpcTransport({
        nodeId: id,
        peers: urls,
        secret: SECRET,
        ...(options.maxBodyBytes === undefined ? {} : { maxBodyBytes: options.maxBodyBytes }),
      });
      peers.transports.set(id, transport);
      await transport.listen(async (from, request, handlerOptions) => {
        peers.received.push({ to: id, from, request });
        return options.answer?.(from, request, handlerOptions) ?? { type: 'ack' };
      });
    }
    return peers;
  }

  transport(id: NodeId): TrpcTransport {
    const transport = this.transports.get(id);
    if (transport === undefined) throw new Error(`no node ${id}`);
    return transport;
  }

  url(id: NodeId): string {
    const url = this.urls[id];
    if (url === undefined) throw new Error(`no node ${id}`);
    return url;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await Promise.all([...this.transports.values()].map((transport) => transport.close()));
  }
}

/** What {@link signedPost} may forge. */
export interface SignedPostOptions {
  readonly from?: NodeId;
  readonly to?: NodeId;
  readonly secret?: string;
  readonly timestamp?: number;
  /** Default: a new one per call. */
  readonly nonce?: string;
  /** Sign this body but send `body`. */
  readonly signedBody?: string | Uint8Array;
  readonly headers?: Record<string, string>;
  /** Sign and send with this method instead of POST. */
  readonly method?: string;
  /** Appended to the correct signature. */
  readonly signatureSuffix?: string;
}

/** A new nonce of a stream of its own. */
export function freshNonce(): string {
  return `${Buffer.from(randomBytes(16)).toString('base64url')}.1`;
}

/** The headers of a request as a peer signs it (or mis-signs it, as `options` say). */
export function signedHeaders(
  path: string,
  body: string | Uint8Array,
  options: SignedPostOptions = {},
): Record<string, string> {
  const from = options.from ?? 'n1';
  const method = options.method ?? 'POST';
  const parts = {
    method,
    path,
    from,
    to: options.to ?? 'n2',
    timestamp: String(options.timestamp ?? Date.now()),
    nonce: options.nonce ?? freshNonce(),
    bodyDigest: bodyDigest(options.signedBody ?? body),
  };
  const signature = new PeerSignature(options.secret ?? SECRET).sign(parts);
  return {
    'content-type': 'application/json',
    [SIGNATURE_HEADERS.from]: from,
    [SIGNATURE_HEADERS.timestamp]: parts.timestamp,
    [SIGNATURE_HEADERS.nonce]: parts.nonce,
    [SIGNATURE_HEADERS.bodyDigest]: parts.bodyDigest,
    [SIGNATURE_HEADERS.signature]: signature + (options.signatureSuffix ?? ''),
    ...options.headers,
  };
}

/** POSTs `body` as a peer would, signed (or mis-signed, as `options` say), with plain fetch. */
export async function signedPost(
  baseUrl: string,
  path: string,
  body: string | Uint8Array,
  options: SignedPostOptions = {},
): Promise<{ status: number; text: string }> {
  const response = await fetch(`${baseUrl}${path}`, {
    method: options.method ?? 'POST',
    body,
    headers: signedHeaders(path, body, options),
  });
  return { status: response.status, text: await response.text() };
}

/** Random bytes of `length`. */
export function randomBytes(length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let offset = 0; offset < length; offset += 65_536) {
    crypto.getRandomValues(bytes.subarray(offset, Math.min(length, offset + 65_536)));
  }
  return bytes;
}

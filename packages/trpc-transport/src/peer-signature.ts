import { Buffer } from 'node:buffer';
import { createHmac, createSecretKey, type KeyObject, timingSafeEqual } from 'node:crypto';
import type { NodeId } from '@tsraft/core';

/** An HMAC-SHA256 digest (32 bytes) in unpadded base64url: 43 characters. */
const CANONICAL_SIGNATURE = /^[A-Za-z0-9_-]{43}$/;

/** The headers that authenticate a request between peers. */
export const SIGNATURE_HEADERS = {
  /** The sending node's id. */
  from: 'x-tsraft-from',
  /** Milliseconds since the epoch when the request was signed. */
  timestamp: 'x-tsraft-timestamp',
  /** HMAC-SHA256 of the request, base64url. */
  signature: 'x-tsraft-signature',
} as const;

/** Shortest cluster secret accepted, in bytes. */
const MIN_SECRET_BYTES = 16;

/** What a signature covers, besides the body. */
export interface SignedParts {
  readonly method: string;
  /** The request's path and query, as sent on the request line. */
  readonly path: string;
  readonly from: NodeId;
  /** The receiving node: a request signed for one node is refused by every other. */
  readonly to: NodeId;
  readonly timestamp: string;
}

/**
 * Signs and verifies requests between the nodes of one cluster with HMAC-SHA256 keyed by the
 * shared cluster secret, over the method, path, sender, receiver, timestamp and body. The secret
 * never travels; a changed byte anywhere invalidates the signature.
 */
export class PeerSignature {
  readonly #key: KeyObject;

  /** Throws a `TypeError` when `secret` is shorter than 16 bytes. */
  constructor(secret: string | Uint8Array) {
    const bytes = typeof secret === 'string' ? Buffer.from(secret, 'utf8') : secret;
    if (bytes.byteLength < MIN_SECRET_BYTES) {
      throw new TypeError(`the cluster secret must be at least ${MIN_SECRET_BYTES} bytes long`);
    }
    this.#key = createSecretKey(bytes);
  }

  /** The signature of a request, base64url. */
  sign(parts: SignedParts, body: string | Uint8Array): string {
    return this.#digest(parts, body).toString('base64url');
  }

  /** Whether `signature` is the request's signature; compares in constant time. */
  verify(parts: SignedParts, body: Uint8Array, signature: string): boolean {
    // Only the one canonical spelling: base64url decoding would skip stray characters.
    if (!CANONICAL_SIGNATURE.test(signature)) return false;
    const expected = this.#digest(parts, body);
    const given = Buffer.from(signature, 'base64url');
    return given.byteLength === expected.byteLength && timingSafeEqual(given, expected);
  }

  #digest(parts: SignedParts, body: string | Uint8Array): Buffer {
    return createHmac('sha256', this.#key)
      .update(
        `tsraft-peer-v1\n${parts.method}\n${parts.path}\n${parts.from}\n${parts.to}\n${parts.timestamp}\n`,
      )
      .update(body)
      .digest();
  }
}

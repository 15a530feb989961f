import { Buffer } from 'node:buffer';
import {
  createHash,
  createHmac,
  createSecretKey,
  type KeyObject,
  timingSafeEqual,
} from 'node:crypto';
import type { NodeId } from '@tsraft/core';

/** An HMAC-SHA256 or SHA-256 digest (32 bytes) in unpadded base64url: 43 characters. */
const CANONICAL_DIGEST = /^[A-Za-z0-9_-]{43}$/;

/** The headers that authenticate a request between peers. */
export const SIGNATURE_HEADERS = {
  /** The sending node's id. */
  from: 'x-tsraft-from',
  /** Milliseconds since the epoch when the request was signed. */
  timestamp: 'x-tsraft-timestamp',
  /** `<stream>.<counter>`: names the request once (see `ReplayGuard`). */
  nonce: 'x-tsraft-nonce',
  /** SHA-256 of the body, base64url: the signature covers the body through it. */
  bodyDigest: 'x-tsraft-body-sha256',
  /** HMAC-SHA256 of the request's headers above, its method, path and receiver, base64url. */
  signature: 'x-tsraft-signature',
} as const;

/** Shortest cluster secret accepted, in bytes. */
const MIN_SECRET_BYTES = 16;

/** What a signature covers. The body is covered through its digest. */
export interface SignedParts {
  readonly method: string;
  /** The request's path and query, as sent on the request line. */
  readonly path: string;
  readonly from: NodeId;
  /** The receiving node: a request signed for one node is refused by every other. */
  readonly to: NodeId;
  readonly timestamp: string;
  /** Unique per request of one sender: a receiver accepts each nonce once. */
  readonly nonce: string;
  /** {@link bodyDigest} of the body. */
  readonly bodyDigest: string;
}

/**
 * SHA-256 of a request body (or of its parts, one after the other), base64url: what
 * {@link SignedParts.bodyDigest} holds.
 */
export function bodyDigest(body: string | Uint8Array | readonly Uint8Array[]): string {
  const hash = createHash('sha256');
  if (Array.isArray(body)) for (const part of body) hash.update(part);
  else hash.update(body as string | Uint8Array);
  return hash.digest('base64url');
}

/** Whether the digest `given` (base64url) equals the raw digest `actual`; constant time. */
export function sameDigest(given: string, actual: Buffer): boolean {
  if (!CANONICAL_DIGEST.test(given)) return false;
  const bytes = Buffer.from(given, 'base64url');
  return bytes.byteLength === actual.byteLength && timingSafeEqual(bytes, actual);
}

/**
 * Signs and verifies requests between the nodes of one cluster with HMAC-SHA256 keyed by the
 * shared cluster secret, over the method, path, sender, receiver, timestamp, nonce and the
 * body's SHA-256. The signature covers headers only, so a receiver checks it before reading a
 * byte of the body, then checks the body against the signed digest while reading it. The secret
 * never travels; a changed byte anywhere invalidates the request.
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
  sign(parts: SignedParts): string {
    return this.#digest(parts).toString('base64url');
  }

  /** Whether `signature` is the request's signature; compares in constant time. */
  verify(parts: SignedParts, signature: string): boolean {
    // Only the one canonical spelling: base64url decoding would skip stray characters.
    return sameDigest(signature, this.#digest(parts));
  }

  #digest(parts: SignedParts): Buffer {
    return createHmac('sha256', this.#key)
      .update(
        `tsraft-peer-v2\n${parts.method}\n${parts.path}\n${parts.from}\n${parts.to}\n${parts.timestamp}\n${parts.nonce}\n${parts.bodyDigest}`,
      )
      .digest();
  }
}

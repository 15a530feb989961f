import { createHash } from 'node:crypto';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type ServerResponse,
} from 'node:http';
import {
  createServer as createHttpsServer,
  type ServerOptions as HttpsServerOptions,
} from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TRPCError } from '@trpc/server';
import { type Logger, type NodeId, noopLogger, type PeerHandler } from '@tsraft/core';
import { sendPeerError } from './peer-error-response.ts';
import {
  callPeerProcedure,
  isPeerProcedure,
  type PeerProcedure,
  peerErrorMessage,
} from './peer-router.ts';
import { PeerSignature, SIGNATURE_HEADERS, sameDigest } from './peer-signature.ts';
import { peerTransformer } from './peer-wire.ts';
import { BodyTooLargeError, readBody } from './read-body.ts';
import { ReplayGuard } from './replay-guard.ts';
import { decodeSnapshotPiece, SNAPSHOT_PIECE_CONTENT_TYPE } from './snapshot-piece-wire.ts';

/** Default limit of one request body: 64 MiB (a whole snapshot travels in one request). */
export const DEFAULT_MAX_BODY_BYTES: number = 64 * 1024 * 1024;
/** Default base path of the peer procedures. */
export const DEFAULT_BASE_PATH = '/raft';
const DEFAULT_MAX_CLOCK_SKEW_MS = 60_000;
/** A misconfiguration is logged at `warn` at most this often per peer. */
const WARN_EVERY_MS = 30_000;

/** Options of {@link createTrpcPeerServer}. */
export interface TrpcPeerServerOptions {
  /** This node's id: requests signed for another node are refused. */
  readonly nodeId: NodeId;
  /**
   * The cluster's nodes, id to base URL. Only these ids (other than `nodeId`) may call; the
   * server ignores the URLs, so the transport and the server can share one map.
   */
  readonly peers: Readonly<Record<NodeId, string>>;
  /** The shared cluster secret (at least 16 bytes) every request is signed with. */
  readonly secret: string | Uint8Array;
  /** Serves verified requests. Can be installed later with {@link TrpcPeerServer.setHandler}. */
  readonly handler?: PeerHandler;
  /** Largest request body accepted, in bytes; larger ones get 413. Default 64 MiB. */
  readonly maxBodyBytes?: number;
  /** Path prefix of the peer procedures. Default `/raft`. */
  readonly basePath?: string;
  /**
   * Serve HTTPS with these options (key, cert, ca, ...) in {@link TrpcPeerServer.listen}.
   * Default: plain HTTP. Ignored when mounted into a server of your own.
   */
  readonly tls?: HttpsServerOptions;
  /**
   * How far a request's signed timestamp may be from this node's clock. Each request is
   * accepted once; what was accepted is remembered for this window (see `ReplayGuard`).
   * Default 60,000 ms.
   */
  readonly maxClockSkewMs?: number;
  /** Where the server logs refused requests and handler failures. Default: discards. */
  readonly logger?: Logger;
}

/** Where {@link TrpcPeerServer.listen} listens. */
export interface ListenAddress {
  /** Default `127.0.0.1`. */
  readonly host?: string;
  /** `0` picks a free port. */
  readonly port: number;
}

/**
 * Serves the peer procedures over HTTP(S) in tRPC's wire format for mutations: authenticates each
 * request, bounds its size, parses its JSON and calls the tRPC procedure its path names, which
 * validates the envelope and calls the {@link PeerHandler}; the answer is `{ result: { data } }`.
 *
 * Answers, before the handler is ever reached: 401 for a request without valid credentials
 * (unknown node id, missing or wrong signature, timestamp too far off, signed for another node, a
 * replay of a request accepted before, or a body that is not the one signed), 413 for a body over the limit, 404 for a path that names no procedure, 405 for a method
 * other than POST, 400 for malformed JSON or an invalid envelope, 503 while no handler is
 * installed or after `close()`. Error bodies carry a message, never a stack trace. No byte of a
 * body is read before the request's signature (which covers headers and the body's digest) has
 * verified and its nonce was found new. The handler's
 * signal aborts when the client goes away before the answer is sent.
 */
export class TrpcPeerServer {
  readonly #nodeId: NodeId;
  readonly #peers: Set<NodeId>;
  readonly #signature: PeerSignature;
  readonly #maxBodyBytes: number;
  readonly #basePath: string;
  readonly #tls: HttpsServerOptions | undefined;
  readonly #maxClockSkewMs: number;
  readonly #logger: Logger;
  readonly #replays: ReplayGuard;
  /** When a bad signature of each peer was last logged at `warn`. */
  readonly #warnedAt = new Map<NodeId, number>();
  #handler: PeerHandler | undefined;
  #server: ReturnType<typeof createHttpServer> | undefined;
  #closed = false;

  constructor(options: TrpcPeerServerOptions) {
    this.#nodeId = options.nodeId;
    this.#peers = new Set(Object.keys(options.peers).filter((id) => id !== options.nodeId));
    this.#signature = new PeerSignature(options.secret);
    this.#maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
    if (!(this.#maxBodyBytes > 0)) throw new TypeError('maxBodyBytes must be positive');
    this.#basePath = normalizeBasePath(options.basePath ?? DEFAULT_BASE_PATH);
    this.#tls = options.tls;
    this.#maxClockSkewMs = options.maxClockSkewMs ?? DEFAULT_MAX_CLOCK_SKEW_MS;
    this.#logger = options.logger ?? noopLogger;
    this.#replays = new ReplayGuard(this.#maxClockSkewMs);
    this.#handler = options.handler;
  }

  /** Accepts requests from `ids` too (members the configuration added). */
  addPeers(ids: Iterable<NodeId>): void {
    for (const id of ids) if (id !== this.#nodeId) this.#peers.add(id);
  }

  /** Installs the handler verified requests go to. */
  setHandler(handler: PeerHandler): void {
    this.#handler = handler;
  }

  /**
   * A request listener to mount into an HTTP(S) server of your own: serves a request under the
   * base path and returns true; returns false, leaving `req` and `res` alone, for any other path.
   */
  readonly handle = (req: IncomingMessage, res: ServerResponse): boolean => {
    const url = req.url ?? '/';
    const base = this.#basePath;
    const rest = url.startsWith(base) ? url.charAt(base.length) : 'no';
    if (rest !== '' && rest !== '/' && rest !== '?') return false;
    this.#serve(req, res).catch((error: unknown) => {
      this.#logger.warn({ err: error }, 'serving a peer request failed');
      sendPeerError(res, 500, 'the request could not be served');
    });
    return true;
  };

  /**
   * Starts an HTTP(S) server of its own (HTTPS when `tls` was given) that serves the peer
   * procedures and answers 404 to anything else. Resolves with the bound address.
   */
  async listen(address: ListenAddress): Promise<{ host: string; port: number }> {
    if (this.#server !== undefined) throw new Error('the peer server is already listening');
    if (this.#closed) throw new Error('the peer server is closed');
    const listener = (req: IncomingMessage, res: ServerResponse): void => {
      if (!this.handle(req, res)) sendPeerError(res, 404, 'not a peer procedure');
    };
    const server =
      this.#tls === undefined ? createHttpServer(listener) : createHttpsServer(this.#tls, listener);
    this.#server = server;
    const host = address.host ?? '127.0.0.1';
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(address.port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const bound = server.address() as AddressInfo;
    return { host: bound.address, port: bound.port };
  }

  /** The address the server of {@link listen} is bound to, while it listens. */
  address(): { host: string; port: number } | undefined {
    const bound = this.#server?.address();
    if (bound === null || bound === undefined || typeof bound === 'string') return undefined;
    return { host: bound.address, port: bound.port };
  }

  /**
   * Stops serving: later requests get 503 (when mounted) or find the port closed; the server of
   * {@link listen} closes with every connection, which aborts the signals of requests in flight.
   */
  async close(): Promise<void> {
    this.#closed = true;
    const server = this.#server;
    this.#server = undefined;
    if (server === undefined) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
  }

  async #serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const handler = this.#handler;
    if (handler === undefined || this.#closed) {
      sendPeerError(res, 503, `node "${this.#nodeId}" is not serving peer requests`, {
        closeConnection: true,
      });
      return;
    }
    const from = header(req, SIGNATURE_HEADERS.from);
    const timestamp = header(req, SIGNATURE_HEADERS.timestamp);
    const nonce = header(req, SIGNATURE_HEADERS.nonce);
    const digest = header(req, SIGNATURE_HEADERS.bodyDigest);
    const signature = header(req, SIGNATURE_HEADERS.signature);
    if (
      from === undefined ||
      timestamp === undefined ||
      nonce === undefined ||
      digest === undefined ||
      signature === undefined
    ) {
      this.#refuse(res, 'the request carries no node id and signature');
      return;
    }
    if (!this.#peers.has(from)) {
      this.#refuse(res, 'the request comes from a node that is not a peer of this cluster');
      return;
    }
    // Everything up to the body is checked before a byte of it is read: a request without valid
    // credentials costs no buffering.
    const now = Date.now();
    const signedAt = Number(timestamp);
    if (!(Math.abs(now - signedAt) <= this.#maxClockSkewMs)) {
      this.#refuse(res, 'the request timestamp is too far from this node clock');
      return;
    }
    const parts = {
      method: req.method ?? '',
      path: req.url ?? '',
      from,
      to: this.#nodeId,
      timestamp,
      nonce,
      bodyDigest: digest,
    };
    if (!this.#signature.verify(parts, signature)) {
      this.#badSignature(res, from);
      return;
    }
    const seen = this.#replays.accept(from, nonce, { signedAt, now });
    if (seen !== 'ok') {
      this.#refuse(
        res,
        seen === 'replay'
          ? 'the request was accepted before: a replayed request is refused'
          : 'the request nonce is malformed',
      );
      return;
    }
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > this.#maxBodyBytes) {
      this.#tooLarge(res);
      return;
    }
    let body: Buffer;
    try {
      body = await readBody(req, this.#maxBodyBytes);
    } catch (error) {
      if (error instanceof BodyTooLargeError) this.#tooLarge(res);
      else res.destroy();
      return;
    }
    if (!sameDigest(digest, createHash('sha256').update(body).digest())) {
      this.#refuse(res, 'the request body does not match its signed digest');
      return;
    }
    const procedure = procedureOf(parts.path, this.#basePath);
    if (procedure === undefined) {
      sendPeerError(res, 404, 'not a peer procedure');
      return;
    }
    if (parts.method !== 'POST') {
      sendPeerError(res, 405, 'peer procedures are mutations: send them with POST');
      return;
    }
    // A snapshot piece travels binary (`snapshot-piece-wire.ts`), every other request as JSON.
    const binary = procedure === 'snapshot';
    if (binary && mediaType(req) !== SNAPSHOT_PIECE_CONTENT_TYPE) {
      sendPeerError(
        res,
        400,
        `a snapshot piece travels in a binary body of type ${SNAPSHOT_PIECE_CONTENT_TYPE}`,
      );
      return;
    }
    let input: unknown;
    try {
      input = binary
        ? decodeSnapshotPiece(body)
        : peerTransformer.deserialize(JSON.parse(body.toString('utf8')));
    } catch (error) {
      this.#logger.debug({ path: parts.path }, 'refused a peer request with a malformed body');
      sendPeerError(
        res,
        400,
        `malformed ${binary ? 'snapshot piece' : 'JSON'}: ${(error as Error).message}`,
      );
      return;
    }
    // Aborts the handler's work when the client goes away before the answer is sent.
    const gone = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished) gone.abort();
    });
    let output: unknown;
    try {
      output = await callPeerProcedure(
        { nodeId: this.#nodeId, from, handler },
        procedure,
        input,
        gone.signal,
      );
    } catch (error) {
      this.#procedureFailed(res, procedure, error as TRPCError);
      return;
    }
    const answer = JSON.stringify({ result: { data: peerTransformer.serialize(output) } });
    res.statusCode = 200;
    res.setHeader('content-type', 'application/json');
    res.setHeader('content-length', Buffer.byteLength(answer));
    res.end(answer);
  }

  #procedureFailed(res: ServerResponse, procedure: PeerProcedure, error: TRPCError): void {
    const message = peerErrorMessage(error);
    if (error.code === 'BAD_REQUEST') {
      this.#logger.debug({ path: procedure, message }, 'refused a peer request');
      sendPeerError(res, 400, message);
    } else {
      this.#logger.warn({ err: error, path: procedure }, 'a peer request failed');
      sendPeerError(res, 500, message);
    }
  }

  /**
   * A request of a known peer whose signature does not verify: almost always nodes configured
   * with different cluster secrets, which otherwise shows only as elections that never end.
   * Logged at `warn` with what to do, at most once per peer per {@link WARN_EVERY_MS}.
   */
  #badSignature(res: ServerResponse, from: NodeId): void {
    const now = Date.now();
    if ((this.#warnedAt.get(from) ?? -Infinity) + WARN_EVERY_MS <= now) {
      this.#warnedAt.set(from, now);
      this.#logger.warn(
        { peer: from },
        `refused requests of node "${from}" whose signatures do not verify with this node's cluster secret: give every node of the cluster the same secret (or someone is forging requests)`,
      );
    }
    this.#refuse(res, 'the request signature is not valid for this cluster');
  }

  #refuse(res: ServerResponse, message: string): void {
    this.#logger.debug({ message }, 'refused an unauthenticated peer request');
    // The body is left unread: the connection must not be reused.
    sendPeerError(res, 401, message, { closeConnection: true });
  }

  #tooLarge(res: ServerResponse): void {
    sendPeerError(res, 413, `the request body exceeds the limit of ${this.#maxBodyBytes} bytes`, {
      closeConnection: true,
    });
  }
}

/** Creates a {@link TrpcPeerServer}; call `listen`, or mount its `handle` into your server. */
export function createTrpcPeerServer(options: TrpcPeerServerOptions): TrpcPeerServer {
  return new TrpcPeerServer(options);
}

/** The request's media type (its `Content-Type` without parameters), lower-case. */
function mediaType(req: IncomingMessage): string {
  return (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return typeof value === 'string' && value.length > 0 ? value : undefined;
}

/** The procedure `path` (`<basePath>/<name>`, maybe with a query) names, if any. */
function procedureOf(path: string, basePath: string): PeerProcedure | undefined {
  if (path.charAt(basePath.length) !== '/') return undefined;
  const query = path.indexOf('?', basePath.length);
  const name = path.slice(basePath.length + 1, query === -1 ? undefined : query);
  return isPeerProcedure(name) ? name : undefined;
}

function normalizeBasePath(path: string): string {
  const trimmed = path.replace(/\/+$/, '');
  if (trimmed !== '' && !trimmed.startsWith('/')) {
    throw new TypeError(`basePath must start with "/", got "${path}"`);
  }
  return trimmed;
}

import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import {
  createServer as createHttpsServer,
  type ServerOptions as HttpsServerOptions,
} from 'node:https';
import type { AddressInfo } from 'node:net';
import type { AnyTRPCRouter } from '@trpc/server';
import { type CreateHTTPHandlerOptions, createHTTPHandler } from '@trpc/server/adapters/standalone';
import { sendPeerError } from './peer-error-response.ts';
import type { ListenAddress } from './peer-server.ts';
import { safeErrorsRouter } from './safe-errors-router.ts';

/** Default limit of one request body of the app's endpoint: 1 MiB. */
export const DEFAULT_APP_MAX_BODY_BYTES: number = 1024 * 1024;

/** Options of {@link createRaftHttpServer}. */
export interface RaftHttpServerOptions<TRouter extends AnyTRPCRouter> {
  /** Your app's tRPC router (with the plugin's procedures in it). */
  readonly router: TRouter;
  /** Your app's context for each request, as tRPC's standalone adapter takes it. */
  readonly createContext?: CreateHTTPHandlerOptions<TRouter>['createContext'];
  /**
   * The peer transport of this node (`createTrpcTransport({ ..., listen: false })`): its peer
   * procedures are served under its base path (default `/raft`) on the same server. Omit it to
   * serve the app alone (the transport then listens on a port of its own).
   */
  readonly transport?: { readonly handle: (req: IncomingMessage, res: ServerResponse) => boolean };
  /**
   * The plugin's procedures (`createRaftProcedures(...)`): every answer then carries the
   * `x-tsraft-leader` header, so `raftFailoverLink` moves to the leader. Merged with `responseMeta`.
   */
  readonly raft?: { responseMeta(): { headers: Record<string, string> } };
  /** More of tRPC's `responseMeta` (headers and status of your own). */
  readonly responseMeta?: CreateHTTPHandlerOptions<TRouter>['responseMeta'];
  /** Called with every error of a procedure, with its stack: log it here. */
  readonly onError?: CreateHTTPHandlerOptions<TRouter>['onError'];
  /** Path prefix of the app's procedures, e.g. `/trpc`. Default `/`. */
  readonly basePath?: string;
  /**
   * Largest request body of the app's endpoint, in bytes: a larger one is answered 413
   * (PAYLOAD_TOO_LARGE) and never buffered past the limit; a `Content-Length` over it is refused
   * before a byte is read. The peer endpoint has its own limit (the transport's `maxBodyBytes`).
   * Default {@link DEFAULT_APP_MAX_BODY_BYTES} (1 MiB).
   */
  readonly maxBodyBytes?: number;
  /**
   * Send error details to clients: stack traces (when your tRPC instance is in development mode)
   * and the messages of unexpected errors (INTERNAL_SERVER_ERROR), which may name files, tables or
   * hosts. Default false: no stack, and unexpected errors say only that they happened (your
   * `onError` still sees them whole). Errors you throw as `TRPCError`s of other codes keep their
   * messages.
   */
  readonly exposeErrorDetails?: boolean;
  /** Serve HTTPS with these options (key, cert, ...). Default: plain HTTP. */
  readonly tls?: HttpsServerOptions;
}

/** What {@link createRaftHttpServer} returns. */
export interface RaftHttpServer extends AsyncDisposable {
  /** The Node.js server, for options of your own (timeouts, `upgrade` handlers). */
  readonly server: Server;
  /** Starts listening; resolves with the bound address. Default host `127.0.0.1`. */
  listen(address: ListenAddress): Promise<{ host: string; port: number }>;
  /** The bound address, while it listens. */
  address(): { host: string; port: number } | undefined;
  /** Stops accepting connections, closes every connection (in-flight requests abort). */
  close(): Promise<void>;
}

/**
 * One HTTP(S) server for a node: your app's tRPC router (with the plugin's procedures) and the
 * Raft peer endpoint of its transport, with safe defaults:
 * - a body limit on the app's endpoint (1 MiB by default; the peer endpoint has its own);
 * - no stack traces and no messages of unexpected errors in error bodies, unless
 *   `exposeErrorDetails`;
 * - the `x-tsraft-leader` header on every answer when `raft` is given.
 *
 * ```ts
 * const transport = createTrpcTransport({ nodeId, peers, secret, listen: false });
 * const node = await RaftNode.start({ ..., transport });
 * const raft = createRaftProcedures({ node, command });
 * const server = createRaftHttpServer({ router: appRouter, transport, raft, createContext });
 * await server.listen({ host: '0.0.0.0', port: 4100 });
 * ```
 */
export function createRaftHttpServer<TRouter extends AnyTRPCRouter>(
  options: RaftHttpServerOptions<TRouter>,
): RaftHttpServer {
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_APP_MAX_BODY_BYTES;
  if (!(Number.isSafeInteger(maxBodyBytes) && maxBodyBytes > 0)) {
    throw new TypeError(`maxBodyBytes must be a positive integer, got ${maxBodyBytes}`);
  }
  const router =
    options.exposeErrorDetails === true ? options.router : safeErrorsRouter(options.router);
  const { raft, responseMeta } = options;
  const app = createHTTPHandler<TRouter>({
    router,
    maxBodySize: maxBodyBytes,
    ...(options.createContext === undefined ? {} : { createContext: options.createContext }),
    ...(options.onError === undefined ? {} : { onError: options.onError }),
    ...(options.basePath === undefined ? {} : { basePath: options.basePath }),
    ...(raft === undefined && responseMeta === undefined
      ? {}
      : responseMeta === undefined
        ? // The plugin's headers alone: no merge, no `Headers` object per request.
          { responseMeta: () => (raft as NonNullable<typeof raft>).responseMeta() }
        : {
            responseMeta: (opts) => {
              // tRPC itself accepts a function that returns nothing (a JavaScript app's early
              // return); so does the merge, rather than answering 500 to every request.
              const own = responseMeta(opts) ?? {};
              const headers = toHeaders(own.headers);
              for (const [name, value] of Object.entries(raft?.responseMeta().headers ?? {})) {
                if (!headers.has(name)) headers.set(name, value);
              }
              return { ...own, headers };
            },
          }),
  } as CreateHTTPHandlerOptions<TRouter>);
  const transport = options.transport;
  const listener = (req: IncomingMessage, res: ServerResponse): void => {
    if (transport?.handle(req, res) === true) return;
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > maxBodyBytes) {
      // Refused before a byte of the body is read; the connection cannot be reused.
      sendPeerError(res, 413, `the request body exceeds the limit of ${maxBodyBytes} bytes`, {
        closeConnection: true,
      });
      return;
    }
    app(req, res);
  };
  const server =
    options.tls === undefined
      ? createHttpServer(listener)
      : createHttpsServer(options.tls, listener);
  const address = (): { host: string; port: number } | undefined => {
    const bound = server.address();
    if (bound === null || typeof bound === 'string') return undefined;
    return { host: (bound as AddressInfo).address, port: (bound as AddressInfo).port };
  };
  const close = async (): Promise<void> => {
    if (!server.listening) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
  };
  return {
    server,
    async listen(at) {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(at.port, at.host ?? '127.0.0.1', () => {
          server.off('error', reject);
          resolve();
        });
      });
      return address() as { host: string; port: number };
    },
    address,
    close,
    [Symbol.asyncDispose]: close,
  };
}

/**
 * tRPC's `responseMeta` headers (a record or `Headers`) as a new `Headers` of this response: a
 * copy, so that the leader header set on it never lands in a `Headers` the app reuses.
 */
function toHeaders(
  given: Headers | Record<string, string | string[] | undefined> | undefined,
): Headers {
  if (given instanceof Headers) return new Headers(given);
  const headers = new Headers();
  for (const [name, value] of Object.entries(given ?? {})) {
    for (const one of Array.isArray(value) ? value : value === undefined ? [] : [value]) {
      headers.append(name, one);
    }
  }
  return headers;
}

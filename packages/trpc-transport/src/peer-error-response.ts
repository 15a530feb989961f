import type { ServerResponse } from 'node:http';
import { type TRPC_ERROR_CODE_KEY, TRPC_ERROR_CODES_BY_KEY } from '@trpc/server/rpc';

/** The HTTP statuses of the peer server's error answers. */
export type PeerErrorStatus = 400 | 401 | 404 | 405 | 413 | 500 | 503;

const CODE_BY_STATUS: { readonly [S in PeerErrorStatus]: TRPC_ERROR_CODE_KEY } = {
  400: 'BAD_REQUEST',
  401: 'UNAUTHORIZED',
  404: 'NOT_FOUND',
  405: 'METHOD_NOT_SUPPORTED',
  413: 'PAYLOAD_TOO_LARGE',
  500: 'INTERNAL_SERVER_ERROR',
  503: 'SERVICE_UNAVAILABLE',
};

/**
 * Answers with an error in the shape tRPC's own errors have (wrapped as `{ json }`, see `peer-wire.ts`), so a tRPC client
 * reports the message as it would for an error of a procedure. Never a stack trace.
 * `closeConnection` asks the client to drop the connection (a body was left unread).
 */
export function sendPeerError(
  res: ServerResponse,
  status: PeerErrorStatus,
  message: string,
  options: { closeConnection?: boolean } = {},
): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const code = CODE_BY_STATUS[status];
  const body = JSON.stringify({
    error: {
      json: { message, code: TRPC_ERROR_CODES_BY_KEY[code], data: { code, httpStatus: status } },
    },
  });
  res.statusCode = status;
  res.setHeader('content-type', 'application/json');
  res.setHeader('content-length', Buffer.byteLength(body));
  if (options.closeConnection === true) res.setHeader('connection', 'close');
  res.end(body);
}

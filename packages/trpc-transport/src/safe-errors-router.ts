import type { AnyTRPCRouter } from '@trpc/server';

/** What an unexpected error says to clients when its details are not exposed. */
const HIDDEN_MESSAGE = 'internal server error (details are in the server log)';

interface ErrorShapeLike {
  message?: unknown;
  data?: { code?: unknown; stack?: unknown } & Record<string, unknown>;
}

/**
 * `router` with error shapes safe to send to any client: never a stack trace (tRPC adds one in
 * development mode), and the message of an unexpected error (INTERNAL_SERVER_ERROR: a bug, a
 * database error, a file that was missing) replaced, since it may name files, tables or hosts.
 * Everything else of the shape (codes, `data.raft`, your formatter's fields) stays. The router's
 * procedures are shared, not copied.
 */
export function safeErrorsRouter<TRouter extends AnyTRPCRouter>(router: TRouter): TRouter {
  const config = router._def._config;
  const formatter = config.errorFormatter;
  return {
    ...router,
    _def: {
      ...router._def,
      _config: {
        ...config,
        isDev: false,
        errorFormatter: (opts: Parameters<typeof formatter>[0]) =>
          redact(formatter(opts) as ErrorShapeLike),
      },
    },
  };
}

function redact<Shape extends ErrorShapeLike>(shape: Shape): Shape {
  const data = shape.data;
  if (data === undefined || data === null || typeof data !== 'object') return shape;
  const { stack: _stack, ...rest } = data;
  const hidden = rest.code === 'INTERNAL_SERVER_ERROR';
  return { ...shape, ...(hidden ? { message: HIDDEN_MESSAGE } : {}), data: rest };
}

/** A log method in pino's shape: a context object and a message, or just a message. */
export interface LogFn {
  (context: object, message?: string): void;
  (message: string): void;
}

/**
 * The logger tsraft writes to; a pino logger satisfies it. tsraft logs protocol events (elections,
 * leader changes, step-downs) at `info`, per-message detail at `debug`, and fatal conditions at
 * `error`.
 */
export interface Logger {
  debug: LogFn;
  info: LogFn;
  warn: LogFn;
  error: LogFn;
  /** A logger that adds `bindings` to every line. Optional: tsraft falls back to this logger. */
  child?(bindings: Record<string, unknown>): Logger;
  /**
   * The fields this logger already adds to every line (pino's `logger.bindings()`). Optional:
   * tsraft reads it so that it never binds a field twice (pino would write the key twice).
   */
  bindings?(): Record<string, unknown>;
}

const ignore: LogFn = () => {};

/** The default logger: discards everything. */
export const noopLogger: Logger = { debug: ignore, info: ignore, warn: ignore, error: ignore };

/**
 * A logger that adds those of `bindings` that `logger` does not bind already (by key, as its
 * `bindings()` reports them), so that a line never carries a field twice: a user's logger that
 * binds `node` itself keeps its own value. Returns `logger` itself when nothing is left to add or
 * it has no `child()`.
 */
export function bindLogger(logger: Logger, bindings: Record<string, unknown>): Logger {
  const bound = logger.bindings?.() ?? {};
  const missing = Object.fromEntries(Object.entries(bindings).filter(([key]) => !(key in bound)));
  if (Object.keys(missing).length === 0) return logger;
  return logger.child?.(missing) ?? logger;
}

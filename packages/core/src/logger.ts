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
}

const ignore: LogFn = () => {};

/** The default logger: discards everything. */
export const noopLogger: Logger = { debug: ignore, info: ignore, warn: ignore, error: ignore };

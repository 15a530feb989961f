import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { guardPoolErrors, raftSchemaStatus } from '@tsraft/pg-storage';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { CliError, EXIT } from './cli-error.ts';

/** How the tool's connections name themselves (and are told apart from the node's). */
const APPLICATION_NAME = 'tsraft-snapshot';

// biome-ignore lint/suspicious/noExplicitAny: the tool reads any application's database.
type AnyDb = Kysely<any>;

/** A node's database as the tool opened it. Closing it ends its connections. */
export interface NodeDatabase extends AsyncDisposable {
  readonly db: AnyDb;
  /** How the tool names it in messages (the URL without its password, or the folder). */
  readonly name: string;
  /** Whether it is an in-process PGlite folder (one connection; no other process may use it). */
  readonly embedded: boolean;
}

/** Options of {@link openNodeDatabase}. */
export interface OpenNodeDatabaseOptions {
  /** `postgres://…` (a server), or the folder of a PGlite database. */
  readonly db: string;
  /** The Raft schema. */
  readonly schema: string;
  /** Require the Raft schema to exist (commands that read a node's snapshots). */
  readonly requireRaftSchema: boolean;
  /** Connections of the pool to a server. Default 4. */
  readonly connections?: number;
  readonly signal?: AbortSignal;
}

/**
 * Opens a node's database: a pool to a Postgres server, or PGlite on a folder. With
 * `requireRaftSchema`, checks (without creating anything) that the schema holds Raft tables of a
 * version this tool reads.
 *
 * @throws CliError `unavailable` when the database cannot be reached, `notFound` when it has no
 * Raft schema (but one is required), `refused` when a newer version migrated it.
 */
export async function openNodeDatabase(options: OpenNodeDatabaseOptions): Promise<NodeDatabase> {
  const opened = /^postgres(ql)?:\/\//.test(options.db)
    ? openServer(options.db, options.connections ?? 4)
    : await openPglite(options.db);
  try {
    if (options.requireRaftSchema) {
      const status = await raftSchemaStatus({
        db: opened.db,
        schema: options.schema,
        ...(options.signal === undefined ? {} : { signal: options.signal }),
      });
      if (status === 'missing') {
        throw new CliError(
          EXIT.notFound,
          `${opened.name} has no tsraft tables in schema "${options.schema}"`,
          'check that --db names the node\'s database and --schema its Raft schema (default "raft")',
        );
      }
      if (status === 'newer' || status === 'outdated') {
        throw new CliError(
          EXIT.refused,
          `schema "${options.schema}" of ${opened.name} was migrated by ${status === 'newer' ? 'a newer' : 'an older'} @tsraft/pg-storage than this tool's`,
          'use the tsraft-snapshot of the version the node runs (this tool never migrates a schema it only reads)',
        );
      }
    }
    return opened;
  } catch (error) {
    await opened[Symbol.asyncDispose]();
    throw error;
  }
}

function openServer(url: string, connections: number): NodeDatabase {
  const pool = new pg.Pool({
    connectionString: url,
    max: connections,
    connectionTimeoutMillis: 10_000,
    application_name: APPLICATION_NAME,
  });
  guardPoolErrors(pool); // a lost Postgres fails calls, never the process
  const db: AnyDb = new Kysely({ dialect: new PostgresDialect({ pool }) });
  return {
    db,
    name: redact(url),
    embedded: false,
    [Symbol.asyncDispose]: () => db.destroy(),
  };
}

async function openPglite(folder: string): Promise<NodeDatabase> {
  if (!existsSync(join(folder, 'PG_VERSION'))) {
    throw new CliError(
      EXIT.usage,
      `--db ${folder} is neither a postgres:// URL nor the folder of a PGlite database`,
      "pass the node's connection URL (postgres://user:password@host:port/database) or its PGlite folder",
    );
  }
  let PGlite: typeof import('@electric-sql/pglite').PGlite;
  let PGliteDialect: typeof import('kysely').PGliteDialect;
  try {
    ({ PGlite } = await import('@electric-sql/pglite'));
    ({ PGliteDialect } = await import('kysely'));
  } catch (error) {
    throw new CliError(
      EXIT.usage,
      'reading a PGlite folder needs the @electric-sql/pglite package',
      'install @electric-sql/pglite beside @tsraft/log-compaction',
      { cause: error },
    );
  }
  const db: AnyDb = new Kysely({ dialect: new PGliteDialect({ pglite: new PGlite(folder) }) });
  return { db, name: folder, embedded: true, [Symbol.asyncDispose]: () => db.destroy() };
}

/** The URL without its password, for messages. */
function redact(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== '') parsed.password = '***';
    return parsed.toString();
  } catch {
    return 'the database';
  }
}

/**
 * Refuses a database other clients are connected to (a node that still runs), unless `force`:
 * commands that replace a node's state need it stopped. A PGlite folder cannot be checked (only
 * one process may open it at a time: the command's own open would have failed or corrupted it;
 * the runbook says to stop the node first).
 *
 * @throws CliError `refused` naming the other clients.
 */
export async function assertNotInUse(
  database: NodeDatabase,
  options: { force: boolean; signal: AbortSignal },
): Promise<void> {
  if (options.force || database.embedded) return;
  const { rows } = await sql<{ clients: unknown; names: string | null }>`
    select count(*) as clients,
      string_agg(distinct coalesce(nullif(application_name, ''), client_addr::text, 'a local client'), ', ') as names
    from pg_stat_activity
    where datname = current_database() and pid <> pg_backend_pid()
      and backend_type = 'client backend' and application_name <> ${APPLICATION_NAME}
  `.execute(database.db);
  const clients = Number(rows[0]?.clients ?? 0);
  options.signal.throwIfAborted();
  if (clients > 0) {
    throw new CliError(
      EXIT.refused,
      `${clients} other client connection(s) are open to ${database.name} (${rows[0]?.names ?? 'unknown'}): the node may still be running`,
      'stop the node (every process using this database) first; pass --force only if none of these clients is the node',
    );
  }
}

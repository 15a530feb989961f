import { readFile } from 'node:fs/promises';
import { processCpuWithChildren, readProcStat } from '@tsraft/bench-cli';
import pg from 'pg';

/** Counters of a Postgres server since its start. */
export interface PostgresCounters {
  /** WAL fsyncs (`pg_stat_io` from Postgres 18, `pg_stat_wal.wal_sync` before). */
  readonly walSyncs: number;
  /** Transactions committed or rolled back in the benchmark's database. */
  readonly transactions: number;
  /** CPU seconds of the server's processes, when they run on this host. */
  readonly cpu: number | undefined;
}

/**
 * One monitoring connection to a server of the benchmark: its counters, and its CPU when its
 * processes are on this host. Counters are flushed by each backend about once a second while it
 * works and about a second after it goes idle: read them after the load has been idle that long.
 */
export class PostgresProbe implements AsyncDisposable {
  readonly #client: pg.Client;
  readonly #postmaster: number | undefined;
  readonly #version: number;

  private constructor(client: pg.Client, postmaster: number | undefined, version: number) {
    this.#client = client;
    this.#postmaster = postmaster;
    this.#version = version;
  }

  static async open(url: string): Promise<PostgresProbe> {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    const { rows } = await client.query<{ pid: number; version: string }>(
      `select pg_backend_pid() as pid, current_setting('server_version_num') as version`,
    );
    const row = rows[0] as { pid: number; version: string };
    const socket = (client as unknown as { connection: { stream: { localPort?: number } } })
      .connection.stream;
    const postmaster =
      socket.localPort === undefined ? undefined : await localPostmaster(row.pid, socket.localPort);
    return new PostgresProbe(client, postmaster, Number(row.version));
  }

  /** Whether the server's CPU can be measured (its processes are on this host). */
  get measuresCpu(): boolean {
    return this.#postmaster !== undefined;
  }

  async counters(): Promise<PostgresCounters> {
    const wal =
      this.#version >= 180_000
        ? `select coalesce(sum(fsyncs), 0)::int8 as n from pg_stat_io where object = 'wal'`
        : 'select wal_sync::int8 as n from pg_stat_wal';
    const [syncs, transactions, cpu] = await Promise.all([
      this.#client.query<{ n: string }>(wal),
      this.#client.query<{ n: string }>(
        `select (xact_commit + xact_rollback)::int8 as n from pg_stat_database where datname = current_database()`,
      ),
      this.#postmaster === undefined ? undefined : processCpuWithChildren(this.#postmaster),
    ]);
    return {
      walSyncs: Number(syncs.rows[0]?.n ?? 0),
      transactions: Number(transactions.rows[0]?.n ?? 0),
      cpu,
    };
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.#client.end().catch(() => {});
  }
}

/**
 * The postmaster of the backend `backendPid` serving a connection from local port `clientPort`,
 * when this machine's `/proc` shows it (a server on this host, not in a container's namespace):
 * the backend's process title names the client's address and port.
 */
async function localPostmaster(
  backendPid: number,
  clientPort: number,
): Promise<number | undefined> {
  try {
    const title = await readFile(`/proc/${backendPid}/cmdline`, 'utf8');
    if (!title.startsWith('postgres') || !title.includes(`(${clientPort})`)) return undefined;
  } catch {
    return undefined;
  }
  return (await readProcStat(backendPid))?.ppid;
}

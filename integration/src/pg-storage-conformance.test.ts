import { randomUUID } from 'node:crypto';
import { type HardState, type LogEntry, StorageError } from '@tsraft/core';
import {
  describeLogStoreConformance,
  describeSnapshotStoreConformance,
} from '@tsraft/core/testing/conformance';
import { guardPoolErrors, PostgresLogStore, PostgresSnapshotStore } from '@tsraft/pg-storage';
import { type PostgresServer, selectProvider } from '@tsraft/testing';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// biome-ignore lint/suspicious/noExplicitAny: the stores take a Kysely of any database type.
type AnyKysely = Kysely<any>;

// One real Postgres server for the file. Each fixture gets a schema of its own; "reopen" is a new
// pg Pool and store over the same database, as after a process restart.
let server: PostgresServer;

beforeAll(async () => {
  server = await (await selectProvider()).start();
});

afterAll(async () => {
  await server?.[Symbol.asyncDispose]();
});

/** `int8` as `bigint` on this pool only (the store turns it into a number, or refuses it). */
const int8AsBigInt = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === pg.types.builtins.INT8 && format !== 'binary'
      ? (value: string) => BigInt(value)
      : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

/** A client that follows `server.url` as it is when it connects (a port may change on restart). */
class FollowingClient extends pg.Client {
  constructor(config?: pg.ClientConfig) {
    super({ ...config, connectionString: server.url });
  }
}

/**
 * A Kysely instance on a new pg Pool of `Client`s (a {@link FollowingClient} or a subclass).
 * Timeouts make a dead server fail calls instead of hanging them.
 */
function connect(Client: typeof pg.Client = FollowingClient): AnyKysely {
  const pool = new pg.Pool({
    Client,
    connectionString: server.url,
    max: 4,
    types: int8AsBigInt,
    connectionTimeoutMillis: 5_000,
    query_timeout: 15_000,
    statement_timeout: 15_000,
  });
  // An idle connection whose server died emits 'error'; the next query reports the failure.
  guardPoolErrors(pool); // a lost Postgres fails calls, never the process
  const db: AnyKysely = new Kysely({ dialect: new PostgresDialect({ pool }) });
  return db;
}

function freshSchema(): string {
  return `raft_${randomUUID().replaceAll('-', '').slice(0, 16)}`;
}

/**
 * The connections of one application process to the server, which a test can crash: right after
 * `steps` more statements of the process (`BEGIN` and `COMMIT` included) have run, every backend
 * of the process is killed with `pg_terminate_backend`, so the server rolls back what they left
 * open, and the caller of the last statement never gets its answer. Later calls fail at once.
 */
class CrashableProcess {
  readonly db: AnyKysely;
  readonly #name = `tsraft_process_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
  readonly #admin: AnyKysely;
  #stepsLeft: number | undefined;
  #crashed = false;

  /** `admin` runs the kill: a connection outside the process. */
  constructor(admin: AnyKysely) {
    this.#admin = admin;
    const owner = this;
    class ProcessClient extends FollowingClient {
      constructor(config?: pg.ClientConfig) {
        super({ ...config, application_name: owner.#name });
        // A backend killed while this client is checked out reports it here; the crash expects it.
        this.on('error', () => {});
        const query = this.query.bind(this) as (...args: unknown[]) => unknown;
        this.query = ((...args: unknown[]) => owner.#run(() => query(...args))) as never;
      }
    }
    this.db = connect(ProcessClient);
  }

  crashAfter(steps: number): void {
    this.#stepsLeft = steps;
    if (steps === 0) this.#crashed = true;
  }

  #run(query: () => unknown): unknown {
    if (this.#crashed) return Promise.reject(new Error('the process crashed: connection lost'));
    const result = query();
    if (!(result instanceof Promise)) return result;
    return result.then(async (value: unknown) => {
      if (this.#stepsLeft === undefined || --this.#stepsLeft > 0) return value;
      this.#crashed = true;
      await this.#kill();
      throw new Error('the process crashed: connection lost before the answer came');
    });
  }

  /** Terminates every backend of the process and waits until they are gone. */
  async #kill(): Promise<void> {
    const { rows } = await sql<{ killed: boolean }>`
      select pg_terminate_backend(pid, 10000) as killed
      from pg_stat_activity where application_name = ${this.#name}
    `.execute(this.#admin);
    if (rows.length === 0 || !rows.every((row) => row.killed)) {
      throw new Error(`could not kill the backends of ${this.#name}: ${JSON.stringify(rows)}`);
    }
  }
}

/** Connections opened for a fixture; disposing it drops its schema and closes them all. */
function fixtureScope(): {
  schema: string;
  connect: () => AnyKysely;
  process: () => CrashableProcess;
  [Symbol.asyncDispose]: () => Promise<void>;
} {
  const schema = freshSchema();
  const opened: AnyKysely[] = [];
  const connectOnce = (): AnyKysely => {
    const db = connect();
    opened.push(db);
    return db;
  };
  return {
    schema,
    connect: connectOnce,
    process: () => {
      const process = new CrashableProcess(connectOnce());
      opened.push(process.db);
      return process;
    },
    [Symbol.asyncDispose]: async () => {
      const [first] = opened;
      if (first) await sql`drop schema if exists ${sql.id(schema)} cascade`.execute(first);
      await Promise.all(opened.map((db) => db.destroy()));
    },
  };
}

// Each store runs in a process of its own, which the suite crashes by killing its backends.
describeLogStoreConformance('Postgres server', async () => {
  const scope = fixtureScope();
  let process = scope.process();
  const open = () => PostgresLogStore.open({ db: process.db, schema: scope.schema });
  return {
    store: await open(),
    reopen: () => {
      process = scope.process();
      return open();
    },
    crashAfter: (steps) => process.crashAfter(steps),
    [Symbol.asyncDispose]: scope[Symbol.asyncDispose],
  };
});

describeSnapshotStoreConformance('Postgres server', async () => {
  const scope = fixtureScope();
  const { schema } = scope;
  const open = () =>
    PostgresSnapshotStore.open({ db: scope.connect(), schema, chunkBytes: 256 * 1024 });
  return {
    store: await open(),
    reopen: open,
    corrupt: async (snapshot) => {
      await sql`
        update ${sql.id(schema, 'snapshot_chunk')}
        set data = set_byte(data, 0, get_byte(data, 0) # 255)
        where seq = 0 and snapshot_id = (
          select id from ${sql.id(schema, 'snapshot')}
          where complete and index = ${snapshot.index} and term = ${snapshot.term}
        )
      `.execute(scope.connect());
    },
    [Symbol.asyncDispose]: scope[Symbol.asyncDispose],
  };
});

function entriesOf(from: number, to: number, term: number): LogEntry[] {
  const result: LogEntry[] = [];
  for (let index = from; index <= to; index++) {
    result.push({ index, term, type: 'command', data: new Uint8Array(64).fill(index % 251) });
  }
  return result;
}

describe('PostgresLogStore on a Postgres server', () => {
  // How long this takes is measured by `pnpm --filter @tsraft/pg-storage bench` (start over
  // 1,000,000 entries), not here: a timed test is flaky on a shared machine.
  it('starts a node with a million entries: load finds the last index, a page stops at maxBytes', async () => {
    await using scope = fixtureScope();
    const db = scope.connect();
    await PostgresLogStore.open({ db, schema: scope.schema });
    await sql`
      insert into ${sql.id(scope.schema, 'log_entry')} (index, term, type, data)
      select i, 1 + i / 100000, 'command', decode(repeat('ab', 32), 'hex')
      from generate_series(1, 1000000) as i
    `.execute(db);
    await sql`analyze ${sql.id(scope.schema, 'log_entry')}`.execute(db);

    const store = await PostgresLogStore.open({ db: scope.connect(), schema: scope.schema });
    const state = await store.load();
    const page = await store.entries(1, 1_000_001, { maxBytes: 64 * 1024 });

    expect(state.lastIndex).toBe(1_000_000);
    expect(page.length).toBe(Math.floor((64 * 1024) / (32 + 24)));
    expect(page.at(-1)?.index).toBe(page.length);
  });

  it('rejects with a StorageError an index stored beyond 2^53 - 1 (int8 as string or bigint)', async () => {
    await using scope = fixtureScope();
    const db = scope.connect();
    const store = await PostgresLogStore.open({ db, schema: scope.schema });
    await sql`update ${sql.id(scope.schema, 'log_meta')} set snapshot_index = 9007199254740993`.execute(
      db,
    );
    await expect(store.load()).rejects.toThrow(StorageError);
    // The same through a pool with pg's default int8 parsing (strings).
    await using plain: AnyKysely = new Kysely({
      dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: server.url, max: 1 }) }),
    });
    const viaStrings = await PostgresLogStore.open({ db: plain, schema: scope.schema });
    await expect(viaStrings.load()).rejects.toThrow(/"9007199254740993".*2\^53 - 1/);
  });

  it('refuses a database with synchronous_commit off unless allowed', async () => {
    await using scope = fixtureScope();
    const db = scope.connect();
    const database = new URL(server.url).pathname.slice(1);
    await sql`alter database ${sql.id(database)} set synchronous_commit = off`.execute(db);
    try {
      await using fresh = connect();
      await expect(PostgresLogStore.open({ db: fresh, schema: scope.schema })).rejects.toThrow(
        /synchronous_commit = off/,
      );
      await expect(
        PostgresLogStore.open({ db: fresh, schema: scope.schema, allowSynchronousCommitOff: true }),
      ).resolves.toBeInstanceOf(PostgresLogStore);
    } finally {
      await sql`alter database ${sql.id(database)} reset synchronous_commit`.execute(db);
    }
  });

  it('fails fast with a StorageError while Postgres is down, and loses nothing acknowledged', async () => {
    await using scope = fixtureScope();
    const store = await PostgresLogStore.open({ db: scope.connect(), schema: scope.schema });
    const acknowledged: HardState = { term: 3, votedFor: 'n2', commitIndex: 80 };
    await store.persist({ entries: entriesOf(1, 100, 3), hardState: acknowledged });
    const snapshots = await PostgresSnapshotStore.open({
      db: scope.connect(),
      schema: scope.schema,
    });
    const config = { voters: ['n1', 'n2', 'n3'] };
    async function* bytes(): AsyncIterable<Uint8Array> {
      yield new Uint8Array(100_000).fill(7);
    }
    const savedSnapshot = await snapshots.save({ index: 50, term: 3, config }, bytes());

    await server.kill();
    const failure = await store
      .persist({
        entries: entriesOf(101, 110, 4),
        hardState: { term: 4, votedFor: 'n1', commitIndex: 100 },
      })
      .catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(StorageError);
    const cause = (failure as StorageError).cause;
    expect(cause).toBeInstanceOf(Error);
    // It failed on the dead server, not at the pool's query timeout (which would mean it hung).
    expect((cause as Error).message, 'the persist must fail, not hang').not.toMatch(/timeout/i);
    await expect(store.load()).rejects.toThrow(StorageError);
    await expect(snapshots.latest()).rejects.toThrow(StorageError);

    await server.restart();
    // The same store instances work again by themselves: the pool reconnects.
    expect(await store.load()).toEqual({
      hardState: acknowledged,
      snapshot: { index: 0, term: 0 },
      lastIndex: 100,
    });
    expect(await store.entries(1, 101)).toEqual(entriesOf(1, 100, 3));
    await store.persist({
      entries: entriesOf(101, 110, 4),
      hardState: { term: 4, votedFor: 'n1', commitIndex: 100 },
    });
    expect(await snapshots.latest()).toEqual(savedSnapshot);
    let read = 0;
    for await (const chunk of snapshots.read(savedSnapshot)) read += chunk.byteLength;
    expect(read).toBe(100_000);

    // And a store opened afresh, as after a node restart, sees the same.
    const reopened = await PostgresLogStore.open({ db: scope.connect(), schema: scope.schema });
    expect(await reopened.load()).toEqual({
      hardState: { term: 4, votedFor: 'n1', commitIndex: 100 },
      snapshot: { index: 0, term: 0 },
      lastIndex: 110,
    });
  });
});

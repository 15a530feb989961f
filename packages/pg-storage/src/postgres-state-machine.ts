import type {
  AppliedEntry,
  ClientSession,
  CommandResult,
  LogPosition,
  ProposeOptions,
  RaftNode,
  StateMachine,
} from '@tsraft/core';
import { commandDigest, StorageError, sessionConflictResult } from '@tsraft/core';
import { sql } from 'kysely';
import type { AnyKysely, AnyTransaction } from './any-kysely.ts';
import { BatchSessions, type ResultSlot, type SessionRetention } from './batch-sessions.ts';
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
import { type CommittedBatch, CommittedSessions } from './committed-sessions.ts';
import { toSafeInteger } from './int8.ts';
import { migrateRaftSchema } from './migrations.ts';
import { type RaftFunctions, type RaftTables, raftFunctions, raftTables } from './raft-tables.ts';
import { assertReplicable, type ReplicatedTable, replicatedTables } from './replicated-tables.ts';
import { DEFAULT_SCHEMA, validateSchemaName } from './schema-name.ts';
import { exportStateSnapshot, type StateSnapshotScope } from './state-snapshot-export.ts';
import { restoreStateSnapshot } from './state-snapshot-restore.ts';
import { runStorageOperation } from './storage-failure.ts';
import { restoreStoredSnapshot } from './stored-snapshot-restore.ts';
import { storedSnapshotSource } from './stored-snapshot-source.ts';

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
  /**
   * What to do when the replicated tables hold rows but this node has applied nothing of a Raft
   * log (rows from before tsraft, which would stay on this node only): `refuse` (default) rejects
   * with {@link ExistingRowsError}, which says how to seed a cluster from them; `accept` opens
   * anyway (tests and benchmarks that fill tables directly).
   */
  readonly existingRows?: 'refuse' | 'accept';
  /** Aborts opening (the migration). */
  readonly signal?: AbortSignal;
}

/**
 * The replicated tables of a node that has applied nothing of a Raft log hold rows: no log
 * explains them, so they would stay on this node only and its snapshots would differ from the
 * others' of the same index. Nothing was changed.
 */
export class ExistingRowsError extends Error {
  override name = 'ExistingRowsError';
  /** The replicated tables that hold rows. */
  readonly tables: readonly string[];

  constructor(tables: readonly string[], schema: string) {
    const list = tables.join(', ');
    super(
      `the replicated tables ${list} hold rows, but this node has applied nothing of a Raft log: ` +
        'they would stay on this node only. To start a new cluster from them, seed it from this ' +
        `node: tsraft-snapshot seed --db <this database> --schema ${schema} --tables ${tables.join(',')} ` +
        '--voters <the node ids> --out seed.tsnap, then restore seed.tsnap into every other node ' +
        '(see the runbook of @tsraft/log-compaction). To join an existing cluster instead, empty ' +
        'these tables first.',
    );
    this.tables = tables;
  }
}

/** A command entry, as far as executing it needs to know. */
type NamedCommandEntry = AppliedEntry<{ readonly name: string }> & { kind: 'command' };

/** A command waiting in a run for the batch handler of its definition. */
interface RunMember {
  /** Its position in the batch. */
  readonly position: number;
  readonly entry: NamedCommandEntry;
  readonly definition: AnyCommandDefinition;
  readonly input: unknown;
  readonly slot: ResultSlot;
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
/** Sessions of this many recently active clients are kept in memory (see CommittedSessions). */
const KNOWN_SESSIONS = 10_000;

/** What a batch's transaction produced: each entry's result, and what it committed. */
interface BatchOutcome {
  readonly results: (CommandResult<unknown> | undefined)[];
  readonly committed: CommittedBatch;
}

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
 *   expired one an error named `SessionExpiredError`, and a different command that reuses a
 *   recorded stamp an error `SessionConflictError` (code `CONFLICT`; the digest of each command
 *   is stored with its result).
 * - `exportSnapshot` reads one consistent view (REPEATABLE READ, read only) and streams it page by
 *   page; `restoreSnapshot` replaces the tables, sessions and position in one transaction (a
 *   snapshot the stream says is stored in this database, by `PostgresSnapshotStore.read` on the
 *   same Kysely instance, is read from its chunk rows inside Postgres instead of the stream). A
 *   damaged or foreign snapshot rejects with `CorruptSnapshotError` and changes nothing.
 */
export class PostgresStateMachine<C extends CommandMap>
  implements StateMachine<CommandOf<C>, ResultOf<C>>
{
  readonly #db: AnyKysely;
  readonly #tables: RaftTables;
  readonly #functions: RaftFunctions;
  readonly #commands: C;
  /** Replicated tables as declared (`schema.table`) and as SQL identifiers. */
  readonly #appTables: readonly ReplicatedTable[];
  readonly #retention: SessionRetention;
  readonly #savepoints: SavepointMode;
  readonly #constraintViolationsReject: boolean;
  /** What `exportSnapshot` and `restoreSnapshot` work on. */
  readonly #snapshotScope: StateSnapshotScope;
  /** What this instance committed last: lets a batch skip reading the position and sessions. */
  readonly #known = new CommittedSessions(KNOWN_SESSIONS);

  private constructor(options: PostgresStateMachineOptions<C>, schema: string) {
    this.#db = options.db;
    this.#tables = raftTables(schema);
    this.#functions = raftFunctions(schema);
    this.#commands = options.commands;
    this.#appTables = replicatedTables(options.tables);
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
    const exportConnections = options.exportConnections ?? 1;
    if (!Number.isSafeInteger(exportConnections) || exportConnections < 1) {
      throw new RangeError('exportConnections must be a positive integer');
    }
    this.#snapshotScope = {
      db: this.#db,
      tables: this.#tables,
      schema,
      appTables: this.#appTables,
      pageRows: options.snapshotPageRows ?? 1_000,
      exportConnections,
    };
  }

  /** See {@link createPostgresStateMachine}. */
  static async open<C extends CommandMap>(
    options: PostgresStateMachineOptions<C>,
  ): Promise<PostgresStateMachine<C>> {
    const schema = validateSchemaName(options.schema ?? DEFAULT_SCHEMA);
    const { db, signal } = options;
    await migrateRaftSchema({ db, schema, ...(signal ? { signal } : {}) });
    const machine = new PostgresStateMachine(options, schema);
    await runStorageOperation('checking the replicated tables', signal, () =>
      assertReplicable(db, machine.#appTables),
    );
    if (options.existingRows !== 'accept') {
      const withRows = await runStorageOperation('checking for rows no log explains', signal, () =>
        machine.#rowsWithoutLog(),
      );
      if (withRows.length > 0) throw new ExistingRowsError(withRows, schema);
    }
    return machine;
  }

  /** The replicated tables that hold rows while nothing is applied (none once something is). */
  async #rowsWithoutLog(): Promise<string[]> {
    const { rows } = await sql<{ index: unknown }>`
      select index from ${this.#tables.appliedState}
    `.execute(this.#db);
    if (toSafeInteger(rows[0]?.index, 'applied_state.index') > 0) return [];
    const found: string[] = [];
    for (const table of this.#appTables) {
      const probe = await sql`select 1 from ${table.id} limit 1`.execute(this.#db);
      if (probe.rows.length > 0) found.push(table.name);
    }
    return found;
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
      const token = this.#known.begin();
      try {
        const from = savepointFrom;
        const outcome = await this.#db
          .transaction()
          .execute((trx) => this.#applyBatch(trx, entries, prepared, from, signal));
        this.#known.committed(token, outcome.committed);
        return outcome.results as (CommandResult<ResultOf<C>> | undefined)[];
      } catch (error) {
        if (error instanceof OptimisticRejection && error.position < savepointFrom) {
          // Rolled back: run the batch again, isolating each command from the rejected one on.
          savepointFrom = error.position;
          continue;
        }
        // Whether it committed may be unknown (a lost connection): read Postgres next time.
        this.#known.forget();
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

  exportSnapshot(options?: {
    signal?: AbortSignal;
  }): Promise<{ position: LogPosition; chunks: AsyncIterable<Uint8Array> }> {
    return exportStateSnapshot(this.#snapshotScope, options);
  }

  async restoreSnapshot(
    position: LogPosition,
    chunks: AsyncIterable<Uint8Array>,
    options?: { signal?: AbortSignal },
  ): Promise<void> {
    this.#known.forget();
    try {
      // A snapshot stored in this database is restored there, without reading it through here.
      const stored = storedSnapshotSource(chunks);
      const restored =
        stored !== undefined &&
        stored.db === this.#db &&
        (await restoreStoredSnapshot(this.#snapshotScope, position, stored, options?.signal));
      if (!restored) await restoreStateSnapshot(this.#snapshotScope, position, chunks, options);
    } finally {
      this.#known.forget();
    }
  }

  async #applyBatch(
    trx: AnyTransaction,
    entries: readonly AppliedEntry<CommandOf<C>>[],
    prepared: readonly (Prepared | undefined)[],
    savepointFrom: number,
    signal: AbortSignal | undefined,
  ): Promise<BatchOutcome> {
    const first = entries[0] as AppliedEntry<CommandOf<C>>;
    const batchSessions = entries.flatMap((entry) =>
      entry.kind === 'command' && entry.session !== undefined ? [entry.session] : [],
    );
    const { startNow, sessions } =
      this.#knownStart(first.index, batchSessions) ??
      (await this.#loadStart(trx, first.index, batchSessions));
    let now = startNow;
    const results: (ResultSlot | undefined)[] = [];
    /** Consecutive commands of one name with a batch handler, waiting to run together. */
    let run: RunMember[] = [];
    const flush = async (): Promise<void> => {
      const members = run;
      run = [];
      await this.#executeRun(trx, members);
    };
    for (const [i, entry] of entries.entries()) {
      signal?.throwIfAborted();
      if (entry.kind !== 'command') {
        results.push(undefined);
        continue;
      }
      // The session clock never goes back, even if a new leader's clock does.
      now = Math.max(now, entry.timestamp);
      const session =
        entry.session === undefined
          ? undefined
          : { ...entry.session, digest: commandDigest(entry.command) };
      if (session !== undefined) {
        const check = sessions.check(session, now);
        if (check.kind === 'duplicate') {
          results.push(check.result);
          continue;
        }
        if (check.kind === 'conflict') {
          results.push({ result: sessionConflictResult(session) });
          continue;
        }
        if (check.kind === 'expired') {
          results.push({
            result: {
              status: 'error',
              error: {
                name: 'SessionExpiredError',
                message: `command ${session.seq} of client ${session.clientId} belongs to an expired session or is too old to answer; start a new session`,
              },
            },
          });
          continue;
        }
      }
      const slot: ResultSlot = {
        result: undefined,
        ...(session ? { digest: session.digest } : {}),
      };
      // Recorded before it runs: a retry later in the batch answers from this slot.
      if (session !== undefined) sessions.record(session, slot, now);
      results.push(slot);
      const command = prepared[i] as Prepared;
      if (command.ok && command.definition.batchHandler !== undefined && i < savepointFrom) {
        if (run[0] !== undefined && run[0].definition !== command.definition) await flush();
        run.push({
          position: i,
          entry,
          definition: command.definition,
          input: command.input,
          slot,
        });
        continue;
      }
      if (!command.ok) {
        // Never executed: it changes nothing, so the run goes on past it.
        slot.result = { status: 'error', error: command.error };
        continue;
      }
      await flush();
      slot.result = await this.#execute(trx, entry, command, i >= savepointFrom, i);
    }
    await flush();
    const sweep = Math.floor(now / SWEEP_EVERY_MS) > Math.floor(startNow / SWEEP_EVERY_MS);
    const last = entries.at(-1) as AppliedEntry<CommandOf<C>>;
    // The position moves only from the one this batch assumed (read under lock, or known from
    // this instance's last commit); otherwise nothing was applied and the batch rolls back.
    const moved = await sessions.save(
      trx,
      this.#functions.finishBatch,
      first.index - 1,
      { index: last.index, term: last.term, now },
      sweep,
    );
    if (!moved) throw notFollowing(first.index, await this.#appliedIndex(trx));
    return {
      results: results.map((slot) => slot?.result),
      committed: {
        index: last.index,
        now,
        sessions: sessions.stored(),
        ...(sweep ? { sweptBefore: now - this.#retention.forgetAfterMs } : {}),
      },
    };
  }

  /** The start of a batch from what this instance committed last, when that is enough. */
  #knownStart(
    firstIndex: number,
    batchSessions: readonly ClientSession[],
  ): { startNow: number; sessions: BatchSessions } | undefined {
    const known = this.#known.lookup(firstIndex, batchSessions);
    if (known === undefined) return undefined;
    return {
      startNow: known.now,
      sessions: BatchSessions.fromStored(this.#tables, this.#retention, known.sessions),
    };
  }

  /**
   * The start of a batch read from Postgres in one round trip: locks and reads the applied
   * position (which the batch must follow) and loads the batch's sessions.
   */
  async #loadStart(
    trx: AnyTransaction,
    firstIndex: number,
    batchSessions: readonly ClientSession[],
  ): Promise<{ startNow: number; sessions: BatchSessions }> {
    const t = this.#tables;
    const { rows } = await sql<Record<string, unknown>>`
      select index, now ${BatchSessions.loadColumns(t, batchSessions)}
      from ${t.appliedState} for update
    `.execute(trx);
    const row = rows[0];
    if (row === undefined) throw new StorageError('the applied_state row is missing');
    const appliedIndex = toSafeInteger(row.index, 'applied_state.index');
    if (firstIndex !== appliedIndex + 1) throw notFollowing(firstIndex, appliedIndex);
    return {
      startNow: toSafeInteger(row.now, 'applied_state.now'),
      sessions: BatchSessions.fromLoaded(t, this.#retention, row),
    };
  }

  /** The applied index as `trx` sees it. */
  async #appliedIndex(trx: AnyTransaction): Promise<number> {
    const { rows } = await sql<{ index: unknown }>`
      select index from ${this.#tables.appliedState}
    `.execute(trx);
    return toSafeInteger(rows[0]?.index, 'applied_state.index');
  }

  /**
   * Runs consecutive commands of one name: one alone through its `handler`, two or more at once
   * through its `batchHandler`, which must answer one result per command. A domain error of the
   * batch handler rolls the whole batch back (an {@link OptimisticRejection} at the run's first
   * command), so that the run is executed again command by command; any other error is fatal.
   */
  async #executeRun(trx: AnyTransaction, run: readonly RunMember[]): Promise<void> {
    const first = run[0];
    if (first === undefined) return;
    if (run.length === 1) {
      first.slot.result = await this.#execute(
        trx,
        first.entry,
        { ok: true, definition: first.definition, input: first.input },
        false,
        first.position,
      );
      return;
    }
    const batchHandler = first.definition.batchHandler as NonNullable<
      AnyCommandDefinition['batchHandler']
    >;
    let values: readonly unknown[];
    try {
      values = await batchHandler(
        trx,
        run.map((member) => ({ input: member.input, ctx: commandContext(member.entry) })),
      );
    } catch (error) {
      if (this.#rejection(error) !== undefined) throw new OptimisticRejection(first.position);
      throw new HandlerFailure(first.entry.command.name, first.entry.index, error);
    }
    if (!Array.isArray(values) || values.length !== run.length) {
      throw new HandlerFailure(
        first.entry.command.name,
        first.entry.index,
        new TypeError(
          `the batch handler answered ${Array.isArray(values) ? values.length : 'no array of'} results for ${run.length} commands`,
        ),
      );
    }
    run.forEach((member, i) => {
      member.slot.result = { status: 'ok', value: values[i] };
    });
  }

  /** Runs one command's handler; with `savepoint`, its domain error undoes only its own work. */
  async #execute(
    trx: AnyTransaction,
    entry: NamedCommandEntry,
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

/** A batch starting at `firstIndex` does not follow the applied position. */
function notFollowing(firstIndex: number, appliedIndex: number): RangeError {
  return new RangeError(
    `apply: entry ${firstIndex} does not follow the last applied entry ${appliedIndex}`,
  );
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

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

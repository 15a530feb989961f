import type {
  CompiledQuery,
  DatabaseConnection,
  Dialect,
  Driver,
  QueryResult,
  TransactionSettings,
} from 'kysely';

/** What a call of a crashed process gets: its connection is gone. */
class ConnectionKilledError extends Error {
  override name = 'ConnectionKilledError';
}

/**
 * One application process's connections to a database, through any Kysely dialect, that the
 * test can kill after a given number of steps (statements, `BEGIN` and `COMMIT` included), as
 * the storage conformance suite's `crashAfter` asks. The killed process's open transactions end
 * the way Postgres ends them when a client's connection drops: rolled back. The database itself
 * lives on; only this process's view of it dies.
 */
export class CrashingProcess {
  #stepsLeft: number | undefined;
  #crashed = false;
  /** The transactions open through this process: the inner connection and its driver. */
  readonly #open = new Map<DatabaseConnection, Driver>();

  /**
   * Kills the process right after `steps` more steps have taken effect in the database; 0 kills
   * it now (it must then have no transaction open).
   */
  crashAfter(steps: number): void {
    if (!Number.isSafeInteger(steps) || steps < 0) {
      throw new RangeError(`steps must be a non-negative integer, got ${steps}`);
    }
    if (steps === 0 && this.#open.size > 0) {
      throw new RangeError('cannot crash at once while a transaction is open; crash after a step');
    }
    this.#stepsLeft = steps;
    if (steps === 0) this.#crashed = true;
  }

  /** `inner`, with its connections belonging to this process. */
  dialect(inner: Dialect): Dialect {
    return {
      createDriver: () => new CrashingDriver(inner.createDriver(), this),
      createQueryCompiler: () => inner.createQueryCompiler(),
      createAdapter: () => inner.createAdapter(),
      createIntrospector: (db) => inner.createIntrospector(db),
    };
  }

  /** Throws once the process is dead: nothing reaches the database any more. */
  assertAlive(): void {
    if (this.#crashed) throw new ConnectionKilledError('the process crashed: connection lost');
  }

  transactionBegun(connection: DatabaseConnection, driver: Driver): void {
    this.#open.set(connection, driver);
  }

  transactionEnded(connection: DatabaseConnection): void {
    this.#open.delete(connection);
  }

  /**
   * Counts a step that has taken effect. When it is the last one, rolls back every transaction
   * the process left open and throws: the caller never learns the step's outcome.
   */
  async stepTaken(): Promise<void> {
    if (this.#stepsLeft === undefined || --this.#stepsLeft > 0) return;
    this.#crashed = true;
    const open = [...this.#open];
    this.#open.clear();
    for (const [connection, driver] of open) await driver.rollbackTransaction(connection);
    throw new ConnectionKilledError('the process crashed after a statement took effect');
  }
}

/** A connection of a {@link CrashingProcess}, wrapping the inner driver's own. */
class CrashingConnection implements DatabaseConnection {
  readonly inner: DatabaseConnection;
  readonly #process: CrashingProcess;

  constructor(inner: DatabaseConnection, process: CrashingProcess) {
    this.inner = inner;
    this.#process = process;
  }

  async executeQuery<R>(compiledQuery: CompiledQuery): Promise<QueryResult<R>> {
    this.#process.assertAlive();
    const result = await this.inner.executeQuery<R>(compiledQuery);
    await this.#process.stepTaken();
    return result;
  }

  streamQuery<R>(): AsyncIterableIterator<QueryResult<R>> {
    throw new Error('a crashing connection does not stream');
  }
}

class CrashingDriver implements Driver {
  readonly #inner: Driver;
  readonly #process: CrashingProcess;

  constructor(inner: Driver, process: CrashingProcess) {
    this.#inner = inner;
    this.#process = process;
  }

  init(): Promise<void> {
    return this.#inner.init();
  }

  async acquireConnection(): Promise<DatabaseConnection> {
    this.#process.assertAlive();
    return new CrashingConnection(await this.#inner.acquireConnection(), this.#process);
  }

  async beginTransaction(
    connection: DatabaseConnection,
    settings: TransactionSettings,
  ): Promise<void> {
    this.#process.assertAlive();
    const inner = unwrap(connection);
    await this.#inner.beginTransaction(inner, settings);
    this.#process.transactionBegun(inner, this.#inner);
    await this.#process.stepTaken();
  }

  async commitTransaction(connection: DatabaseConnection): Promise<void> {
    this.#process.assertAlive();
    const inner = unwrap(connection);
    this.#process.transactionEnded(inner);
    await this.#inner.commitTransaction(inner);
    await this.#process.stepTaken();
  }

  async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    const inner = unwrap(connection);
    // After a crash the database has rolled the transaction back already.
    try {
      this.#process.assertAlive();
    } catch {
      return;
    }
    this.#process.transactionEnded(inner);
    await this.#inner.rollbackTransaction(inner);
  }

  releaseConnection(connection: DatabaseConnection): Promise<void> {
    return this.#inner.releaseConnection(unwrap(connection));
  }

  /** The database outlives the process: destroying its Kysely leaves the inner driver alone. */
  async destroy(): Promise<void> {}
}

function unwrap(connection: DatabaseConnection): DatabaseConnection {
  if (!(connection instanceof CrashingConnection)) {
    throw new TypeError('not a connection of a crashing process');
  }
  return connection.inner;
}

/** The part of a `pg` client this module needs: its 'error' event. */
export interface ErrorEmitter {
  on(event: 'error', listener: (error: Error) => void): unknown;
}

/** The part of a `pg` Pool that {@link guardPoolErrors} needs (typed structurally: no `pg` import). */
export interface PoolWithClientEvents {
  on(event: 'error', listener: (error: Error) => void): unknown;
  on(event: 'connect', listener: (client: ErrorEmitter) => void): unknown;
}

/**
 * Keeps a lost Postgres from ending the process: listens to the 'error' event of the pool (an
 * idle connection lost) and of every client it connects, also while the client is checked out.
 * pg-pool listens on idle clients only, and a checked-out client whose server goes away (inside
 * a transaction, during a snapshot export, or waiting on a lock) emits 'error' with nobody
 * listening: Node.js then ends the process. Guarded, the call under way, or the next one on that
 * client, fails instead, the stores and the state machine report it as a `StorageError`, and the
 * node stops on it (a `RaftSupervisor` starts it again once Postgres is back). Call it once,
 * right after creating the pool. `onError` sees each error (default: ignores them; the failed
 * call reports the same loss).
 */
export function guardPoolErrors(
  pool: PoolWithClientEvents,
  onError: (error: Error) => void = () => {},
): void {
  pool.on('error', (error) => onError(error));
  pool.on('connect', (client) => {
    client.on('error', (error) => onError(error));
  });
}

import type { ClusterConfig } from '../configuration.ts';
import { CorruptSnapshotError, StorageError } from '../errors.ts';
import type { HardState } from '../hard-state.ts';
import type { LogEntry, LogPosition } from '../log-entry.ts';
import type { LogStore } from '../log-store.ts';
import type { Logger } from '../logger.ts';
import type { NodeIdentity } from '../node-identity.ts';
import type { SnapshotStore, StoredSnapshot } from '../snapshot-store.ts';
import type { StateMachine } from '../state-machine.ts';

/** Bytes of entries read per `LogStore.entries` call while loading the log. */
const LOAD_PAGE_BYTES = 4 * 1024 * 1024;

/** The durable state a node restarts from, made consistent across its stores. */
export interface RecoveredNodeState {
  readonly hardState: HardState;
  /** Position the log starts after. */
  readonly snapshot: LogPosition;
  /** Every entry after `snapshot`. */
  readonly entries: LogEntry[];
  /** Index the state machine has applied. */
  readonly applied: number;
  /** Configuration as of the snapshot, or the bootstrap configuration. */
  readonly config: ClusterConfig;
  /** The node identity the log store holds; undefined in a store never given one. */
  readonly identity: NodeIdentity | undefined;
}

/**
 * Reads a node's durable state from its stores alone, repairing what a crash in the middle of
 * installing a snapshot can leave behind. The node installs a received snapshot in this order:
 * save it to the snapshot store, restore the state machine, then record it in the log store. So
 * a snapshot store ahead of the log store's start means the crash came before the log store
 * recorded it: the state machine is restored from it first if it is behind it (the crash came
 * before the restore), and then the log store records it (it covers committed entries only, so
 * nothing committed is lost). The same holds when the log kept entries behind its latest
 * snapshot (`retainEntries`), and the log then starts at the snapshot, keeping the entries after
 * it. The log store changes only once the state machine holds the snapshot: one the state
 * machine refuses leaves the log as it was (see {@link restoreFromSnapshot}).
 * Failures reject with {@link StorageError}, its `cause` the store's error.
 */
export async function recoverNodeState<Command, Result>(options: {
  logStore: LogStore;
  stateMachine: StateMachine<Command, Result>;
  snapshotStore: SnapshotStore;
  bootstrapConfig: ClusterConfig;
  logger: Logger;
  signal?: AbortSignal | undefined;
}): Promise<RecoveredNodeState> {
  const { logStore, stateMachine, snapshotStore, logger, signal } = options;
  let state = await storage('load the log store', () => logStore.load({ signal }));
  const latest = await storage('read the latest snapshot', () => snapshotStore.latest({ signal }));
  let applied = await storage('read the applied position', () =>
    stateMachine.lastApplied({ signal }),
  );
  if (latest !== undefined && latest.index > state.snapshot.index) {
    if (applied.index < latest.index) {
      logger.warn(
        { applied: applied.index, snapshot: latest.index },
        'the state machine is behind the latest snapshot (a crash during its install): restoring it',
      );
      applied = await restoreFromSnapshot(stateMachine, snapshotStore, latest, signal);
    }
    const retained =
      state.lastIndex >= latest.index &&
      (
        await storage('read the log', () =>
          logStore.entries(latest.index, latest.index + 1, { signal }),
        )
      )[0]?.term === latest.term;
    if (retained) {
      // Entries kept behind the snapshot for slow followers (`retainEntries`): the log now
      // starts at the snapshot, so that its configuration is the log's base.
      logger.info(
        { snapshot: latest.index, logStart: state.snapshot.index },
        'the log starts before the latest snapshot (a retained tail): it starts at the snapshot now',
      );
    } else {
      logger.warn(
        { snapshot: latest.index, logStart: state.snapshot.index },
        'the log store does not record the latest snapshot (a crash during its install): recording it',
      );
    }
    const position = { index: latest.index, term: latest.term };
    await storage('record the snapshot in the log store', () =>
      logStore.persist({ snapshot: position }, { signal }),
    );
    state = await storage('load the log store', () => logStore.load({ signal }));
  }

  if (applied.index < state.snapshot.index) {
    if (latest === undefined || latest.index !== state.snapshot.index) {
      throw new StorageError(
        `the log starts after index ${state.snapshot.index} and the state machine applied only ${applied.index}, but no snapshot at ${state.snapshot.index} is stored`,
      );
    }
    logger.warn(
      { applied: applied.index, snapshot: latest.index },
      'the state machine is behind the log start: restoring it from the latest snapshot',
    );
    applied = await restoreFromSnapshot(stateMachine, snapshotStore, latest, signal);
  }

  const entries: LogEntry[] = [];
  let next = state.snapshot.index + 1;
  while (next <= state.lastIndex) {
    const from = next;
    const page = await storage('read the log', () =>
      logStore.entries(from, state.lastIndex + 1, { maxBytes: LOAD_PAGE_BYTES, signal }),
    );
    if (page.length === 0) throw new StorageError(`the log store returned no entry at ${from}`);
    for (const entry of page) entries.push(entry);
    next += page.length;
  }

  const config =
    latest !== undefined && latest.index === state.snapshot.index
      ? latest.config
      : options.bootstrapConfig;
  return {
    hardState: state.hardState,
    snapshot: state.snapshot,
    entries,
    applied: Math.max(applied.index, state.snapshot.index),
    config,
    identity: state.identity,
  };
}

/**
 * Restores `stateMachine` from the stored snapshot `snapshot` and resolves with its position.
 * A state machine that refuses it (`CorruptSnapshotError`: a foreign table set during an upgrade,
 * say) rejects with a {@link StorageError} that says so and what to do; the caller then leaves
 * the log store as it was. Other failures reject as {@link storage} says.
 */
export async function restoreFromSnapshot<Command, Result>(
  stateMachine: StateMachine<Command, Result>,
  store: SnapshotStore,
  snapshot: StoredSnapshot,
  signal: AbortSignal | undefined,
): Promise<LogPosition> {
  const position = { index: snapshot.index, term: snapshot.term };
  try {
    await stateMachine.restoreSnapshot(position, store.read(snapshot, { signal }), { signal });
  } catch (error) {
    if (error instanceof CorruptSnapshotError) {
      throw new StorageError(
        `the state machine refused the snapshot at ${snapshot.index}/${snapshot.term}: ${error.message}. The log store was left as it was, so nothing is lost, but this node cannot catch up without that snapshot: make its state machine accept the cluster's state (for example, finish the upgrade that changed the replicated tables) and start it again, or remove it from the cluster`,
        { cause: error },
      );
    }
    if (error instanceof StorageError) throw error;
    throw new StorageError('storage failure: could not restore the state machine from a snapshot', {
      cause: error,
    });
  }
  return position;
}

/** Runs a storage call, wrapping its failure in a {@link StorageError} that says what failed. */
export async function storage<T>(what: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    throw storageFailure(what, error);
  }
}

/** The failure of a storage call to `what`: `error` itself if it is a {@link StorageError}. */
export function storageFailure(what: string, error: unknown): StorageError {
  return error instanceof StorageError
    ? error
    : new StorageError(`storage failure: could not ${what}`, { cause: error });
}

import type { ClusterConfig } from '../configuration.ts';
import { StorageError } from '../errors.ts';
import type { HardState } from '../hard-state.ts';
import type { LogEntry, LogPosition } from '../log-entry.ts';
import type { LogStore } from '../log-store.ts';
import type { Logger } from '../logger.ts';
import type { SnapshotStore } from '../snapshot-store.ts';
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
}

/**
 * Reads a node's durable state from its stores alone, repairing what a crash in the middle of
 * installing a snapshot can leave behind. The node installs a received snapshot in this order:
 * save it to the snapshot store, restore the state machine, then record it in the log store. So:
 * - a snapshot store ahead of the log store's start means the crash came before the log store
 *   recorded it: record it now (it covers committed entries only, so nothing committed is lost);
 *   the same holds when the log kept entries behind its latest snapshot (`retainEntries`), and
 *   the log then starts at the snapshot, keeping the entries after it;
 * - a state machine behind the log's start means the crash came before the restore: restore it
 *   from the snapshot store now.
 * Failures reject with {@link StorageError}, its `cause` the store's error.
 */
export async function recoverNodeState<Command, Result>(options: {
  logStore: LogStore;
  stateMachine: StateMachine<Command, Result>;
  snapshotStore: SnapshotStore | undefined;
  bootstrapConfig: ClusterConfig;
  logger: Logger;
  signal?: AbortSignal | undefined;
}): Promise<RecoveredNodeState> {
  const { logStore, stateMachine, snapshotStore, logger, signal } = options;
  let state = await storage('load the log store', () => logStore.load({ signal }));
  const latest = await storage('read the latest snapshot', async () =>
    snapshotStore?.latest({ signal }),
  );
  if (latest !== undefined && latest.index > state.snapshot.index) {
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

  let applied = await storage('read the applied position', () =>
    stateMachine.lastApplied({ signal }),
  );
  if (applied.index < state.snapshot.index) {
    if (
      snapshotStore === undefined ||
      latest === undefined ||
      latest.index !== state.snapshot.index
    ) {
      throw new StorageError(
        `the log starts after index ${state.snapshot.index} and the state machine applied only ${applied.index}, but no snapshot at ${state.snapshot.index} is stored`,
      );
    }
    logger.warn(
      { applied: applied.index, snapshot: latest.index },
      'the state machine is behind the log start: restoring it from the latest snapshot',
    );
    const position = { index: latest.index, term: latest.term };
    await storage('restore the state machine', () =>
      stateMachine.restoreSnapshot(position, snapshotStore.read(latest, { signal }), { signal }),
    );
    applied = position;
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
  };
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

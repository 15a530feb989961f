import type { LogPosition } from './log-entry.ts';

/** Identifies a command for exactly-once execution (thesis 6.3): one client, increasing `seq`. */
export interface ClientSession {
  readonly clientId: string;
  readonly seq: number;
}

/** A committed entry as the state machine sees it. */
export type AppliedEntry<Command> =
  | {
      readonly kind: 'command';
      readonly index: number;
      readonly term: number;
      /** Leader-stamped wall-clock time (ms since epoch); the same on every node. */
      readonly timestamp: number;
      readonly command: Command;
      readonly session?: ClientSession;
    }
  | {
      /** A no-op or configuration entry: nothing to execute, but the applied index advances. */
      readonly kind: 'internal';
      readonly index: number;
      readonly term: number;
    };

/** Outcome of one command: its result, or a domain error the handler raised on purpose. */
export type CommandResult<Result> =
  | { readonly status: 'ok'; readonly value: Result }
  | {
      readonly status: 'error';
      readonly error: { readonly name: string; readonly message: string; readonly code?: string };
    };

/**
 * The application's replicated state. Every node applies the same committed entries in the same
 * order and must reach the same state, so `apply` must be deterministic: no local clock, no
 * randomness, no dependence on anything outside the entries and the state.
 *
 * Contract:
 * - `apply` executes a batch atomically together with recording the last entry's position as the
 *   last applied: after a crash either the whole batch is applied or none of it. It is called
 *   with contiguous entries following `lastApplied()`, one batch at a time.
 * - A command that carries a session already executed returns the recorded result instead of
 *   executing again (exactly-once, thesis 6.3); see `ClientSessions` in the core for a helper.
 * - `apply` returns one result per entry, in order (`undefined` for internal entries).
 * - A domain failure is a `CommandResult` with status `error`, identical on every node. A thrown
 *   error means the state machine itself failed: the node stops applying (fatal).
 */
export interface StateMachine<Command, Result> {
  /** Position of the last applied entry, as durable (0/0 for a new state machine). */
  lastApplied(options?: { signal?: AbortSignal }): Promise<LogPosition>;

  apply(
    entries: readonly AppliedEntry<Command>[],
    options?: { signal?: AbortSignal },
  ): Promise<(CommandResult<Result> | undefined)[]>;

  /**
   * Exports the state as of the current applied position, consistently, as a stream of chunks.
   * `apply` may run while the stream is read; the stream still shows the state at `position`.
   * A state that cannot be snapshotted is refused with `SnapshotExportRefusedError` (from this
   * call or from the stream): not fatal, the snapshot is not taken; any other error is.
   */
  exportSnapshot(options?: {
    signal?: AbortSignal;
  }): Promise<{ position: LogPosition; chunks: AsyncIterable<Uint8Array> }>;

  /** Replaces the whole state with a snapshot's, atomically; afterwards `lastApplied()` is `position`. */
  restoreSnapshot(
    position: LogPosition,
    chunks: AsyncIterable<Uint8Array>,
    options?: { signal?: AbortSignal },
  ): Promise<void>;
}

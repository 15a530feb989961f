import type { NodeId } from './log-entry.ts';

/**
 * Base of the errors tsraft's API raises. `retryable` says whether the same call may succeed if
 * repeated (possibly on another node); `cause` keeps the underlying error.
 */
export class RaftError extends Error {
  override name = 'RaftError';
  readonly retryable: boolean;
  constructor(message: string, options: { retryable: boolean; cause?: unknown }) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.retryable = options.retryable;
  }
}

/**
 * This node is not the leader. `leaderHint` is the leader it knows of, if any. Nothing was
 * proposed: a client may repeat the call on the leader, or, without a hint (no leader known
 * within `leaderWaitMs`, or the caller's signal aborted while the node waited for one; then
 * `cause` is the signal's reason), on another node, since this one may be cut off from the
 * majority.
 */
export class NotLeaderError extends RaftError {
  override name = 'NotLeaderError';
  readonly leaderHint: NodeId | null;
  constructor(leaderHint: NodeId | null, options?: { cause?: unknown }) {
    super(
      leaderHint === null
        ? 'this node is not the leader and knows of no leader yet; retry shortly'
        : `this node is not the leader; the leader is ${leaderHint}`,
      { retryable: true, cause: options?.cause },
    );
    this.leaderHint = leaderHint;
  }
}

/** The leader holds too many uncommitted bytes; slow down and retry. */
export class BackpressureError extends RaftError {
  override name = 'BackpressureError';
  constructor(message = 'too many uncommitted proposals; retry after a pause') {
    super(message, { retryable: true });
  }
}

/**
 * The proposal's entry was overwritten by a new leader, or the node lost leadership before the
 * entry was known to commit. The command did not take effect under this proposal; a retry with
 * the same client session is safe.
 */
export class ProposalDroppedError extends RaftError {
  override name = 'ProposalDroppedError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, { retryable: true, cause: options?.cause });
  }
}

/** A read could not be confirmed linearizable (no leader, or leadership lost); retry. */
export class ReadUnavailableError extends RaftError {
  override name = 'ReadUnavailableError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, { retryable: true, cause: options?.cause });
  }
}

/** The node was closed, or stopped after a fatal error (see `cause`). */
export class NodeClosedError extends RaftError {
  override name = 'NodeClosedError';
  constructor(message = 'the Raft node is closed', options?: { cause?: unknown }) {
    super(message, { retryable: false, cause: options?.cause });
  }
}

/**
 * The supervised node stopped on a fatal error and a new one is not running yet (see
 * `RaftSupervisor`); retry after a pause. `cause` is the fatal error (typically a
 * `StorageError`). A proposal that was in flight when the node stopped has an unknown outcome:
 * a retry with the same client session is safe.
 */
export class NodeRecoveringError extends RaftError {
  override name = 'NodeRecoveringError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, { retryable: true, cause: options?.cause });
  }
}

/** A storage call failed. Fatal to the node that saw it: it stops instead of guessing. */
export class StorageError extends RaftError {
  override name = 'StorageError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, { retryable: false, cause: options?.cause });
  }
}

/**
 * A snapshot is damaged: its bytes no longer match the size or SHA-256 recorded with them, or
 * they are not a state the state machine can restore (a truncated or foreign snapshot). Not
 * fatal: a node refuses such a snapshot when it receives one and changes nothing, and replaces
 * one it holds with a fresh snapshot; either way it reports it at `error` with an event.
 */
export class CorruptSnapshotError extends RaftError {
  override name = 'CorruptSnapshotError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, { retryable: false, cause: options?.cause });
  }
}

/**
 * The state machine refuses to export its state as a snapshot: the state holds something its
 * snapshot format cannot carry or a restore could not install (the message says what, and what
 * to do). Thrown by `StateMachine.exportSnapshot` (or by the chunks it returns). Not fatal: no
 * snapshot is taken, the log and the stored snapshots stay as they were, and the node goes on;
 * `takeSnapshot` rejects with this error (also when a store wrapped it as the `cause` of its own
 * error), which is logged at `error`. A later snapshot succeeds once the state is fixed.
 */
export class SnapshotExportRefusedError extends RaftError {
  override name = 'SnapshotExportRefusedError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, { retryable: false, cause: options?.cause });
  }
}

/** A command's handler rejected it on purpose; the same outcome was recorded on every node. */
export class CommandError extends RaftError {
  override name = 'CommandError';
  readonly code: string | undefined;
  readonly errorName: string;
  constructor(error: { name: string; message: string; code?: string }) {
    super(error.message, { retryable: false });
    this.errorName = error.name;
    this.code = error.code;
  }
}

/** The engine detected a broken Raft invariant (a bug, or storage that lost data). Fatal. */
export class InvariantViolationError extends RaftError {
  override name = 'InvariantViolationError';
  constructor(message: string) {
    super(message, { retryable: false });
  }
}

/**
 * A membership change is already under way (its configuration entry is not committed yet, or
 * the cluster is between C_old,new and C_new; Raft paper 6): retry once it is done.
 */
export class ConfigChangeInProgressError extends RaftError {
  override name = 'ConfigChangeInProgressError';
  constructor(message = 'another membership change is under way; retry once it completes') {
    super(message, { retryable: true });
  }
}

/**
 * A membership change or leadership transfer did not complete before its deadline, or the node
 * lost leadership before it could tell: the change may still take effect. `status()` (or the
 * admin status of any node) shows the configuration in effect; retrying the same change is safe.
 */
export class MembershipChangeTimeoutError extends RaftError {
  override name = 'MembershipChangeTimeoutError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, { retryable: true, cause: options?.cause });
  }
}

/**
 * A leadership transfer failed: the target did not take over within the transfer's timeout (an
 * election timeout by default), so the leader resumed (thesis 3.10). Retry, perhaps to another
 * target.
 */
export class LeadershipTransferError extends RaftError {
  override name = 'LeadershipTransferError';
  constructor(message: string, options?: { cause?: unknown; retryable?: boolean }) {
    super(message, { retryable: options?.retryable ?? true, cause: options?.cause });
  }
}

/**
 * A peer refused this node's credentials (for the tRPC transport: it answered 401). Almost
 * always a misconfiguration: the nodes were given different cluster secrets, or this node is not
 * in the peer's list of members. Transports throw it from `Transport.request`; the node logs it at
 * `warn` with what to do and emits `peer-unauthorized`.
 */
export class PeerAuthenticationError extends RaftError {
  override name = 'PeerAuthenticationError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, { retryable: false, cause: options?.cause });
  }
}

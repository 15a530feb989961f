import { TRPCError } from '@trpc/server';
import { type TRPC_ERROR_CODE_KEY, TRPC_ERROR_CODES_BY_KEY } from '@trpc/server/rpc';
import {
  BackpressureError,
  CommandError,
  ConfigChangeInProgressError,
  NodeClosedError,
  type NodeId,
  NodeRecoveringError,
  NotLeaderError,
  ProposalDroppedError,
  RaftError,
  ReadUnavailableError,
} from '@tsraft/core';

/**
 * Why a replicated mutation or a linearizable query failed, in Raft's terms:
 * - `not-leader`: this node is not the leader, and did not or could not forward (no leader known,
 *   forwarding off, or no quorum to elect one; also when the deadline passed or the request was
 *   aborted while it waited for a leader): nothing was proposed. Without `leaderHint`, this node
 *   may be cut off from the majority: `raftFailoverLink` moves on;
 * - `dropped`: a new leader overwrote the proposal's entry; it did not take effect;
 * - `unknown-outcome`: forwarding or the leader failed mid-way; the command may or may not apply;
 * - `read-unavailable`: a linearizable read could not be confirmed with a quorum (without
 *   `leaderHint`: no leader became known within `leaderWaitMs`; `raftFailoverLink` moves on);
 * - `closed`: this node is closed, or stopped after a fatal error: not retryable here, another
 *   node may serve (`tryAnotherNode`);
 * - `recovering`: this node is starting or restarting after a fatal error (`RaftSupervisor`), or
 *   the app has no node to serve with yet: retryable, and another node may serve meanwhile;
 * - `backpressure`: the leader holds too many uncommitted entries;
 * - `timeout`: the deadline passed or the request was aborted once the command was proposed or
 *   forwarded (or during a read); the command may still apply;
 * - `command`: the state machine's handler refused the command (a domain error, final);
 * - `change-in-progress`: another membership change is under way; retry once it is done;
 * - `internal`: the node failed (storage, invariant); not retryable.
 */
export type RaftErrorKind =
  | 'not-leader'
  | 'dropped'
  | 'unknown-outcome'
  | 'read-unavailable'
  | 'closed'
  | 'recovering'
  | 'backpressure'
  | 'timeout'
  | 'command'
  | 'change-in-progress'
  | 'internal';

/** What the plugin adds as `error.data.raft` to the errors it maps. */
export interface RaftErrorData {
  readonly kind: RaftErrorKind;
  /**
   * Whether the same call may succeed if repeated on this node (which may forward it). A mutation
   * repeated with the same client session (`raftSession`) applies at most once.
   */
  readonly retryable: boolean;
  /**
   * Set when this node cannot serve the call now (closed, restarting): repeat it on another node
   * of the cluster. `raftFailoverLink` moves on, and `raftSessionLink` retries.
   */
  readonly tryAnotherNode?: boolean;
  /** The leader this node knows of, or `null`; set when it may help to go to the leader. */
  readonly leaderHint: NodeId | null;
  /** For `command`: the handler's error name, e.g. `SessionExpiredError`. */
  readonly errorName?: string;
  /** For `command`: the handler's own error code, whether or not it is a tRPC code. */
  readonly commandCode?: string;
}

/** A `TRPCError` made by the plugin; the error formatter reads {@link raftData} into the shape. */
export class RaftTrpcError extends TRPCError {
  readonly raftData: RaftErrorData;
  constructor(options: {
    code: TRPC_ERROR_CODE_KEY;
    message: string;
    raft: RaftErrorData;
    cause: unknown;
  }) {
    super({ code: options.code, message: options.message, cause: options.cause });
    this.raftData = options.raft;
  }
}

/** Whether `code` is one of tRPC's error codes (a handler's own code may be anything). */
function isTrpcCode(code: string | undefined): code is TRPC_ERROR_CODE_KEY {
  return code !== undefined && Object.hasOwn(TRPC_ERROR_CODES_BY_KEY, code);
}

/**
 * Maps an error of `RaftNode.propose` or `RaftNode.read` to the `TRPCError` a client sees:
 *
 * | Error | tRPC code | `data.raft.kind` |
 * | --- | --- | --- |
 * | `NotLeaderError` | SERVICE_UNAVAILABLE | `not-leader` (with `leaderHint`) |
 * | `ProposalDroppedError` | SERVICE_UNAVAILABLE | `dropped` |
 * | `ReadUnavailableError` | SERVICE_UNAVAILABLE | `read-unavailable` |
 * | `NodeClosedError` | SERVICE_UNAVAILABLE | `closed` (not retryable here; `tryAnotherNode`) |
 * | `NodeRecoveringError` | SERVICE_UNAVAILABLE | `recovering` (retryable; `tryAnotherNode`) |
 * | another retryable `RaftError` | SERVICE_UNAVAILABLE | `unknown-outcome` |
 * | `BackpressureError` | TOO_MANY_REQUESTS | `backpressure` |
 * | `ConfigChangeInProgressError` | CONFLICT | `change-in-progress` |
 * | `CommandError` | its `code` if a tRPC code, else BAD_REQUEST | `command` |
 * | the deadline or the request's abort (`timedOut`) | TIMEOUT | `timeout` (the message states
 *   `deadline`, the deadline that passed, when given) |
 * | another `RaftError` | INTERNAL_SERVER_ERROR | `internal` |
 *
 * Returns `undefined` for anything else (not Raft's to map). `leaderHint` is the hint to give
 * when the error itself carries none (this node's current view of the leader).
 */
export function toRaftTrpcError(
  error: unknown,
  context: { leaderHint: NodeId | null; timedOut: boolean; deadline?: string },
): RaftTrpcError | undefined {
  if (error instanceof RaftTrpcError) return error;
  const unavailable = (kind: RaftErrorKind, leaderHint: NodeId | null): RaftTrpcError =>
    new RaftTrpcError({
      code: 'SERVICE_UNAVAILABLE',
      message: (error as Error).message,
      raft: { kind, retryable: true, leaderHint },
      cause: error,
    });
  if (error instanceof NotLeaderError) return unavailable('not-leader', error.leaderHint);
  if (error instanceof ProposalDroppedError) return unavailable('dropped', context.leaderHint);
  if (error instanceof ReadUnavailableError) {
    return unavailable('read-unavailable', context.leaderHint);
  }
  if (error instanceof NodeClosedError) {
    return new RaftTrpcError({
      code: 'SERVICE_UNAVAILABLE',
      message: `${error.message}; try another node of the cluster`,
      raft: { kind: 'closed', retryable: false, tryAnotherNode: true, leaderHint: null },
      cause: error,
    });
  }
  if (error instanceof NodeRecoveringError) {
    return new RaftTrpcError({
      code: 'SERVICE_UNAVAILABLE',
      message: error.message,
      raft: { kind: 'recovering', retryable: true, tryAnotherNode: true, leaderHint: null },
      cause: error,
    });
  }
  if (error instanceof BackpressureError) {
    return new RaftTrpcError({
      code: 'TOO_MANY_REQUESTS',
      message: error.message,
      raft: { kind: 'backpressure', retryable: true, leaderHint: context.leaderHint },
      cause: error,
    });
  }
  if (error instanceof ConfigChangeInProgressError) {
    return new RaftTrpcError({
      code: 'CONFLICT',
      message: error.message,
      raft: { kind: 'change-in-progress', retryable: true, leaderHint: context.leaderHint },
      cause: error,
    });
  }
  if (error instanceof CommandError) {
    return new RaftTrpcError({
      code: isTrpcCode(error.code) ? error.code : 'BAD_REQUEST',
      message: error.message,
      raft: {
        kind: 'command',
        retryable: false,
        leaderHint: null,
        errorName: error.errorName,
        ...(error.code === undefined ? {} : { commandCode: error.code }),
      },
      cause: error,
    });
  }
  if (context.timedOut) {
    return new RaftTrpcError({
      code: 'TIMEOUT',
      message: `${context.deadline === undefined ? 'the deadline passed or the request was aborted' : context.deadline}; the command may still apply`,
      raft: { kind: 'timeout', retryable: true, leaderHint: context.leaderHint },
      cause: error,
    });
  }
  if (error instanceof RaftError) {
    if (error.retryable) return unavailable('unknown-outcome', context.leaderHint);
    return new RaftTrpcError({
      code: 'INTERNAL_SERVER_ERROR',
      message: error.message,
      raft: { kind: 'internal', retryable: false, leaderHint: null },
      cause: error,
    });
  }
  return undefined;
}

import type { RaftErrorData } from './raft-trpc-error.ts';

/** What a client can tell about a failed call, whether or not the server mapped it. */
export interface RaftCallFailure {
  /** The tRPC code (`data.code`), or `undefined` when no answer came (network failure). */
  readonly code: string | undefined;
  /** The plugin's `data.raft`, when the server mapped the error. */
  readonly raft: RaftErrorData | undefined;
  /** Whether no tRPC error shape came back: the request or its answer was lost on the way. */
  readonly noAnswer: boolean;
}

/** Codes worth repeating a call for (possibly on another node), mapped by the plugin or not. */
const RETRYABLE_CODES: ReadonlySet<string> = new Set([
  'SERVICE_UNAVAILABLE',
  'TIMEOUT',
  'TOO_MANY_REQUESTS',
]);

/**
 * Reads a `TRPCClientError` (or anything else) as a {@link RaftCallFailure}. Structural: it reads
 * `error.shape` and `error.data` as the tRPC client sets them.
 */
export function raftCallFailure(error: unknown): RaftCallFailure {
  const { shape, data } = (error ?? {}) as { shape?: unknown; data?: unknown };
  const fields = (typeof data === 'object' && data !== null ? data : {}) as {
    code?: unknown;
    raft?: unknown;
  };
  return {
    code: typeof fields.code === 'string' ? fields.code : undefined,
    raft: isRaftErrorData(fields.raft) ? fields.raft : undefined,
    noAnswer: shape === undefined || shape === null,
  };
}

/**
 * The plugin's `error.data.raft` of a failed call (kind, retryable, leader hint), or `undefined`
 * when the error did not come from the plugin.
 */
export function raftErrorOf(error: unknown): RaftErrorData | undefined {
  return raftCallFailure(error).raft;
}

/**
 * Whether a call that failed this way may be repeated: no answer came, or the server says so
 * (`data.raft.retryable`, or `data.raft.tryAnotherNode`: on another node), or the code is SERVICE_UNAVAILABLE, TIMEOUT or TOO_MANY_REQUESTS.
 * Repeating a mutation is safe only with the same stamp (see `raftSessionLink`).
 */
export function isRetryable(failure: RaftCallFailure): boolean {
  if (failure.raft !== undefined) {
    return failure.raft.retryable || failure.raft.tryAnotherNode === true;
  }
  return failure.noAnswer || (failure.code !== undefined && RETRYABLE_CODES.has(failure.code));
}

function isRaftErrorData(value: unknown): value is RaftErrorData {
  if (typeof value !== 'object' || value === null) return false;
  const { kind, retryable } = value as { kind?: unknown; retryable?: unknown };
  return typeof kind === 'string' && typeof retryable === 'boolean';
}

import type { Operation, TRPCLink } from '@trpc/client';
import type { AnyTRPCRouter } from '@trpc/server';
import { observable, type Unsubscribable } from '@trpc/server/observable';
import type { ClientSession } from '@tsraft/core';
import { isRetryable, raftCallFailure } from './raft-client-error.ts';
import { RAFT_SESSION_FIELD } from './raft-session-field.ts';

/** Options of {@link raftSessionLink}. */
export interface RaftSessionLinkOptions {
  /**
   * This client's id in the state machine's client sessions. Default: a random UUID per link.
   * Two clients must never share one.
   */
  readonly clientId?: string;
  /** Attempts per call at most, the first included. Default 50. */
  readonly maxAttempts?: number;
  /** Time from a call's first attempt after which no retry starts. Default 30,000 ms. */
  readonly retryForMs?: number;
  /**
   * Pause before retry `attempt` (1 for the first retry). Default: exponential from 20 ms, capped
   * at 500 ms, with jitter.
   */
  readonly retryDelayMs?: (attempt: number) => number;
  /**
   * Which mutations to stamp (and therefore retry). Default: every mutation whose input is a
   * plain object without a `raftSession` of its own.
   */
  readonly stamp?: (op: Operation) => boolean;
  /** Retry queries too (they have no effect to repeat). Default true. */
  readonly retryQueries?: boolean;
}

const DEFAULT_MAX_ATTEMPTS = 50;
const DEFAULT_RETRY_FOR_MS = 30_000;

/**
 * Exactly-once mutations from a tRPC client (Raft thesis 6.3). Put it before the terminating
 * link (`raftFailoverLink` or `httpLink`):
 *
 * - stamps each mutation's input with `raftSession: { clientId, seq }`, `seq` increasing per
 *   call; the server's replicated procedures propose with that stamp as the client session;
 * - retries a stamped mutation **with the same stamp** when it failed in a way that may pass
 *   (leader change, no leader yet, dropped proposal, timeout, backpressure, no answer at all:
 *   see `isRetryable`), so a mutation whose first attempt did apply is answered from the
 *   session's record instead of applying twice;
 * - when the state machine answers `SessionExpiredError` to a first attempt (the session was
 *   idle too long), starts a new client id and sends the call again: a first attempt that is
 *   refused that way never executed.
 *
 * Unstamped mutations are passed through and never retried. The caller's `signal` stops retries.
 */
export function raftSessionLink<TRouter extends AnyTRPCRouter>(
  options: RaftSessionLinkOptions = {},
): TRPCLink<TRouter> {
  let clientId = options.clientId ?? globalThis.crypto.randomUUID();
  let seq = 0;
  const maxAttempts = options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
  const retryForMs = options.retryForMs ?? DEFAULT_RETRY_FOR_MS;
  const retryDelayMs = options.retryDelayMs ?? defaultRetryDelay;
  const shouldStamp = options.stamp ?? isStampable;
  const retryQueries = options.retryQueries ?? true;

  return () =>
    ({ op, next }) =>
      observable((observer) => {
        const stamped = op.type === 'mutation' && shouldStamp(op);
        const retries = stamped || (op.type === 'query' && retryQueries);
        const started = Date.now();
        let current = stamped ? withStamp(op, { clientId, seq: ++seq }) : op;
        let attempt = 0;
        let subscription: Unsubscribable | undefined;
        let timer: ReturnType<typeof setTimeout> | undefined;

        const send = (): void => {
          attempt++;
          subscription = next(current).subscribe({
            next: (envelope) => observer.next(envelope),
            complete: () => observer.complete(),
            error: (error) => {
              const failure = raftCallFailure(error);
              if (
                stamped &&
                attempt === 1 &&
                failure.raft?.kind === 'command' &&
                failure.raft.errorName === 'SessionExpiredError'
              ) {
                clientId = globalThis.crypto.randomUUID();
                current = withStamp(op, { clientId, seq: ++seq });
                send();
                return;
              }
              const again =
                retries &&
                isRetryable(failure) &&
                attempt < maxAttempts &&
                Date.now() - started < retryForMs &&
                op.signal?.aborted !== true;
              if (!again) {
                if (attempt > 1 && error instanceof Error) {
                  // The last attempt's message alone would state its own deadline, not the wait.
                  error.message = `${error.message} (gave up after ${attempt} attempts in ${Date.now() - started} ms)`;
                }
                observer.error(error);
                return;
              }
              timer = setTimeout(send, retryDelayMs(attempt));
            },
          });
        };
        send();
        return () => {
          clearTimeout(timer);
          subscription?.unsubscribe();
        };
      });
}

function isStampable(op: Operation): boolean {
  const input = op.input;
  if (typeof input !== 'object' || input === null || Array.isArray(input)) return false;
  const prototype = Object.getPrototypeOf(input);
  if (prototype !== Object.prototype && prototype !== null) return false;
  return !Object.hasOwn(input, RAFT_SESSION_FIELD);
}

function withStamp(op: Operation, session: ClientSession): Operation {
  return { ...op, input: { ...(op.input as object), [RAFT_SESSION_FIELD]: session } };
}

function defaultRetryDelay(attempt: number): number {
  const ceiling = Math.min(500, 20 * 2 ** (attempt - 1));
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

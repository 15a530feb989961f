import { TRPCError } from '@trpc/server';
import type { ClientSession } from '@tsraft/core';
import { RAFT_SESSION_FIELD } from './raft-session-field.ts';

/** Longest `clientId` a stamp may carry. */
const MAX_CLIENT_ID_LENGTH = 128;

/**
 * The stamp (`input.raftSession`) of a replicated procedure's raw input, checked: `clientId` 1
 * to 128 characters, `seq` a positive safe integer; `undefined` when the input has none. Fails
 * with BAD_REQUEST (nothing proposed) when the input is not an object or the stamp is malformed.
 * Plain checks rather than a schema: it runs on every request.
 */
export function stampOf(rawInput: unknown): ClientSession | undefined {
  if (typeof rawInput !== 'object' || rawInput === null || Array.isArray(rawInput)) {
    throw badStamp('the input of a replicated procedure must be an object');
  }
  const stamp: unknown = (rawInput as Record<string, unknown>)[RAFT_SESSION_FIELD];
  if (stamp === undefined) return undefined;
  const { clientId, seq } = (typeof stamp === 'object' && stamp !== null ? stamp : {}) as {
    clientId?: unknown;
    seq?: unknown;
  };
  if (
    typeof clientId !== 'string' ||
    clientId.length < 1 ||
    clientId.length > MAX_CLIENT_ID_LENGTH ||
    typeof seq !== 'number' ||
    !Number.isSafeInteger(seq) ||
    seq < 1
  ) {
    throw badStamp(
      `${RAFT_SESSION_FIELD} must be { clientId: 1 to ${MAX_CLIENT_ID_LENGTH} characters, seq: a positive safe integer }; nothing was proposed`,
    );
  }
  return { clientId, seq };
}

function badStamp(message: string): TRPCError {
  return new TRPCError({ code: 'BAD_REQUEST', message });
}

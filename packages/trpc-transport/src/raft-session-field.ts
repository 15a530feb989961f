import type { ClientSession } from '@tsraft/core';

/** The input field a replicated mutation reads its client session (its stamp) from. */
export const RAFT_SESSION_FIELD = 'raftSession';

/**
 * What every replicated mutation accepts beside its own input: the stamp that makes it
 * exactly-once (thesis 6.3). `raftSessionLink` sets it; without it the mutation still works, but
 * a retry may apply twice.
 *
 * A type literal, not an interface: tRPC chains further `.input()` parsers only onto inputs
 * assignable to `Record<string, unknown>`, which an interface is not.
 */
export type RaftSessionInput = {
  readonly raftSession?: ClientSession;
};

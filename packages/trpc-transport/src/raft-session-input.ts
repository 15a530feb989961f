import type { ClientSession } from '@tsraft/core';
import { z } from 'zod';

/** The input field a replicated mutation reads its client session (its stamp) from. */
export const RAFT_SESSION_FIELD = 'raftSession';

/**
 * What every replicated mutation accepts beside its own input: the stamp that makes it
 * exactly-once (thesis 6.3). {@link raftSessionLink} sets it; without it the mutation still
 * works, but a retry may apply twice.
 *
 * A type literal, not an interface: tRPC chains further `.input()` parsers only onto inputs
 * assignable to `Record<string, unknown>`, which an interface is not.
 */
export type RaftSessionInput = {
  readonly raftSession?: ClientSession;
};

/**
 * Checks the stamp (`seq` a positive safe integer, `clientId` 1 to 128 characters) and parses to
 * nothing: the stamp stays out of the parsed input, so a resolver may spread its input into a
 * command without carrying the stamp into the log. The middleware reads it from the raw input.
 */
export const raftSessionInput: z.ZodType<Record<never, never>, RaftSessionInput> = z
  .object({
    raftSession: z.object({ clientId: z.string().min(1).max(128), seq: z.int().min(1) }).optional(),
  })
  .transform(() => ({}));

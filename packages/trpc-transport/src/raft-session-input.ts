import { z } from 'zod';
import type { RaftSessionInput } from './raft-session-field.ts';

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

import type { KvCommand } from '@tsraft/core/testing';
import { z } from 'zod';

/** The KV state machine's commands as the benchmarks' apps validate them (no length limits). */
export const kvCommand: z.ZodType<KvCommand, KvCommand> = z.discriminatedUnion('op', [
  z.object({ op: z.literal('get'), key: z.string() }),
  z.object({ op: z.literal('put'), key: z.string(), value: z.string() }),
  z.object({ op: z.literal('append'), key: z.string(), value: z.string() }),
  z.object({
    op: z.literal('cas'),
    key: z.string(),
    expected: z.string().nullable(),
    value: z.string(),
  }),
]);

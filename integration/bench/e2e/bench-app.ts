/**
 * The application `bench:e2e` measures: a key/value table whose `put` upserts a 256-byte value,
 * served by a tRPC app. Two shapes of the same app:
 * - replicated: `put` is a typed command of `@tsraft/pg-storage`'s state machine, proposed through
 *   `createRaftProcedures` (a follower forwards it to the leader);
 * - direct: `put` runs the same upsert on one Postgres, no Raft (the cost of consensus).
 */
import {
  initTRPC,
  type TRPCBuiltRouter,
  type TRPCDefaultErrorShape,
  type TRPCMutationProcedure,
} from '@trpc/server';
import type { RaftNode } from '@tsraft/core';
import {
  type CommandDefinition,
  type CommandOf,
  defineCommand,
  type ResultMap,
  type ResultOf,
} from '@tsraft/pg-storage';
import {
  createRaftProcedures,
  type RaftAdminRecord,
  type RaftErrorShape,
  type RaftSessionInput,
} from '@tsraft/trpc-transport';
import { type Kysely, sql, type Transaction } from 'kysely';
import { z } from 'zod';

/** The application's table. */
export interface BenchDatabase {
  kv: { key: string; value: string };
}

/** The replicated tables of the state machine. */
export const BENCH_TABLES: readonly string[] = ['kv'];

const putInput: z.ZodObject<{ key: z.ZodString; value: z.ZodString }> = z.object({
  key: z.string().min(1).max(64),
  value: z.string().max(1024),
});

/** What a `put` answers. */
type PutResult = { readonly ok: true };

/** The one upsert both shapes run. */
function upsert(db: Kysely<BenchDatabase>, input: z.output<typeof putInput>): Promise<unknown> {
  return db
    .insertInto('kv')
    .values(input)
    .onConflict((oc) => oc.column('key').doUpdateSet({ value: input.value }))
    .execute();
}

/** The commands of the replicated shape. */
export type BenchCommands = {
  put: CommandDefinition<BenchDatabase, typeof putInput, PutResult>;
};

/** The state machine's commands. */
export const benchCommands: BenchCommands = {
  put: defineCommand({
    input: putInput,
    handler: async (trx: Transaction<BenchDatabase>, input): Promise<PutResult> => {
      await upsert(trx, input);
      return { ok: true };
    },
    // A run of puts as one upsert; the last put of a key wins, as one by one.
    batchHandler: async (trx: Transaction<BenchDatabase>, commands): Promise<PutResult[]> => {
      const last = new Map(commands.map(({ input }) => [input.key, input.value]));
      await sql`
        insert into kv (key, value)
        select * from unnest(${[...last.keys()]}::text[], ${[...last.values()]}::text[])
        on conflict (key) do update set value = excluded.value
      `.execute(trx);
      return commands.map(() => ({ ok: true }));
    },
  }),
};

/** Creates the application's table (idempotent). */
export async function createBenchTables(db: Kysely<BenchDatabase>): Promise<void> {
  await sql`create table if not exists kv (key text primary key, value text not null)`.execute(db);
}

/** The request context: whether the caller presented the cluster secret (for `raftAdmin`). */
export interface BenchAppContext {
  readonly admin: boolean;
}

type Errors = RaftErrorShape | TRPCDefaultErrorShape;

/** The router of the replicated shape. */
export type ReplicatedAppRouter = TRPCBuiltRouter<
  { ctx: BenchAppContext; meta: object; errorShape: TRPCDefaultErrorShape; transformer: false },
  {
    put: TRPCMutationProcedure<{
      input: z.input<typeof putInput> & RaftSessionInput;
      output: PutResult;
      meta: object;
      errorShape: Errors;
    }>;
    raftAdmin: RaftAdminRecord;
  }
>;

/** The router of the direct shape. */
export type DirectAppRouter = TRPCBuiltRouter<
  { ctx: BenchAppContext; meta: object; errorShape: TRPCDefaultErrorShape; transformer: false },
  {
    put: TRPCMutationProcedure<{
      input: z.input<typeof putInput>;
      output: PutResult;
      meta: object;
      errorShape: TRPCDefaultErrorShape;
    }>;
  }
>;

type BenchCommand = CommandOf<BenchCommands>;
type BenchResult = ResultOf<BenchCommands>;

const benchCommand = z.object({ name: z.literal('put'), input: putInput });

/**
 * The router of one node of the replicated shape, and the `responseMeta` of its HTTP adapter
 * (the leader header that lets a client's failover link move to the leader).
 */
export function createReplicatedApp(options: {
  node: () => RaftNode<BenchCommand, BenchResult>;
  /** Called by each `put` this node serves (a follower forwards it to the leader). */
  onPut?: () => void;
}): {
  router: ReplicatedAppRouter;
  responseMeta: () => { headers: Record<string, string> };
} {
  const raft = createRaftProcedures<BenchCommand, BenchResult, ResultMap<BenchCommands>>({
    node: options.node,
    command: benchCommand,
  });
  const t = initTRPC.context<BenchAppContext>().create();
  const router = t.router({
    put: t.procedure
      .concat(raft.replicated)
      .input(putInput)
      .mutation(({ ctx, input }) => {
        options.onPut?.();
        return ctx.raft.propose({ name: 'put', input });
      }),
    raftAdmin: raft.adminRouter<BenchAppContext>({ authorize: ({ ctx }) => ctx.admin }),
  });
  return { router, responseMeta: raft.responseMeta };
}

/** The router of the direct shape: the same upsert, autocommit, on one Postgres. */
export function createDirectApp(options: { db: Kysely<BenchDatabase> }): DirectAppRouter {
  const t = initTRPC.context<BenchAppContext>().create();
  return t.router({
    put: t.procedure.input(putInput).mutation(async ({ input }): Promise<PutResult> => {
      await upsert(options.db, input);
      return { ok: true };
    }),
  });
}

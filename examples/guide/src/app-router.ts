import { initTRPC } from '@trpc/server';
import type { RaftNode, RaftSupervisor } from '@tsraft/core';
import { type CommandOf, commandSchema, type ResultMap, type ResultOf } from '@tsraft/pg-storage';
import { createRaftProcedures } from '@tsraft/trpc-transport/server';
import type { Kysely } from 'kysely';
import { z } from 'zod';
import { type Commands, commands, type Database } from './commands.ts';

type Command = CommandOf<Commands>;
type Result = ResultOf<Commands>;

/** Your app's context: here, whether the caller may administer the cluster. */
export interface AppContext {
  readonly admin: boolean;
}

export function createAppRouter(options: {
  /** The node, its supervisor, or a lookup (the router is built before the node starts). */
  node:
    | RaftNode<Command, Result>
    | RaftSupervisor<Command, Result>
    | (() => RaftNode<Command, Result> | undefined);
  db: Kysely<Database>;
}) {
  const raft = createRaftProcedures<Command, Result, ResultMap<Commands>>({
    node: options.node,
    // Every command as proposed, `{ name, input }`, derived from the commands' input schemas.
    command: commandSchema(commands),
  });
  const t = initTRPC.context<AppContext>().create();
  const balance = async (id: string): Promise<number | null> =>
    (
      await options.db
        .selectFrom('accounts')
        .select('balance')
        .where('id', '=', id)
        .executeTakeFirst()
    )?.balance ?? null;
  const router = t.router({
    // An existing procedure stays as it was.
    hello: t.procedure.query(() => 'hello'),
    // Replicated writes: validated, proposed, committed by a majority, applied on every node.
    open: t.procedure
      .concat(raft.replicated)
      .input(commands.open.input)
      .mutation(({ ctx, input }) => ctx.raft.propose({ name: 'open', input })),
    transfer: t.procedure
      .concat(raft.replicated)
      .input(commands.transfer.input)
      .mutation(({ ctx, input }) => ctx.raft.propose({ name: 'transfer', input })),
    // Reads: linearizable (sees every write acknowledged before it started) or local (fast, may lag).
    balance: t.procedure
      .concat(raft.linearizableQuery)
      .input(z.object({ id: z.string() }))
      .query(({ input }) => balance(input.id)),
    localBalance: t.procedure
      .input(z.object({ id: z.string() }))
      .query(({ input }) => balance(input.id)),
    // Status, membership changes and leadership transfer, for operators only.
    raftAdmin: raft.adminRouter<AppContext>({ authorize: ({ ctx }) => ctx.admin }),
  });
  return { router, raft };
}

export type AppRouter = ReturnType<typeof createAppRouter>['router'];

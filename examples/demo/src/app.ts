/**
 * The tRPC app each node serves under `/trpc`, built with the Raft plugin of
 * `@tsraft/trpc-transport`: its mutations are proposed through the node's Raft log (a follower
 * forwards them to the leader) and return the command's typed result; `balances` is a
 * linearizable read; `localBalances` reads this node's tables as they are (possibly behind).
 */
import {
  initTRPC,
  type TRPCBuiltRouter,
  type TRPCDefaultErrorShape,
  type TRPCMutationProcedure,
  type TRPCQueryProcedure,
} from '@trpc/server';
import type { RaftNode } from '@tsraft/core';
import {
  type CommandOf,
  type CommandResultFor,
  commandSchema,
  type ResultMap,
  type ResultOf,
} from '@tsraft/pg-storage';
import {
  createRaftProcedures,
  type RaftAdminRecord,
  type RaftErrorShape,
  type RaftSessionInput,
} from '@tsraft/trpc-transport';
import type { Kysely } from 'kysely';
import type { z } from 'zod';
import { type BankCommands, type BankDatabase, balances, bankCommands } from './bank.ts';

/** The request context: whether the caller presented the cluster secret (for `raftAdmin`). */
export interface BankAppContext {
  readonly admin: boolean;
}

type BankCommand = CommandOf<BankCommands>;
type BankResult = ResultOf<BankCommands>;
type BankNode = RaftNode<BankCommand, BankResult>;
type Errors = RaftErrorShape | TRPCDefaultErrorShape;
type Mutation<Name extends keyof BankCommands> = TRPCMutationProcedure<{
  input: z.input<BankCommands[Name]['input']> & RaftSessionInput;
  output: CommandResultFor<BankCommands, Name>;
  meta: object;
  errorShape: Errors;
}>;
type Query<Output> = TRPCQueryProcedure<{
  // biome-ignore lint/suspicious/noConfusingVoidType: tRPC's own type of "no input"
  input: void;
  output: Output;
  meta: object;
  errorShape: Errors;
}>;

/** The app's router, written out because the sources are checked with `isolatedDeclarations`. */
export type BankAppRouter = TRPCBuiltRouter<
  { ctx: BankAppContext; meta: object; errorShape: TRPCDefaultErrorShape; transformer: false },
  {
    open: Mutation<'open'>;
    transfer: Mutation<'transfer'>;
    balances: Query<Record<string, number>>;
    localBalances: Query<Record<string, number>>;
    raftAdmin: RaftAdminRecord;
  }
>;

/** Builds the router of one node. */
export function createBankApp(options: {
  node: () => BankNode;
  db: Kysely<BankDatabase>;
}): BankAppRouter {
  // The map of results types each command's result: no cast in the resolvers.
  const raft = createRaftProcedures<BankCommand, BankResult, ResultMap<BankCommands>>({
    node: options.node,
    // Any of the bank's commands as it travels in the log, `{ name, input }`: derived from the
    // commands' own input schemas, so a new command needs no second schema here.
    command: commandSchema(bankCommands),
  });
  const t = initTRPC.context<BankAppContext>().create();
  const replicated = t.procedure.concat(raft.replicated);
  return t.router({
    // The state machine answers with the result of the command's own handler.
    open: replicated
      .input(bankCommands.open.input)
      .mutation(({ ctx, input }) => ctx.raft.propose({ name: 'open', input })),
    transfer: replicated
      .input(bankCommands.transfer.input)
      .mutation(({ ctx, input }) => ctx.raft.propose({ name: 'transfer', input })),
    balances: t.procedure.concat(raft.linearizableQuery).query(() => balances(options.db)),
    localBalances: t.procedure.query(() => balances(options.db)),
    raftAdmin: raft.adminRouter<BankAppContext>({ authorize: ({ ctx }) => ctx.admin }),
  });
}

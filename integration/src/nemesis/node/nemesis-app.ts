/**
 * The tRPC app each nemesis node serves under `/trpc`: replicated writes (`execute`, through the
 * Raft plugin of `@tsraft/trpc-transport`), a linearizable read (`get`), and an admin router the
 * harness uses with the cluster secret: the node's status, `snapshot` (takes a snapshot now) and
 * `audit` (checksums and applied writes of the replicated tables, for the checks after healing);
 * and the transport's `raftAdmin` router, with the same secret, for membership changes and
 * leadership transfers.
 */
import {
  initTRPC,
  type TRPCBuiltRouter,
  type TRPCDefaultErrorShape,
  TRPCError,
  type TRPCMutationProcedure,
  type TRPCQueryProcedure,
} from '@trpc/server';
import type { RaftNode } from '@tsraft/core';
import type { CommandOf, ResultOf } from '@tsraft/pg-storage';
import {
  createRaftProcedures,
  type RaftAdminRecord,
  type RaftCommandMutation,
  type RaftErrorShape,
} from '@tsraft/trpc-transport';
import { type Kysely, sql } from 'kysely';
import { z } from 'zod';
import {
  type NemesisCommands,
  type NemesisDatabase,
  nemesisCommands,
  readValue,
} from './nemesis-commands.ts';

/** A command of the nemesis app, as it travels in the log: `{ name, input }`. */
export type NemesisCommand = CommandOf<NemesisCommands>;
/** The result of any command of the nemesis app. */
export type NemesisResult = ResultOf<NemesisCommands>;
type NemesisNode = RaftNode<NemesisCommand, NemesisResult>;

/** The request context: whether the caller presented the cluster secret (for `admin`). */
export interface NemesisAppContext {
  readonly admin: boolean;
}

/** What `admin.status` reports: where the node's supervisor stands, and its node's view. */
export interface NemesisNodeStatus {
  readonly id: string;
  readonly pid: number;
  /** `recovering`: the node stopped on a fatal error (its Postgres) and is being restarted. */
  readonly state: 'running' | 'recovering' | 'closed';
  /** 1 for the first node of this process, counting up with each restart after a fatal error. */
  readonly incarnation: number;
  readonly role: string | null;
  readonly term: number;
  readonly leaderId: string | null;
  readonly commitIndex: number;
  readonly appliedIndex: number;
  readonly lastIndex: number;
  readonly firstIndex: number;
  /** The message of the last fatal error, if any. */
  readonly fatal: string | null;
}

/** The state of the replicated tables on one node, read in one REPEATABLE READ transaction. */
export interface NemesisAudit {
  /** The node's applied index just before and just after the transaction. */
  readonly appliedIndex: number;
  readonly appliedIndexAfter: number;
  readonly kvRows: number;
  /** md5 of every `key=value` line in key order ('' for no row). */
  readonly kvChecksum: string;
  readonly writeRows: number;
  /** md5 of every applied write in log order ('' for no row). */
  readonly writeChecksum: string;
  /** Write ids applied more than once, with their count (at most 50). */
  readonly duplicates: readonly { readonly writeId: string; readonly count: number }[];
  /** Each write id of the requested rounds and how many times it was applied. */
  readonly writes: readonly { readonly writeId: string; readonly count: number }[];
}

/** What the supervisor of the node process answers with (see `nemesis-node.ts`). */
export interface NemesisNodeHost {
  /** The running node, or the last one (stopped) while the supervisor restarts it. */
  node(): NemesisNode;
  /** The running incarnation's database. */
  db(): Kysely<NemesisDatabase>;
  status(): NemesisNodeStatus;
}

type Errors = RaftErrorShape | TRPCDefaultErrorShape;
type Query<Input, Output> = TRPCQueryProcedure<{
  input: Input;
  output: Output;
  meta: object;
  errorShape: Errors;
}>;
type Mutation<Input, Output> = TRPCMutationProcedure<{
  input: Input;
  output: Output;
  meta: object;
  errorShape: Errors;
}>;

/** The router, written out because the integration sources are checked with `isolatedDeclarations`. */
export type NemesisAppRouter = TRPCBuiltRouter<
  { ctx: NemesisAppContext; meta: object; errorShape: TRPCDefaultErrorShape; transformer: false },
  {
    /** Any write command, replicated (a follower forwards it to the leader); its result. */
    execute: RaftCommandMutation<NemesisCommand, NemesisResult>;
    /** A key's value after a ReadIndex (linearizable), '' when absent. */
    get: Query<{ key: string }, string>;
    admin: {
      status: Query<void, NemesisNodeStatus>;
      /** Takes a snapshot now; its position, or null when nothing new was applied. */
      snapshot: Mutation<void, { index: number; term: number } | null>;
      audit: Query<{ rounds: number[] }, NemesisAudit>;
    };
    /** Membership changes, leadership transfers and the node's Raft status (admin only). */
    raftAdmin: RaftAdminRecord;
  }
>;

const nemesisCommand = z.discriminatedUnion('name', [
  z.object({ name: z.literal('put'), input: nemesisCommands.put.input }),
  z.object({ name: z.literal('append'), input: nemesisCommands.append.input }),
  z.object({ name: z.literal('cas'), input: nemesisCommands.cas.input }),
]);

/** Builds the router of one node. */
export function createNemesisApp(host: NemesisNodeHost): NemesisAppRouter {
  const raft = createRaftProcedures<NemesisCommand, NemesisResult>({
    node: () => host.node(),
    command: nemesisCommand,
  });
  const t = initTRPC.context<NemesisAppContext>().create();
  const admin = t.procedure.use(({ ctx, next }) => {
    if (!ctx.admin) throw new TRPCError({ code: 'UNAUTHORIZED', message: 'admin only' });
    return next();
  });
  return t.router({
    execute: raft.replicatedMutation,
    get: t.procedure
      .concat(raft.linearizableQuery)
      .input(z.object({ key: z.string().min(1) }))
      .query(({ input }) => readValue(host.db(), input.key)),
    admin: t.router({
      status: admin.query(() => host.status()),
      snapshot: admin.mutation(async ({ signal }) => {
        const node = host.node();
        if (node.status().closed) {
          throw new TRPCError({ code: 'SERVICE_UNAVAILABLE', message: 'the node is restarting' });
        }
        const stored = await node.takeSnapshot(signal === undefined ? {} : { signal });
        return stored === undefined ? null : { index: stored.index, term: stored.term };
      }),
      audit: admin
        .input(z.object({ rounds: z.array(z.number().int().nonnegative()).max(10_000) }))
        .query(({ input }) => audit(host, input.rounds)),
    }),
    raftAdmin: raft.adminRouter<NemesisAppContext>({ authorize: ({ ctx }) => ctx.admin }),
  });
}

async function audit(host: NemesisNodeHost, rounds: readonly number[]): Promise<NemesisAudit> {
  const appliedIndex = host.status().appliedIndex;
  const read = await host
    .db()
    .transaction()
    .setIsolationLevel('repeatable read')
    .setAccessMode('read only')
    .execute(async (trx) => {
      const kv = await sql<{ rows: string | number; checksum: string }>`
        select count(*) as rows,
               coalesce(md5(string_agg(key || '=' || value, E'\n' order by key)), '') as checksum
        from kv`.execute(trx);
      const writes = await sql<{ rows: string | number; checksum: string }>`
        select count(*) as rows,
               coalesce(md5(string_agg(
                 log_index || ':' || write_id || ':' || round || ':' || key || ':' || kind,
                 E'\n' order by log_index)), '') as checksum
        from applied_write`.execute(trx);
      const duplicates = await sql<{ write_id: string; count: string | number }>`
        select write_id, count(*) as count from applied_write
        group by write_id having count(*) > 1 order by write_id limit 50`.execute(trx);
      const inRounds =
        rounds.length === 0
          ? { rows: [] }
          : await sql<{ write_id: string; count: string | number }>`
              select write_id, count(*) as count from applied_write
              where round in (${sql.join(rounds.map((round) => sql`${round}`))})
              group by write_id order by write_id`.execute(trx);
      return { kv: kv.rows[0], writes: writes.rows[0], duplicates, inRounds };
    });
  return {
    appliedIndex,
    appliedIndexAfter: host.status().appliedIndex,
    kvRows: Number(read.kv?.rows ?? 0),
    kvChecksum: read.kv?.checksum ?? '',
    writeRows: Number(read.writes?.rows ?? 0),
    writeChecksum: read.writes?.checksum ?? '',
    duplicates: read.duplicates.rows.map((row) => ({
      writeId: row.write_id,
      count: Number(row.count),
    })),
    writes: read.inRounds.rows.map((row) => ({ writeId: row.write_id, count: Number(row.count) })),
  };
}

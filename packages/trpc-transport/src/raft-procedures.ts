import {
  initTRPC,
  type TRPCBuiltRouter,
  type TRPCDefaultErrorData,
  type TRPCDefaultErrorShape,
  TRPCError,
  type TRPCMutationProcedure,
  type TRPCProcedureBuilder,
  type TRPCQueryProcedure,
  type TRPCUnsetMarker,
} from '@trpc/server';
import {
  type ClientSession,
  type ClusterConfig,
  MembershipChangeTimeoutError,
  type NodeId,
  NodeRecoveringError,
  RaftError,
  type RaftNode,
  type RaftNodeStatus,
  RaftSupervisor,
  type StoredSnapshot,
} from '@tsraft/core';
import { z } from 'zod';
import { proposalDeadline } from './proposal-deadline.ts';
import { RAFT_LEADER_HEADER } from './raft-leader-header.ts';
import { RAFT_SESSION_FIELD, type RaftSessionInput } from './raft-session-field.ts';
import { stampOf } from './raft-session-stamp.ts';
import { type RaftErrorData, RaftTrpcError, toRaftTrpcError } from './raft-trpc-error.ts';

/** Default deadline of one replicated mutation: 10 s. */
export const DEFAULT_PROPOSE_TIMEOUT_MS = 10_000;
/** The longest a Node timer waits (2^31 - 1 ms, about 24.8 days); a longer one fires after 1 ms. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Warns, once per node, when `proposeTimeoutMs` is not longer than the node's `leaderWaitMs`
 * (see {@link RaftProceduresOptions.proposeTimeoutMs}). A warning, not a refusal: the deadline
 * then only shortens the wait, every answer stays true, and the node may be known only at the
 * first call (a supervisor's, or a lookup's).
 */
function leaderWaitCheck(
  proposeTimeoutMs: number,
): (node: { readonly id: NodeId; readonly leaderWaitMs: number }) => void {
  const checked = new WeakSet<object>();
  return (node) => {
    if (checked.has(node)) return;
    checked.add(node);
    if (!(node.leaderWaitMs >= proposeTimeoutMs)) return;
    process.emitWarning(
      `proposeTimeoutMs (${proposeTimeoutMs} ms) is not longer than leaderWaitMs (${node.leaderWaitMs} ms) of node ${node.id}: a mutation on a node that knows no leader fails with not-leader at the deadline, before the node's wait for a leader ends, and one that finds a leader late has little time left to commit; make proposeTimeoutMs longer than leaderWaitMs plus a commit's time, or lower leaderWaitMs`,
      { code: 'TSRAFT_PROPOSE_TIMEOUT' },
    );
  };
}

/**
 * Result types by command name, for a state machine whose commands are `{ name, ... }` objects:
 * `{ open: OpenResult; transfer: TransferResult }`. Give it as the third type argument of
 * {@link createRaftProcedures} and `ctx.raft.propose({ name: 'open', ... })` resolves with
 * `OpenResult` instead of the union of all results. The default (no names) keeps that union.
 */
export type RaftResultMap = object;

/**
 * What proposing `C` resolves with: `Results[C['name']]` when `Results` names it, else `Result`.
 */
export type RaftResultFor<C, Result, Results extends RaftResultMap> = C extends {
  readonly name: infer Name extends keyof Results;
}
  ? Results[Name]
  : Result;

/** Where the procedures find their node (see {@link RaftProceduresOptions.node}). */
export type RaftNodeSource<Command, Result> =
  | RaftNode<Command, Result>
  | RaftSupervisor<Command, Result>
  | (() => RaftNode<Command, Result> | RaftSupervisor<Command, Result> | undefined);

/** Options of {@link createRaftProcedures}. */
export interface RaftProceduresOptions<Command, Result> {
  /**
   * The node the procedures propose to and read through: a `RaftNode`, a `RaftSupervisor` (its
   * running node at each call), or a lookup called at each call, so that the router can exist
   * before the node has started. The lookup may return `undefined` (no node yet) or throw
   * `NodeRecoveringError` / `NodeClosedError`: the call then fails with SERVICE_UNAVAILABLE and
   * `data.raft` (`recovering`, or `closed`; `tryAnotherNode`), so the client links retry or move.
   */
  readonly node: RaftNodeSource<Command, Result>;
  /**
   * The schema of the state machine's commands: validates the input of
   * {@link RaftProcedures.replicatedMutation}, and every command `ctx.raft.propose` is given
   * before it reaches the log (an invalid one fails with BAD_REQUEST and proposes nothing). For
   * `@tsraft/pg-storage`, derive it from the commands: `commandSchema(commands)`. It should strip
   * unknown keys (zod's default), so the stamp never enters the log.
   */
  readonly command: z.ZodType<NoInfer<Command>, NoInfer<Command>>;
  /**
   * Deadline of one proposal, from the request's arrival to the command's result: past it the
   * mutation fails with TIMEOUT (the command may still apply; retry it with the same stamp).
   * Default {@link DEFAULT_PROPOSE_TIMEOUT_MS}; at most 2^31 - 1 ms (what a timer can wait).
   *
   * Keep it longer than the node's `leaderWaitMs` (3 s with the default tuning) plus the time a
   * commit takes: a node that knows no leader waits for one within this deadline, so a shorter
   * deadline ends that wait early (the mutation fails with `not-leader`, nothing proposed, and
   * `raftFailoverLink` moves on) and leaves little time to commit once a leader is found. The
   * first proposal through a node whose `leaderWaitMs` is not shorter emits a process warning
   * (`TSRAFT_PROPOSE_TIMEOUT`), once per node.
   */
  readonly proposeTimeoutMs?: number;
}

/** The error shape of the errors the plugin maps: tRPC's default, plus `data.raft`. */
export interface RaftErrorShape extends TRPCDefaultErrorShape {
  data: TRPCDefaultErrorData & { raft: RaftErrorData };
}

/** What a replicated procedure's resolver finds in `ctx.raft`. */
export interface RaftMutation<
  Command,
  Result,
  Results extends RaftResultMap = Record<never, never>,
> {
  readonly node: RaftNode<Command, Result>;
  /** The request's stamp (`input.raftSession`), if the client sent one. */
  readonly session: ClientSession | undefined;
  /**
   * Checks `command` against the command schema (BAD_REQUEST, nothing proposed, when it does not
   * fit), proposes it with the request's stamp and resolves with its result once applied
   * (through the leader: a follower forwards it). Fails with a `TRPCError` whose code and
   * `data.raft` say why (see `toRaftTrpcError`). A stamped request proposes one command at most:
   * a second call throws, since two commands cannot share one stamp. With a {@link RaftResultMap},
   * the result is the one of the command's `name`.
   */
  propose<C extends Command>(command: C): Promise<RaftResultFor<C, Result, Results>>;
}

/** The context a replicated procedure adds. */
export interface RaftMutationContext<
  Command,
  Result,
  Results extends RaftResultMap = Record<never, never>,
> {
  readonly raft: RaftMutation<Command, Result, Results>;
}

/**
 * The procedure builder to `.concat()` for a replicated mutation of your own: it accepts the
 * optional stamp in its input (and keeps it out of the parsed input) and adds `ctx.raft`.
 */
export type RaftReplicatedBuilder<
  Command,
  Result,
  Results extends RaftResultMap = Record<never, never>,
> = TRPCProcedureBuilder<
  object,
  object,
  RaftMutationContext<Command, Result, Results>,
  RaftSessionInput,
  Record<never, never>,
  TRPCUnsetMarker,
  TRPCUnsetMarker,
  false,
  RaftErrorShape | TRPCDefaultErrorShape
>;

/** The procedure builder to `.concat()` for a linearizable query: ReadIndex before the resolver. */
export type RaftLinearizableBuilder = TRPCProcedureBuilder<
  object,
  object,
  object,
  TRPCUnsetMarker,
  TRPCUnsetMarker,
  TRPCUnsetMarker,
  TRPCUnsetMarker,
  false,
  RaftErrorShape | TRPCDefaultErrorShape
>;

/** The ready-made mutation: its input is a command (plus the stamp), its output the result. */
export type RaftCommandMutation<Command, Result> = TRPCMutationProcedure<{
  input: Command & RaftSessionInput;
  output: Result;
  meta: object;
  errorShape: RaftErrorShape | TRPCDefaultErrorShape;
}>;

/** Options of {@link RaftProcedures.adminRouter}. */
export interface RaftAdminOptions<Context> {
  /**
   * Decides whether the caller may use the admin procedures, from your app's context (for example
   * a verified operator token). A false answer fails the call with UNAUTHORIZED.
   */
  readonly authorize: (opts: { ctx: Context }) => boolean | Promise<boolean>;
}

/** Input of the admin router's `changeMembership`: the membership wanted (see `RaftNode`). */
export interface RaftAdminMembershipInput {
  readonly voters: NodeId[];
  readonly learners?: NodeId[] | undefined;
  readonly autoPromote?: NodeId[] | undefined;
  /** URLs of members, carried in the configuration (for transports that follow it). */
  readonly addresses?: Record<NodeId, string> | undefined;
  /** `joint`: through C_old,new even for one voter. Default `auto`. */
  readonly mode?: 'auto' | 'joint' | undefined;
  /** Deadline of the change in ms. Default 10,000. */
  readonly timeoutMs?: number | undefined;
}

/** An admin mutation: input `I`, output `O`. */
type AdminMutation<I, O> = TRPCMutationProcedure<{
  input: I;
  output: O;
  meta: object;
  errorShape: RaftErrorShape | TRPCDefaultErrorShape;
}>;

/**
 * The procedures of the admin router: `status`, `takeSnapshot`, and the membership changes and
 * leadership transfer of the node (each on the leader: a follower fails with SERVICE_UNAVAILABLE
 * and `data.raft.leaderHint`; an invalid request with BAD_REQUEST; a change while another is
 * under way with CONFLICT; a change past its `timeoutMs` with TIMEOUT, and it may still take
 * effect: `status` shows the configuration in effect, joint or not). This is the type to write for the admin router's key when you spell
 * out your router's type: a router nested in another appears as its record.
 */
export type RaftAdminRecord = {
  /**
   * This node's {@link RaftNodeStatus}: role, term, leader, commit and applied index, the
   * configuration (joint or not) and, on the leader, each member's progress: the cluster as this
   * node sees it.
   */
  status: TRPCQueryProcedure<{
    // biome-ignore lint/suspicious/noConfusingVoidType: tRPC's own type of "no input" (what `.query()` gives)
    input: void;
    output: RaftNodeStatus;
    meta: object;
    errorShape: TRPCDefaultErrorShape;
  }>;
  /**
   * Makes this node take a snapshot now and compact its log (`RaftNode.takeSnapshot`); resolves
   * with the stored snapshot, or `null` when nothing was applied since the last one.
   * `tsraft-snapshot create` calls it.
   */
  takeSnapshot: TRPCMutationProcedure<{
    // biome-ignore lint/suspicious/noConfusingVoidType: tRPC's own type of "no input" (what `.mutate()` gives)
    input: void;
    output: StoredSnapshot | null;
    meta: object;
    errorShape: TRPCDefaultErrorShape;
  }>;
  /** `RaftNode.addLearner`: resolves with the configuration once the addition is committed. */
  addLearner: AdminMutation<
    {
      id: NodeId;
      url?: string | undefined;
      promote?: boolean | undefined;
      timeoutMs?: number | undefined;
    },
    ClusterConfig
  >;
  /** `RaftNode.changeMembership`: resolves with the configuration once it is committed. */
  changeMembership: AdminMutation<RaftAdminMembershipInput, ClusterConfig>;
  /** `RaftNode.removeNode`: resolves with the configuration once the removal is committed. */
  removeNode: AdminMutation<{ id: NodeId; timeoutMs?: number | undefined }, ClusterConfig>;
  /** `RaftNode.transferLeadership`: resolves with the new leader's id. */
  transferLeadership: AdminMutation<
    { to?: NodeId | undefined; timeoutMs?: number | undefined },
    { leaderId: NodeId }
  >;
};

/** The admin router (see {@link RaftAdminRecord}). */
export type RaftAdminRouter = TRPCBuiltRouter<
  { ctx: object; meta: object; errorShape: TRPCDefaultErrorShape; transformer: false },
  RaftAdminRecord
>;

/** What {@link createRaftProcedures} gives your tRPC app. */
export interface RaftProcedures<
  Command,
  Result,
  Results extends RaftResultMap = Record<never, never>,
> {
  /**
   * For your own replicated mutations: `t.procedure.concat(raft.replicated).input(...)
   * .mutation(({ ctx, input }) => ctx.raft.propose(toCommand(input)))`.
   */
  readonly replicated: RaftReplicatedBuilder<Command, Result, Results>;
  /**
   * A mutation whose input is a command (validated with `command`) and whose output is its
   * result: `t.router({ execute: raft.replicatedMutation })`.
   */
  readonly replicatedMutation: RaftCommandMutation<Command, Result>;
  /**
   * For linearizable queries (thesis 6.4): `t.procedure.concat(raft.linearizableQuery).query(...)`
   * confirms a read index with the leader and waits until this node applied up to it before the
   * resolver runs, so the resolver sees every write that completed before the request. Queries
   * built without it read this node's state as it is (fast, possibly stale).
   */
  readonly linearizableQuery: RaftLinearizableBuilder;
  /** An admin router to mount under a key of your router, guarded by `authorize`. Opt-in. */
  adminRouter<Context>(options: RaftAdminOptions<Context>): RaftAdminRouter;
  /**
   * For your HTTP adapter's `responseMeta` option (or to merge into yours): the header
   * `x-tsraft-leader` with the id of the leader this node knows, when it knows one. With it,
   * `raftFailoverLink` moves a client that reached a follower to the leader after the first
   * answer, so that later calls skip the follower's forwarding hop. The leader's id is what
   * errors already tell any caller (`data.raft.leaderHint`).
   */
  responseMeta(): { headers: Record<string, string> };
}

/**
 * The plugin's own tRPC instance. Its procedures run inside your router (with your context,
 * transformer and HTTP handler); what they bring is their inputs, middlewares and an error
 * formatter (`.errors()`) for the errors they map, so `error.data.raft` needs no setup of yours.
 * `isDev: false`: those error shapes never carry a stack.
 */
const t = initTRPC.context<object>().meta<object>().create({ isDev: false, isServer: true });

/**
 * Adds `data.raft` to the errors the plugin mapped; leaves every other error to the formatters
 * before it and to your root `errorFormatter`.
 */
const formatRaftError = ({
  error,
  shape,
}: {
  error: TRPCError;
  shape: TRPCDefaultErrorShape;
}): RaftErrorShape | undefined =>
  error instanceof RaftTrpcError
    ? { ...shape, data: { ...shape.data, raft: error.raftData } }
    : undefined;

/**
 * The tRPC plugin of a {@link RaftNode}: replicated mutations (proposed through the node, which
 * forwards them to the leader on a follower), exactly-once with the client's stamp, linearizable
 * queries, and an opt-in admin router. Any state machine works: the types come from the node.
 * For per-command results, pass a {@link RaftResultMap} as the third type argument:
 * `createRaftProcedures<Command, Result, { open: OpenResult; ... }>(options)`.
 *
 * Errors of the node become `TRPCError`s with a fitting code and `error.data.raft` (see
 * `toRaftTrpcError` for the table), which `raftSessionLink` reads to retry.
 */
export function createRaftProcedures<
  Command,
  Result,
  Results extends RaftResultMap = Record<never, never>,
>(options: RaftProceduresOptions<Command, Result>): RaftProcedures<Command, Result, Results> {
  const resolve = nodeResolver(options.node);
  const proposeTimeoutMs = options.proposeTimeoutMs ?? DEFAULT_PROPOSE_TIMEOUT_MS;
  if (!(proposeTimeoutMs > 0 && proposeTimeoutMs <= MAX_TIMER_MS)) {
    // Node clamps a longer timer to 1 ms: every proposal would time out at once.
    throw new TypeError(
      `proposeTimeoutMs must be more than 0 and at most ${MAX_TIMER_MS} ms (what a timer can wait), got ${proposeTimeoutMs}`,
    );
  }
  const commandSchema = options.command;
  const checkLeaderWait = leaderWaitCheck(proposeTimeoutMs);

  /** The leader the node knows, or `null` when there is no node to ask. */
  const leaderHint = (): NodeId | null => {
    try {
      return resolve().status().leaderId;
    } catch {
      return null;
    }
  };
  const mapError = (
    error: unknown,
    raftNode: RaftNode<Command, Result>,
    timedOut: boolean,
    deadline?: string,
  ) =>
    toRaftTrpcError(error, {
      leaderHint: raftNode.status().leaderId,
      timedOut,
      ...(deadline === undefined ? {} : { deadline }),
    }) ?? error;

  /**
   * A middleware's result with a `RaftError` a resolver let through (e.g. from `node.propose`
   * called directly) mapped like the plugin's own.
   */
  const mapResolverError = <R extends { ok: boolean; error?: TRPCError }>(result: R): R => {
    if (result.ok || result.error === undefined || result.error instanceof RaftTrpcError) {
      return result;
    }
    const cause = result.error.cause;
    if (!(cause instanceof RaftError)) return result;
    const mapped = toRaftTrpcError(cause, { leaderHint: leaderHint(), timedOut: false });
    return mapped === undefined ? result : { ...result, error: mapped };
  };

  // One middleware does all the plugin's work of a request (checks the stamp, adds `ctx.raft`,
  // maps what the resolver let through): each layer of tRPC's middleware chain copies the call's
  // options several times, a cost every request pays.
  const replicatedMiddleware = t.procedure
    .errors(formatRaftError)
    .use(async ({ getRawInput, signal, next }) => {
      const session = stampOf(await getRawInput());
      let proposed = false;
      const raft: RaftMutation<Command, Result, Results> = {
        get node() {
          return resolve();
        },
        session,
        async propose<C extends Command>(command: C) {
          if (proposed && session !== undefined) {
            throw new TRPCError({
              code: 'INTERNAL_SERVER_ERROR',
              message: 'a stamped request may propose one command only',
            });
          }
          proposed = true;
          const checked = commandSchema.safeParse(command);
          if (!checked.success) {
            throw new TRPCError({
              code: 'BAD_REQUEST',
              message: `the command does not fit the command schema; nothing was proposed: ${z.prettifyError(checked.error)}`,
              cause: checked.error,
            });
          }
          const raftNode = resolve();
          checkLeaderWait(raftNode);
          const started = performance.now();
          using wait = proposalDeadline(signal, proposeTimeoutMs);
          try {
            // The state machine answers each command with its own result: the map only names it.
            return (await raftNode.propose(command, {
              session,
              signal: wait.signal,
            })) as RaftResultFor<C, Result, Results>;
          } catch (error) {
            throw mapError(
              error,
              raftNode,
              wait.signal.aborted,
              wait.timedOut
                ? `no result within the deadline of ${proposeTimeoutMs} ms (proposeTimeoutMs)`
                : `the request was aborted after ${elapsedMs(started)} ms`,
            );
          }
        },
      };
      // `input: {}`: the stamp stays out of the parsed input (the next parser's output is merged
      // into this), so a resolver may spread its input into a command without the stamp.
      return mapResolverError(await next({ ctx: { raft }, input: {} }));
    });
  // The builder accepts the stamp in its input without a parser of its own (`stampOf` checks it
  // from the raw input): the declared type says what the client may send.
  const replicated = replicatedMiddleware as unknown as RaftReplicatedBuilder<
    Command,
    Result,
    Results
  >;

  // tRPC types chained inputs as objects; the command's own type is restored below (a command
  // must be an object: the replicated middleware refuses any other input with BAD_REQUEST).
  const commandParser = options.command as unknown as z.ZodType<Record<string, unknown>>;
  const replicatedMutation = replicated
    .input(commandParser)
    .mutation(({ ctx, input }) =>
      ctx.raft.propose(withoutStamp(input) as Command),
    ) as unknown as RaftCommandMutation<Command, Result>;

  const linearizableQuery = t.procedure.errors(formatRaftError).use(async ({ signal, next }) => {
    const raftNode = resolve();
    const started = performance.now();
    try {
      await raftNode.read(() => undefined, {
        consistency: 'linearizable',
        ...(signal === undefined ? {} : { signal }),
      });
    } catch (error) {
      throw mapError(
        error,
        raftNode,
        signal?.aborted ?? false,
        `the request was aborted after ${elapsedMs(started)} ms`,
      );
    }
    return mapResolverError(await next());
  });

  return {
    replicated,
    replicatedMutation,
    linearizableQuery,
    adminRouter: <Context>(admin: RaftAdminOptions<Context>): RaftAdminRouter => {
      const guarded = t.procedure.use(async ({ ctx, next }) => {
        if (!(await admin.authorize({ ctx: ctx as Context }))) {
          throw new TRPCError({ code: 'UNAUTHORIZED', message: 'not allowed to administer Raft' });
        }
        return next();
      });
      const mapAdminError = (error: unknown, raftNode: RaftNode<Command, Result>): unknown => {
        if (error instanceof TypeError) {
          return new TRPCError({ code: 'BAD_REQUEST', message: error.message, cause: error });
        }
        // Past the change's deadline: TIMEOUT, as for a command (it may still take effect).
        return mapError(error, raftNode, error instanceof MembershipChangeTimeoutError);
      };
      /** Runs a membership call of the node, with the request's signal, mapping its errors. */
      const membership = async <T>(
        signal: AbortSignal | undefined,
        call: (
          raftNode: RaftNode<Command, Result>,
          options: { signal?: AbortSignal },
        ) => Promise<T>,
      ): Promise<T> => {
        const raftNode = resolve();
        try {
          return await call(raftNode, signal === undefined ? {} : { signal });
        } catch (error) {
          throw mapAdminError(error, raftNode);
        }
      };
      const changes = guarded.errors(formatRaftError);
      return t.router({
        status: guarded.query(() => resolve().status()),
        addLearner: changes.input(addLearnerInput).mutation(({ input, signal }) =>
          membership(signal, (raftNode, options) =>
            raftNode.addLearner(input.id, {
              ...options,
              ...timeoutOf(input),
              ...(input.url === undefined ? {} : { url: input.url }),
              ...(input.promote === undefined ? {} : { promote: input.promote }),
            }),
          ),
        ),
        changeMembership: changes.input(membershipInput).mutation(({ input, signal }) =>
          membership(signal, (raftNode, options) =>
            raftNode.changeMembership(
              {
                voters: input.voters,
                ...(input.learners === undefined ? {} : { learners: input.learners }),
                ...(input.autoPromote === undefined ? {} : { autoPromote: input.autoPromote }),
                ...(input.addresses === undefined ? {} : { addresses: input.addresses }),
              },
              {
                ...options,
                ...timeoutOf(input),
                ...(input.mode === undefined ? {} : { mode: input.mode }),
              },
            ),
          ),
        ),
        removeNode: changes
          .input(removeNodeInput)
          .mutation(({ input, signal }) =>
            membership(signal, (raftNode, options) =>
              raftNode.removeNode(input.id, { ...options, ...timeoutOf(input) }),
            ),
          ),
        transferLeadership: changes.input(transferInput).mutation(({ input, signal }) =>
          membership(signal, async (raftNode, options) => ({
            leaderId: await raftNode.transferLeadership(input.to, {
              ...options,
              ...timeoutOf(input),
            }),
          })),
        ),
        takeSnapshot: guarded.mutation(async ({ signal }) => {
          const raftNode = resolve();
          try {
            return (await raftNode.takeSnapshot(signal === undefined ? {} : { signal })) ?? null;
          } catch (error) {
            throw mapError(error, raftNode, signal?.aborted ?? false);
          }
        }),
      });
    },
    responseMeta: () => {
      let leader: NodeId | null;
      try {
        leader = knownLeader(resolve());
      } catch {
        leader = null; // no node to ask: the answer is an error that says so
      }
      const headers: Record<string, string> = {};
      if (leader !== null) headers[RAFT_LEADER_HEADER] = leader;
      return { headers };
    },
  };
}

const nodeIdInput = z.string().min(1).max(256);
const timeoutInput = z.int().min(1).max(600_000).optional();
const addLearnerInput = z.object({
  id: nodeIdInput,
  url: z.url().optional(),
  promote: z.boolean().optional(),
  timeoutMs: timeoutInput,
});
const membershipInput = z.object({
  voters: z.array(nodeIdInput).min(1),
  learners: z.array(nodeIdInput).optional(),
  autoPromote: z.array(nodeIdInput).optional(),
  addresses: z.record(nodeIdInput, z.url()).optional(),
  mode: z.enum(['auto', 'joint']).optional(),
  timeoutMs: timeoutInput,
});
const removeNodeInput = z.object({ id: nodeIdInput, timeoutMs: timeoutInput });
const transferInput = z.object({ to: nodeIdInput.optional(), timeoutMs: timeoutInput });

/** Milliseconds since `started` (a `performance.now()`), rounded. */
function elapsedMs(started: number): number {
  return Math.round(performance.now() - started);
}

/**
 * The node to use at each call, from a {@link RaftNodeSource}: throws a mapped `RaftTrpcError`
 * when there is none (`recovering` while it starts or restarts, `closed` once it is closed).
 */
function nodeResolver<Command, Result>(
  source: RaftNodeSource<Command, Result>,
): () => RaftNode<Command, Result> {
  const lookup = typeof source === 'function' ? source : () => source;
  return () => {
    try {
      const found = lookup();
      if (found instanceof RaftSupervisor) return found.runningNode();
      if (found === undefined) {
        throw new NodeRecoveringError(
          'this node is not running (it is starting, or restarting after a fatal error); retry shortly, or try another node',
        );
      }
      return found;
    } catch (error) {
      throw toRaftTrpcError(error, { leaderHint: null, timedOut: false }) ?? error;
    }
  };
}

/** `{ timeoutMs }` when given, for the node's call options. */
function timeoutOf(input: { timeoutMs?: number | undefined }): { timeoutMs?: number } {
  return input.timeoutMs === undefined ? {} : { timeoutMs: input.timeoutMs };
}

/** The leader each node knows, kept up to date by its `leader-change` events. */
const leaders = new WeakMap<object, { id: NodeId | null }>();

/** The leader `node` knows, without building its whole status on every request. */
function knownLeader<Command, Result>(node: RaftNode<Command, Result>): NodeId | null {
  let known = leaders.get(node);
  if (known === undefined) {
    const entry = { id: node.status().leaderId };
    node.on('leader-change', ({ leaderId }) => {
      entry.id = leaderId;
    });
    leaders.set(node, entry);
    known = entry;
  }
  return known.id;
}

/** The command without the stamp, should the command's parser have kept it. */
function withoutStamp(input: Record<string, unknown>): unknown {
  if (typeof input !== 'object' || input === null || !Object.hasOwn(input, RAFT_SESSION_FIELD)) {
    return input;
  }
  const { [RAFT_SESSION_FIELD]: _stamp, ...command } = input;
  return command;
}

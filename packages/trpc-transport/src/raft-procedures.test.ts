import { type TRPCClient, TRPCClientError } from '@trpc/client';
import { initTRPC } from '@trpc/server';
import type { ClientSession, NodeId, RaftNode, RaftNodeStatus } from '@tsraft/core';
import {
  FaultInjector,
  type KvCommand,
  type KvResult,
  pickLoopbackPort,
} from '@tsraft/core/testing';
import { describe, expect, expectTypeOf, it, vi } from 'vitest';
import { z } from 'zod';
import {
  ADMIN_SECRET,
  AppCluster,
  type AppContext,
  type AppDeps,
  kvCommand,
} from './raft-app.test-helpers.ts';
import { raftErrorOf } from './raft-client-error.ts';
import { createRaftProcedures } from './raft-procedures.ts';

/** The user's app of these tests: what a README reader would write. */
function kvApp(deps: AppDeps) {
  const raft = createRaftProcedures({ node: deps.node, command: kvCommand, proposeTimeoutMs: 400 });
  const t = initTRPC.context<AppContext>().create();
  return t.router({
    /** Any KV command, replicated; answers its typed result. */
    execute: raft.replicatedMutation,
    /** A replicated mutation of the app's own shape. */
    put: t.procedure
      .concat(raft.replicated)
      .input(z.object({ key: z.string(), value: z.string() }))
      .mutation(async ({ ctx, input }) => {
        const result = await ctx.raft.propose({ op: 'put', ...input });
        return { key: input.key, stored: result.op === 'put' ? result.value : null };
      }),
    /** A resolver that builds a command the command schema refuses (an empty key). */
    putUnchecked: t.procedure
      .concat(raft.replicated)
      .input(z.object({ key: z.string(), value: z.string() }))
      .mutation(({ ctx, input }) => ctx.raft.propose({ op: 'put', ...input })),
    /** A resolver that proposes through the node itself: its Raft errors are mapped too. */
    putDirect: t.procedure
      .concat(raft.replicated)
      .input(z.object({ key: z.string(), value: z.string() }))
      .mutation(({ ctx, input }) => ctx.raft.node.propose({ op: 'put', ...input })),
    /** What a replicated procedure's resolver sees of its input (nothing proposed). */
    echo: t.procedure
      .concat(raft.replicated)
      .input(z.object({ n: z.number() }))
      .mutation(({ ctx, input }) => ({ input, session: ctx.raft.session ?? null })),
    /** Reads a key after a ReadIndex: sees every write acknowledged before the call. */
    get: t.procedure
      .concat(raft.linearizableQuery)
      .input(z.object({ key: z.string() }))
      .query(({ input }) => deps.machine().get(input.key)),
    /** Reads this node's state as it is: fast, possibly stale. */
    getLocal: t.procedure
      .input(z.object({ key: z.string() }))
      .query(({ input }) => deps.machine().get(input.key)),
    raftAdmin: raft.adminRouter<AppContext>({ authorize: ({ ctx }) => ctx.admin }),
  });
}

type KvApp = ReturnType<typeof kvApp>;

/** A state machine of two `{ name, input }` commands, each with its own result (types only). */
type NamedCommand =
  | { readonly name: 'open'; readonly input: { id: string } }
  | { readonly name: 'transfer'; readonly input: { from: string; to: string; amount: number } };
type OpenResult = { id: string; balance: number };
type TransferResult = { from: number; to: number };
type NamedResults = { open: OpenResult; transfer: TransferResult };

/** An app of that machine whose resolvers return `ctx.raft.propose(...)` as it is. */
function namedApp(node: () => RaftNode<NamedCommand, OpenResult | TransferResult>) {
  const namedCommand = z.discriminatedUnion('name', [
    z.object({ name: z.literal('open'), input: z.object({ id: z.string() }) }),
    z.object({
      name: z.literal('transfer'),
      input: z.object({ from: z.string(), to: z.string(), amount: z.number() }),
    }),
  ]);
  const raft = createRaftProcedures<NamedCommand, OpenResult | TransferResult, NamedResults>({
    node,
    command: namedCommand,
  });
  const t = initTRPC.create();
  const replicated = t.procedure.concat(raft.replicated);
  return t.router({
    execute: raft.replicatedMutation,
    open: replicated
      .input(z.object({ id: z.string() }))
      .mutation(({ ctx, input }) => ctx.raft.propose({ name: 'open', input })),
    transfer: replicated
      .input(z.object({ from: z.string(), to: z.string(), amount: z.number() }))
      .mutation(({ ctx, input }) => ctx.raft.propose({ name: 'transfer', input })),
    any: replicated.input(namedCommand).mutation(({ ctx, input }) => ctx.raft.propose(input)),
  });
}

/** Calls `fn`, expects a `TRPCClientError`, and returns it. */
async function failure(fn: () => Promise<unknown>): Promise<TRPCClientError<KvApp>> {
  const error = await fn().then(
    () => undefined,
    (error: unknown) => error,
  );
  expect(error).toBeInstanceOf(TRPCClientError);
  return error as TRPCClientError<KvApp>;
}

describe('the tRPC plugin on a 3-node cluster over real HTTP', () => {
  it('forwards a mutation sent to a follower and returns the typed result; a linearizable query on another node sees it (thesis 6.4)', async () => {
    await using cluster = await AppCluster.start({ app: kvApp });
    const leader = await cluster.leader();
    const [first, second] = cluster.others(leader.id) as [NodeId, NodeId];
    const follower = cluster.client(first);

    await expect(follower.execute.mutate({ op: 'put', key: 'a', value: '1' })).resolves.toEqual({
      op: 'put',
      value: '1',
    });
    await expect(follower.put.mutate({ key: 'b', value: '2' })).resolves.toEqual({
      key: 'b',
      stored: '2',
    });
    const other = cluster.client(second);
    await expect(other.execute.mutate({ op: 'append', key: 'a', value: '+x' })).resolves.toEqual({
      op: 'append',
      value: '1+x',
    });
    // Right after the write was acknowledged, every node's linearizable read sees it.
    for (const id of [leader.id, first, second]) {
      await expect(cluster.client(id).get.query({ key: 'a' })).resolves.toBe('1+x');
    }
    await expect(other.get.query({ key: 'b' })).resolves.toBe('2');
  });

  it('types flow to the client without casts', () => {
    type Client = ReturnType<AppCluster<KvApp>['client']>;
    expectTypeOf<Parameters<Client['execute']['mutate']>[0]>().toEqualTypeOf<
      KvCommand & { readonly raftSession?: ClientSession }
    >();
    expectTypeOf<Awaited<ReturnType<Client['execute']['mutate']>>>().toEqualTypeOf<KvResult>();
    expectTypeOf<Parameters<Client['put']['mutate']>[0]>().toEqualTypeOf<{
      readonly raftSession?: ClientSession;
      key: string;
      value: string;
    }>();
    expectTypeOf<Awaited<ReturnType<Client['put']['mutate']>>>().toEqualTypeOf<{
      key: string;
      stored: string | null;
    }>();
    expectTypeOf<Parameters<Client['get']['query']>[0]>().toEqualTypeOf<{ key: string }>();
    expectTypeOf<Awaited<ReturnType<Client['get']['query']>>>().toEqualTypeOf<string | null>();
    // Without a transformer, the status arrives as JSON: its readonly arrays become mutable ones.
    expectTypeOf<
      Awaited<ReturnType<Client['raftAdmin']['status']['query']>>
    >().toExtend<RaftNodeStatus>();
  });

  it('types the result of each command through a map of results by name, without casts', () => {
    type Client = TRPCClient<ReturnType<typeof namedApp>>;
    expectTypeOf<Awaited<ReturnType<Client['open']['mutate']>>>().toEqualTypeOf<OpenResult>();
    expectTypeOf<
      Awaited<ReturnType<Client['transfer']['mutate']>>
    >().toEqualTypeOf<TransferResult>();
    // A command whose name is not known statically still gets the union of the results.
    expectTypeOf<Awaited<ReturnType<Client['any']['mutate']>>>().toEqualTypeOf<
      OpenResult | TransferResult
    >();
    expectTypeOf<Awaited<ReturnType<Client['execute']['mutate']>>>().toEqualTypeOf<
      OpenResult | TransferResult
    >();
  });

  it('a stamped mutation sent twice applies once and answers the recorded result (thesis 6.3)', async () => {
    await using cluster = await AppCluster.start({ app: kvApp });
    const leader = await cluster.leader();
    const client = cluster.client(cluster.others(leader.id)[0] as NodeId);
    const raftSession = { clientId: 'client-a', seq: 1 };
    const command = { op: 'append', key: 'once', value: 'x', raftSession } as const;
    await expect(client.execute.mutate(command)).resolves.toEqual({ op: 'append', value: 'x' });
    await expect(client.execute.mutate(command)).resolves.toEqual({ op: 'append', value: 'x' });
    await expect(client.get.query({ key: 'once' })).resolves.toBe('x');

    // The stamp reaches `ctx.raft.session`, never the parsed input; a malformed one is refused.
    await expect(client.echo.mutate({ n: 1, raftSession })).resolves.toEqual({
      input: { n: 1 },
      session: raftSession,
    });
    const malformed = await failure(() =>
      client.echo.mutate({ n: 1, raftSession: { clientId: '', seq: 0 } }),
    );
    expect(malformed.data?.code).toBe('BAD_REQUEST');
  });

  it('ctx.raft.propose checks a command against the command schema before the log: an invalid one is refused and proposes nothing', async () => {
    await using cluster = await AppCluster.start({ app: kvApp });
    const leader = await cluster.leader();
    const client = cluster.client(leader.id);
    await client.putUnchecked.mutate({ key: 'fine', value: 'v' });
    const lastIndex = leader.status().lastIndex;
    const invalid = await failure(() => client.putUnchecked.mutate({ key: '', value: 'v' }));
    expect(invalid.data?.code).toBe('BAD_REQUEST');
    expect(invalid.message).toMatch(/does not fit the command schema; nothing was proposed/);
    expect(leader.status().lastIndex).toBe(lastIndex);
  });

  it('a stamp reused for a different command answers CONFLICT (SessionConflictError) and executes nothing', async () => {
    await using cluster = await AppCluster.start({ app: kvApp });
    const leader = await cluster.leader();
    const client = cluster.client(leader.id);
    const raftSession = { clientId: 'reuser', seq: 1 };
    await client.execute.mutate({ op: 'put', key: 'a', value: '1', raftSession });
    // A retry of the same command is answered from the session's record.
    await expect(
      client.execute.mutate({ op: 'put', key: 'a', value: '1', raftSession }),
    ).resolves.toEqual({ op: 'put', value: '1' });
    const reused = await failure(() =>
      client.execute.mutate({ op: 'put', key: 'b', value: '2', raftSession }),
    );
    expect(reused.data?.code).toBe('CONFLICT');
    expect(reused.message).toMatch(/used sequence number 1 before for a different command/);
    expect(raftErrorOf(reused)).toMatchObject({
      kind: 'command',
      retryable: false,
      errorName: 'SessionConflictError',
      commandCode: 'CONFLICT',
    });
    for (const id of Object.keys(cluster.urls)) {
      await expect.poll(() => cluster.machine(id).get('a')).toBe('1');
      expect(cluster.machine(id).get('b')).toBeNull();
    }
  });

  it('maps Raft errors to tRPC codes with data.raft', async () => {
    const faults = new FaultInjector();
    await using cluster = await AppCluster.start({
      app: kvApp,
      forwardProposals: false,
      // A long lease, so that the leader keeps leading while replication is held back below.
      tuning: { maxUncommittedBytes: 4096, electionTicks: 50 },
      faults,
    });
    const leader = await cluster.leader();
    const follower = cluster.client(cluster.others(leader.id)[0] as NodeId);

    // Not the leader and not forwarding: SERVICE_UNAVAILABLE, with the leader to go to.
    const notLeader = await failure(() =>
      follower.execute.mutate({ op: 'put', key: 'k', value: 'v' }),
    );
    expect(notLeader.data?.code).toBe('SERVICE_UNAVAILABLE');
    expect(notLeader.data?.httpStatus).toBe(503);
    expect(raftErrorOf(notLeader)).toEqual({
      kind: 'not-leader',
      retryable: true,
      leaderHint: leader.id,
    });
    // The same error, thrown by `node.propose` in a resolver, is mapped the same way.
    const direct = await failure(() => follower.putDirect.mutate({ key: 'k', value: 'v' }));
    expect(direct.data?.code).toBe('SERVICE_UNAVAILABLE');
    expect(raftErrorOf(direct)).toEqual({
      kind: 'not-leader',
      retryable: true,
      leaderHint: leader.id,
    });

    // A domain error of the handler: its own code when it is a tRPC code, else BAD_REQUEST.
    const onLeader = cluster.client(leader.id);
    const conflict = await failure(() =>
      onLeader.execute.mutate({ op: 'put', key: '!CONFLICT', value: 'v' }),
    );
    expect(conflict.data?.code).toBe('CONFLICT');
    expect(conflict.message).toBe('the key "!CONFLICT" is reserved');
    expect(raftErrorOf(conflict)).toMatchObject({
      kind: 'command',
      retryable: false,
      errorName: 'RefusedKeyError',
      commandCode: 'CONFLICT',
    });
    const domain = await failure(() => onLeader.put.mutate({ key: '!E_QUOTA', value: 'v' }));
    expect(domain.data?.code).toBe('BAD_REQUEST');
    expect(raftErrorOf(domain)).toMatchObject({ kind: 'command', commandCode: 'E_QUOTA' });
    expect(domain.data).not.toHaveProperty('stack');

    // Backpressure: more uncommitted bytes than the leader accepts. Replication is held back
    // (the leader cannot reach its followers) so that nothing commits while the writes arrive.
    for (const other of cluster.others(leader.id)) faults.block(leader.id, other);
    const value = 'v'.repeat(1024);
    const pending = Promise.allSettled(
      Array.from({ length: 40 }, (_, i) =>
        onLeader.execute.mutate({ op: 'put', key: `p${i}`, value }),
      ),
    );
    await new Promise((resolve) => setTimeout(resolve, 150));
    faults.heal();
    const outcomes = await pending;
    const refused = outcomes.flatMap((outcome) =>
      outcome.status === 'rejected' ? [outcome.reason as TRPCClientError<KvApp>] : [],
    );
    expect(refused.length).toBeGreaterThan(0);
    for (const error of refused) {
      expect(error.data?.code).toBe('TOO_MANY_REQUESTS');
      expect(raftErrorOf(error)?.kind).toBe('backpressure');
    }

    // Input validation stays tRPC's own.
    const invalid = await failure(() =>
      onLeader.execute.mutate({ op: 'nope', key: 'k' } as unknown as KvCommand),
    );
    expect(invalid.data?.code).toBe('BAD_REQUEST');
    expect(raftErrorOf(invalid)).toBeUndefined();
  });

  it('answers SERVICE_UNAVAILABLE without a leader hint when no leader can be elected (after leaderWaitMs, within the deadlines)', async () => {
    await using cluster = await AppCluster.start({
      app: kvApp,
      running: ['n1'],
      readTimeoutMs: 200,
      leaderWaitMs: 100,
    });
    const client = cluster.client('n1');
    const noLeader = await failure(() =>
      client.execute.mutate({ op: 'put', key: 'k', value: 'v' }),
    );
    expect(noLeader.data?.code).toBe('SERVICE_UNAVAILABLE');
    expect(raftErrorOf(noLeader)).toEqual({
      kind: 'not-leader',
      retryable: true,
      leaderHint: null,
    });
    const read = await failure(() => client.get.query({ key: 'k' }));
    expect(read.data?.code).toBe('SERVICE_UNAVAILABLE');
    expect(raftErrorOf(read)?.kind).toBe('read-unavailable');
    // A plain query stays a local read: it answers without a quorum.
    await expect(client.getLocal.query({ key: 'k' })).resolves.toBeNull();
  });

  it('answers TIMEOUT when the command is not applied within the deadline', async () => {
    await using cluster = await AppCluster.start({ app: kvApp, machine: { applyDelayMs: 600 } });
    const leader = await cluster.leader();
    const timeout = await failure(() =>
      cluster.client(leader.id).execute.mutate({ op: 'put', key: 'slow', value: 'v' }),
    );
    expect(timeout.data?.code).toBe('TIMEOUT');
    expect(timeout.message).toMatch(/no result within the deadline of 400 ms \(proposeTimeoutMs\)/);
    expect(raftErrorOf(timeout)).toMatchObject({ kind: 'timeout', retryable: true });
  });

  it('serves the admin router to authorized callers only', async () => {
    await using cluster = await AppCluster.start({ app: kvApp });
    const leader = await cluster.leader();
    const denied = await failure(() => cluster.client(leader.id).raftAdmin.status.query());
    expect(denied.data?.code).toBe('UNAUTHORIZED');
    const admin = cluster.client(leader.id, { headers: { 'x-admin': ADMIN_SECRET } });
    await expect(admin.raftAdmin.status.query()).resolves.toMatchObject({
      id: leader.id,
      role: 'leader',
      leaderId: leader.id,
      config: { voters: ['n1', 'n2', 'n3'] },
    });
  });

  it('takes a snapshot through the admin router, and refuses callers who are not admins', async () => {
    await using cluster = await AppCluster.start({ app: kvApp });
    const leader = await cluster.leader();
    await cluster.client(leader.id).execute.mutate({ op: 'put', key: 'k', value: 'v' });
    const denied = await failure(() => cluster.client(leader.id).raftAdmin.takeSnapshot.mutate());
    expect(denied.data?.code).toBe('UNAUTHORIZED');
    const admin = cluster.client(leader.id, { headers: { 'x-admin': ADMIN_SECRET } });
    const taken = await admin.raftAdmin.takeSnapshot.mutate();
    expect(taken).toMatchObject({ config: { voters: ['n1', 'n2', 'n3'] } });
    expect(taken?.index).toBeGreaterThanOrEqual(2);
    const status = await admin.raftAdmin.status.query();
    expect(status.firstIndex).toBe((taken?.index ?? 0) + 1);
    await expect(admin.raftAdmin.takeSnapshot.mutate()).resolves.toBeNull();
  });
});

describe('membership and leadership through the admin router', () => {
  it('transfers leadership, removes a node and adds it back as a learner that is promoted', async () => {
    await using cluster = await AppCluster.start({ app: kvApp });
    const leader = await cluster.leader();
    const admin = (id: NodeId) => cluster.client(id, { headers: { 'x-admin': ADMIN_SECRET } });
    const denied = await failure(() =>
      cluster.client(leader.id).raftAdmin.removeNode.mutate({ id: 'n3' }),
    );
    expect(denied.data?.code).toBe('UNAUTHORIZED');

    const target = ['n1', 'n2', 'n3'].find((id) => id !== leader.id)!;
    await expect(
      admin(leader.id).raftAdmin.transferLeadership.mutate({ to: target }),
    ).resolves.toEqual({
      leaderId: target,
    });
    const onFollower = await failure(() =>
      admin(leader.id).raftAdmin.removeNode.mutate({ id: 'n3' }),
    );
    expect(raftErrorOf(onFollower)).toMatchObject({ kind: 'not-leader', leaderHint: target });

    const removed = ['n1', 'n2', 'n3'].find((id) => id !== target)!;
    const rest = ['n1', 'n2', 'n3'].filter((id) => id !== removed);
    await expect(admin(target).raftAdmin.removeNode.mutate({ id: removed })).resolves.toEqual({
      voters: rest,
    });
    const invalid = await failure(() => admin(target).raftAdmin.addLearner.mutate({ id: target }));
    expect(invalid.data?.code).toBe('BAD_REQUEST');
    await expect(
      admin(target).raftAdmin.addLearner.mutate({ id: removed, promote: true }),
    ).resolves.toEqual({ voters: rest, learners: [removed], autoPromote: [removed] });
    await expect
      .poll(async () => (await admin(target).raftAdmin.status.query()).config.voters.length)
      .toBe(3);
    const status = await admin(target).raftAdmin.status.query();
    expect(status).toMatchObject({ joint: false, leadTransferee: null });
    expect(Object.keys(status.progress).sort()).toEqual(
      [removed, ...rest.filter((id) => id !== target)].sort(),
    );

    const shrunk = await admin(target).raftAdmin.changeMembership.mutate({
      voters: rest,
      mode: 'joint',
    });
    expect(shrunk).toEqual({ voters: rest });
  });
});

describe("a membership change that carries the new members' URLs, through the admin router", () => {
  it('the cluster reaches new members at the URLs the change gave; status shows C_old,new while it waits for the new majority, then C_new', async () => {
    await using cluster = await AppCluster.start({ app: kvApp });
    const leader = await cluster.leader();
    const admin = (id: NodeId) => cluster.client(id, { headers: { 'x-admin': ADMIN_SECRET } });
    await cluster.client(leader.id).execute.mutate({ op: 'put', key: 'before', value: 'change' });

    // n4 and n5 get ports of their own, not started yet: none of n1..n3 knows their URLs.
    const url4 = `http://127.0.0.1:${await pickLoopbackPort()}`;
    const url5 = `http://127.0.0.1:${await pickLoopbackPort()}`;
    const voters = [leader.id, 'n4', 'n5'];
    const timedOut = await failure(() =>
      admin(leader.id).raftAdmin.changeMembership.mutate({
        voters,
        addresses: { n4: url4, n5: url5 },
        mode: 'joint',
        timeoutMs: 300,
      }),
    );
    expect(timedOut.data?.code).toBe('TIMEOUT');
    expect(raftErrorOf(timedOut)).toMatchObject({ kind: 'timeout', retryable: true });
    // Every original holds C_old,new, uncommitted: it needs a majority of C_new, which is down
    // (so no leader can keep or win leadership meanwhile: CheckQuorum and elections need it too).
    for (const id of ['n1', 'n2', 'n3']) {
      expect(await admin(id).raftAdmin.status.query()).toMatchObject({
        joint: true,
        config: {
          voters,
          outgoingVoters: ['n1', 'n2', 'n3'],
          addresses: { n4: url4, n5: url5 },
        },
      });
    }

    // They start at those URLs; a leader reaches them and the change completes by itself (once
    // C_new commits, the leader replicates to its members only).
    expect(await cluster.startServer('n4', url4)).toBe(url4);
    expect(await cluster.startServer('n5', url5)).toBe(url5);
    let final: RaftNodeStatus | undefined;
    await expect
      .poll(
        async () => {
          const statuses = await Promise.all(
            voters.map((id) => admin(id).raftAdmin.status.query()),
          );
          final = statuses.find(
            (s) => s.role === 'leader' && !s.joint && s.configIndex <= s.commitIndex,
          );
          return final?.config.voters;
        },
        { timeout: 10_000, interval: 20 },
      )
      .toEqual(voters);
    expect(final?.config.outgoingVoters).toBeUndefined();
    expect(Object.keys(final?.progress ?? {}).sort()).toEqual(
      voters.filter((id) => id !== final?.id).sort(),
    );
    // A new member serves the app: it applied what came before, and forwards writes.
    await expect
      .poll(() => cluster.client('n4').getLocal.query({ key: 'before' }), { timeout: 5000 })
      .toBe('change');
    await cluster.client('n5').execute.mutate({ op: 'put', key: 'after', value: 'change' });
    await expect
      .poll(() => cluster.client('n4').getLocal.query({ key: 'after' }), { timeout: 5000 })
      .toBe('change');
  });
});

describe('leader discovery through the x-tsraft-leader header', () => {
  /** Runs three puts from a client that starts at a follower; returns the URLs it sent to. */
  async function putsFromAFollower(withHeader: boolean, batch = false) {
    await using cluster = await AppCluster.start({
      app: kvApp,
      ...(withHeader
        ? {
            responseMeta: (deps: AppDeps) =>
              createRaftProcedures({ node: deps.node, command: kvCommand }).responseMeta,
          }
        : {}),
    });
    const leader = await cluster.leader();
    const follower = cluster.others(leader.id)[0] as NodeId;
    const sent: string[] = [];
    const client = cluster.sessionClient({
      initial: follower,
      batch,
      onFetch: (url) => sent.push(url),
    });
    for (const key of ['a', 'b', 'c']) {
      expect(await client.put.mutate({ key, value: key })).toEqual({ key, stored: key });
    }
    return {
      follower: cluster.urls[follower] as string,
      leader: cluster.urls[leader.id] as string,
      sent,
    };
  }

  it('moves a client that starts at a follower to the leader after its first answer', async () => {
    const { follower, leader, sent } = await putsFromAFollower(true);
    expect(sent).toHaveLength(3);
    expect(sent[0]?.startsWith(follower)).toBe(true);
    expect(sent.slice(1).every((url) => url.startsWith(leader))).toBe(true);
  });

  it('moves a client whose failover link batches (httpBatchLink) the same way', async () => {
    const { follower, leader, sent } = await putsFromAFollower(true, true);
    expect(sent).toHaveLength(3);
    expect(sent[0]?.startsWith(follower)).toBe(true);
    expect(sent.slice(1).every((url) => url.startsWith(leader))).toBe(true);
  });

  it('without the header, a client stays at the follower, which forwards every call', async () => {
    const { follower, sent } = await putsFromAFollower(false);
    expect(sent).toHaveLength(3);
    expect(sent.every((url) => url.startsWith(follower))).toBe(true);
  });
});

describe('a node cut off from the majority (it knows no leader)', () => {
  /** A 3-node cluster whose follower is cut off from the others, once it knows no leader. */
  async function cutOffFollower(leaderWaitMs: number) {
    const faults = new FaultInjector({ seed: 1 });
    const cluster = await AppCluster.start({ app: kvApp, faults, leaderWaitMs });
    const leader = await cluster.leader();
    const [id, other] = cluster.others(leader.id) as [NodeId, NodeId];
    faults.partition([id], [leader.id, other]);
    await expect
      .poll(() => cluster.node(id).status().leaderId, { timeout: 5000, interval: 10 })
      .toBeNull();
    return { cluster, id };
  }

  it('answers a mutation whose deadline passed while it waited for a leader with not-leader without a hint (nothing was proposed; once per node, a warning that proposeTimeoutMs is not longer than leaderWaitMs), and the client links move on to a node that serves', async () => {
    const warnings = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    try {
      // proposeTimeoutMs is 400 ms: the deadline passes long before the wait for a leader.
      const { cluster, id } = await cutOffFollower(30_000);
      await using _ = cluster;
      const lastIndex = cluster.node(id).status().lastIndex;
      const refused = await failure(() =>
        cluster.client(id).execute.mutate({ op: 'put', key: 'k', value: 'v' }),
      );
      expect(refused.data?.code).toBe('SERVICE_UNAVAILABLE');
      expect(raftErrorOf(refused)).toEqual({
        kind: 'not-leader',
        retryable: true,
        leaderHint: null,
      });
      expect(cluster.node(id).status().lastIndex).toBe(lastIndex);
      const sent: string[] = [];
      const client = cluster.sessionClient({ initial: id, onFetch: (url) => sent.push(url) });
      await expect(client.execute.mutate({ op: 'put', key: 'k', value: 'w' })).resolves.toEqual({
        op: 'put',
        value: 'w',
      });
      expect(sent[0]?.startsWith(cluster.urls[id] as string)).toBe(true);
      expect(sent.at(-1)?.startsWith(cluster.urls[id] as string)).toBe(false);
      const cutOff = warnings.mock.calls.filter(
        ([message, options]) =>
          String(message).includes(`of node ${id}:`) &&
          (options as { code?: string } | undefined)?.code === 'TSRAFT_PROPOSE_TIMEOUT',
      );
      expect(cutOff).toHaveLength(1);
      expect(String(cutOff[0]?.[0])).toMatch(
        /^proposeTimeoutMs \(400 ms\) is not longer than leaderWaitMs \(30000 ms\)/,
      );
    } finally {
      warnings.mockRestore();
    }
  });

  it('answers a linearizable query with read-unavailable without a hint once leaderWaitMs passed, and the client links move on to a node that serves', async () => {
    const { cluster, id } = await cutOffFollower(100);
    await using _ = cluster;
    const refused = await failure(() => cluster.client(id).get.query({ key: 'k' }));
    expect(raftErrorOf(refused)).toEqual({
      kind: 'read-unavailable',
      retryable: true,
      leaderHint: null,
    });
    const sent: string[] = [];
    const client = cluster.sessionClient({ initial: id, onFetch: (url) => sent.push(url) });
    await expect(client.get.query({ key: 'k' })).resolves.toBeNull();
    expect(sent[0]?.startsWith(cluster.urls[id] as string)).toBe(true);
    expect(sent.at(-1)?.startsWith(cluster.urls[id] as string)).toBe(false);
  });
});

describe('exactly-once through the session link while the leader is killed', () => {
  it.each([
    ['httpLink', false],
    ['httpBatchLink', true],
  ])(
    'applies every acknowledged write exactly once on every surviving node (thesis 6.3), over %s',
    async (_link, batch) => {
      await using cluster = await AppCluster.start({ app: kvApp });
      const leader = await cluster.leader();
      let unanswered = 0;
      let batched = 0;
      const ids = Object.keys(cluster.urls);
      const clients = Array.from({ length: 6 }, (_, i) =>
        cluster.sessionClient({
          initial: ids[i % ids.length] as NodeId,
          batch,
          onFetchFailure: () => unanswered++,
          // httpBatchLink names every call of a request in its path: `execute,execute?batch=1`.
          onFetch: (url) => {
            if (url.includes('execute,execute')) batched++;
          },
        }),
      );
      // Each client writes on three keys at once (one writer per key, one token at a time), so
      // that a batching link carries several stamped calls of one session in one request.
      const LANES = 3;
      const acknowledged = Array.from({ length: clients.length * LANES }, () => [] as string[]);
      let stop = false;
      const writers = acknowledged.map(async (tokens, k) => {
        const client = clients[Math.floor(k / LANES)] as (typeof clients)[number];
        for (let w = 0; !stop; w++) {
          const token = `k${k}w${w};`;
          await client.execute.mutate({ op: 'append', key: `k${k}`, value: token });
          tokens.push(token);
        }
      });
      await expect
        .poll(() => acknowledged.every((tokens) => tokens.length >= 5), { timeout: 10_000 })
        .toBe(true);
      const before = acknowledged.map((tokens) => tokens.length);
      await cluster.stop(leader.id);
      const next = await cluster.leader();
      expect(next.id).not.toBe(leader.id);
      await expect
        .poll(() => acknowledged.every((tokens, k) => tokens.length >= (before[k] ?? 0) + 10), {
          timeout: 10_000,
        })
        .toBe(true);
      stop = true;
      await Promise.all(writers);
      expect(unanswered).toBeGreaterThan(0);
      expect(batched > 0).toBe(batch);

      const commit = next.status().commitIndex;
      const survivors = [...cluster.running.keys()];
      await expect
        .poll(() => survivors.every((id) => cluster.node(id).status().appliedIndex >= commit))
        .toBe(true);
      for (const id of survivors) {
        acknowledged.forEach((tokens, k) => {
          // Each writer writes one token at a time: its key holds exactly its tokens, in order.
          expect(cluster.machine(id).get(`k${k}`)).toBe(tokens.join(''));
        });
      }
    },
    20_000,
  );
});

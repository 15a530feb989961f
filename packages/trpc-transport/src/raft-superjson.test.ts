import { TRPCClientError } from '@trpc/client';
import { initTRPC } from '@trpc/server';
import type { NodeId } from '@tsraft/core';
import superjson from 'superjson';
import { describe, expect, expectTypeOf, it } from 'vitest';
import { z } from 'zod';
import { AppCluster, type AppContext, type AppDeps, kvCommand } from './raft-app.test-helpers.ts';
import { raftErrorOf } from './raft-client-error.ts';
import { createRaftProcedures } from './raft-procedures.ts';

/** An app whose own tRPC uses superjson: dates and maps cross the wire as themselves. */
function superjsonApp(deps: AppDeps) {
  const raft = createRaftProcedures({ node: deps.node, command: kvCommand });
  const t = initTRPC.context<AppContext>().create({ transformer: superjson });
  return t.router({
    execute: raft.replicatedMutation,
    /** A replicated mutation whose input and output carry a `Date` and a `Map`. */
    schedule: t.procedure
      .concat(raft.replicated)
      .input(z.object({ key: z.string(), at: z.date() }))
      .mutation(async ({ ctx, input }) => {
        const result = await ctx.raft.propose({
          op: 'put',
          key: input.key,
          value: input.at.toISOString(),
        });
        const stored = result.op === 'put' ? result.value : '';
        return { at: new Date(stored), seen: new Map([[input.key, input.at]]) };
      }),
    get: t.procedure
      .concat(raft.linearizableQuery)
      .input(z.object({ key: z.string() }))
      .query(({ input }) => deps.machine().get(input.key)),
  });
}

type SuperjsonApp = ReturnType<typeof superjsonApp>;

describe('an app whose tRPC uses the superjson transformer', () => {
  it('serves replicated mutations with superjson values, and its errors keep data.raft', async () => {
    await using cluster = await AppCluster.start({ app: superjsonApp, forwardProposals: false });
    const leader = await cluster.leader();
    const follower = cluster.others(leader.id)[0] as NodeId;
    const at = new Date('2026-03-04T05:06:07.089Z');

    // The session and failover links over superjson: the follower refuses (no forwarding) with
    // its leader hint in data.raft, which the failover link reads to move to the leader.
    const client = cluster.sessionClient({ initial: follower, transformer: superjson });
    const scheduled = await client.schedule.mutate({ key: 'meeting', at });
    expect(scheduled.at).toBeInstanceOf(Date);
    expect(scheduled.at.getTime()).toBe(at.getTime());
    expect(scheduled.seen).toEqual(new Map([['meeting', at]]));
    expectTypeOf(scheduled.at).toEqualTypeOf<Date>();
    await expect(client.get.query({ key: 'meeting' })).resolves.toBe(at.toISOString());
    await expect(
      client.execute.mutate({ op: 'append', key: 'meeting', value: '!' }),
    ).resolves.toEqual({ op: 'append', value: `${at.toISOString()}!` });

    // A plain client of the follower sees the mapped error through superjson.
    const direct = cluster.client(follower, { transformer: superjson });
    const notLeader = await direct.execute
      .mutate({ op: 'put', key: 'k', value: 'v' })
      .catch((error: unknown) => error);
    expect(notLeader).toBeInstanceOf(TRPCClientError);
    expect(raftErrorOf(notLeader)).toEqual({
      kind: 'not-leader',
      retryable: true,
      leaderHint: leader.id,
    });
    const refused = await cluster
      .client(leader.id, { transformer: superjson })
      .execute.mutate({ op: 'put', key: '!CONFLICT', value: 'v' })
      .catch((error: unknown) => error);
    expect(raftErrorOf(refused)).toMatchObject({ kind: 'command', commandCode: 'CONFLICT' });
  });

  it('types the superjson values through to the client', () => {
    type Client = ReturnType<AppCluster<SuperjsonApp>['client']>;
    expectTypeOf<Parameters<Client['schedule']['mutate']>[0]>().toExtend<{ at: Date }>();
    expectTypeOf<Awaited<ReturnType<Client['schedule']['mutate']>>>().toEqualTypeOf<{
      at: Date;
      seen: Map<string, Date>;
    }>();
  });
});

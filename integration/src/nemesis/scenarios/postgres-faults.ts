import type { FaultContext, Scenario } from '../scenario.ts';
import { pick } from '../scenario.ts';

/** The leader's Postgres half of the time, a follower's otherwise. */
async function target(context: FaultContext): Promise<{ id: string; role: string }> {
  const leader = await context.leader();
  if (context.random.next() < 0.5) return { id: leader, role: 'leader' };
  const follower = pick(
    context.random,
    context.cluster.ids.filter((id) => id !== leader),
  );
  return { id: follower, role: 'follower' };
}

/**
 * Takes a node's Postgres away (`how`), holds, brings it back; the node itself is left alone:
 * its supervisor restarts it once its database answers again.
 */
function downAndBack(name: string, summary: string, how: 'stop' | 'kill'): Scenario {
  return {
    name,
    summary,
    appliesTo: (cluster) => cluster.hasPostgresServers,
    run: async (context) => {
      const { id, role } = await target(context);
      context.note(`${how} the Postgres of ${role} ${id}`);
      await (how === 'stop' ? context.cluster.stopPostgres(id) : context.cluster.killPostgres(id));
      await context.hold();
      context.note(`restart the Postgres of ${id}`);
      await context.cluster.restartPostgres(id);
      return { targets: [id], detail: `${how} the Postgres of ${role} ${id}` };
    },
  };
}

export const postgresStop: Scenario = downAndBack(
  'pg-stop',
  "stop a node's Postgres cleanly (the leader's or a follower's), then start it again",
  'stop',
);

export const postgresKill: Scenario = downAndBack(
  'pg-kill',
  "kill -9 a node's Postgres (crash recovery on restart), then start it again",
  'kill',
);

/**
 * Half the hangs outlast the nodes' query timeout (5 s): the node's calls fail, it stops and its
 * supervisor restarts it once Postgres answers; the other half only stall it.
 */
const HANG_MIN_MS = [2_000, 6_000] as const;

export const postgresHang: Scenario = {
  name: 'pg-hang',
  summary: "freeze a node's Postgres (SIGSTOP or docker pause): it hangs rather than refuses",
  appliesTo: (cluster) => cluster.hasPostgresServers,
  run: async (context) => {
    const { id, role } = await target(context);
    context.note(`pause the Postgres of ${role} ${id}`);
    await context.cluster.pausePostgres(id);
    await context.hold({ minMs: pick(context.random, HANG_MIN_MS) });
    context.note(`resume the Postgres of ${id}`);
    await context.cluster.resumePostgres(id);
    return { targets: [id], detail: `hang the Postgres of ${role} ${id}` };
  },
};

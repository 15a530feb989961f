import type { FaultContext, FaultReport, Scenario } from '../scenario.ts';
import { pick, shuffle } from '../scenario.ts';

/** Kills `targets` with SIGKILL, holds, and starts them again from their databases. */
async function killAndRestart(
  context: FaultContext,
  targets: readonly string[],
  detail: string,
): Promise<FaultReport> {
  const { cluster } = context;
  context.note(`SIGKILL ${targets.join(', ')}`);
  await Promise.all(targets.map((id) => cluster.process(id).kill()));
  await context.hold();
  context.note(`restart ${targets.join(', ')}`);
  await Promise.all(targets.map((id) => cluster.process(id).start({ signal: context.signal })));
  return { targets, detail };
}

export const killLeader: Scenario = {
  name: 'kill-leader',
  summary: 'kill -9 the leader, then restart it',
  appliesTo: () => true,
  run: async (context) => {
    const leader = await context.leader();
    return killAndRestart(context, [leader], `SIGKILL leader ${leader}`);
  },
};

export const killFollower: Scenario = {
  name: 'kill-follower',
  summary: 'kill -9 a follower, then restart it',
  appliesTo: () => true,
  run: async (context) => {
    const leader = await context.leader();
    const follower = pick(
      context.random,
      context.cluster.ids.filter((id) => id !== leader),
    );
    return killAndRestart(context, [follower], `SIGKILL follower ${follower}`);
  },
};

export const killMajority: Scenario = {
  name: 'kill-majority',
  summary: 'kill -9 a majority (the leader among them or not), then restart them',
  appliesTo: () => true,
  run: async (context) => {
    const { ids } = context.cluster;
    const targets = shuffle(context.random, ids).slice(0, Math.floor(ids.length / 2) + 1);
    return killAndRestart(context, targets.sort(), `SIGKILL ${targets.join(', ')}`);
  },
};

export const killAll: Scenario = {
  name: 'kill-all',
  summary: 'kill -9 every node, then restart them all',
  appliesTo: () => true,
  run: (context) => killAndRestart(context, [...context.cluster.ids], 'SIGKILL the whole cluster'),
};

/** Election timeouts are 10 to 20 ticks of 15 ms: a pause of 1 s outlasts any of them. */
const PAUSE_MIN_MS = 1_000;

export const pauseLeader: Scenario = {
  name: 'pause-leader',
  summary:
    'SIGSTOP the leader for longer than an election timeout, then SIGCONT it (the stale leader)',
  appliesTo: () => true,
  run: async (context) => {
    const leader = await context.leader();
    const process = context.cluster.process(leader);
    context.note(`SIGSTOP ${leader}`);
    process.pause();
    await context.hold({ minMs: PAUSE_MIN_MS });
    context.note(`SIGCONT ${leader}`);
    process.resume();
    return { targets: [leader], detail: `SIGSTOP leader ${leader}` };
  },
};

import type { FaultContext, FaultReport, Scenario } from '../scenario.ts';
import { shuffle } from '../scenario.ts';

/** Applies a partition, holds it, heals every link. */
async function partitionAndHeal(
  context: FaultContext,
  apply: () => void,
  report: FaultReport,
): Promise<FaultReport> {
  const { cluster } = context;
  apply();
  context.note(`${report.detail}: cut ${cluster.cutLinks().join(' ')}`);
  await context.hold();
  cluster.healLinks();
  context.note('healed every link');
  return report;
}

function groups(parts: readonly (readonly string[])[]): string {
  return parts.map((part) => `[${part.join(', ')}]`).join(' | ');
}

export const partitionLeader: Scenario = {
  name: 'partition-leader',
  summary: 'cut the leader off from every other node, both ways',
  appliesTo: () => true,
  run: async (context) => {
    const leader = await context.leader();
    const rest = context.cluster.ids.filter((id) => id !== leader);
    return partitionAndHeal(context, () => context.cluster.partition([[leader], rest]), {
      targets: [leader],
      detail: `isolate leader ${leader}: ${groups([[leader], rest])}`,
    });
  },
};

export const partitionHalves: Scenario = {
  name: 'partition-halves',
  summary: 'split the cluster into a majority and a minority (the leader on either side)',
  appliesTo: () => true,
  run: async (context) => {
    const { ids } = context.cluster;
    const shuffled = shuffle(context.random, ids);
    const minority = shuffled.slice(0, Math.floor((ids.length - 1) / 2)).sort();
    const majority = shuffled.slice(minority.length).sort();
    const leader = await context.leader();
    return partitionAndHeal(context, () => context.cluster.partition([minority, majority]), {
      targets: minority,
      detail: `minority ${groups([minority])} (leader ${leader} in the ${minority.includes(leader) ? 'minority' : 'majority'}) | majority ${groups([majority])}`,
    });
  },
};

export const partitionBridge: Scenario = {
  name: 'partition-bridge',
  summary: 'two sides that cannot reach each other, and one node that reaches both (the bridge)',
  appliesTo: () => true,
  run: async (context) => {
    const { cluster } = context;
    const shuffled = shuffle(context.random, cluster.ids);
    const bridge = shuffled[0] as string;
    const sides = shuffled.slice(1);
    const left = sides.slice(0, Math.floor(sides.length / 2)).sort();
    const right = sides.slice(left.length).sort();
    return partitionAndHeal(context, () => cluster.partition([left, right]), {
      targets: [bridge],
      detail: `bridge ${bridge} between ${groups([left, right])}`,
    });
  },
};

export const partitionOneWay: Scenario = {
  name: 'partition-one-way',
  summary:
    'cut the links one way only: the leader hears the others but they do not hear it, or the reverse',
  appliesTo: () => true,
  run: async (context) => {
    const { cluster } = context;
    const leader = await context.leader();
    const outbound = context.random.next() < 0.5;
    const others = cluster.ids.filter((id) => id !== leader);
    return partitionAndHeal(
      context,
      () => {
        for (const other of others) {
          if (outbound) cluster.cut(leader, other);
          else cluster.cut(other, leader);
        }
      },
      {
        targets: [leader],
        detail: outbound
          ? `leader ${leader} cannot send to ${others.join(', ')} (but hears them)`
          : `leader ${leader} cannot hear ${others.join(', ')} (but sends to them)`,
      },
    );
  },
};

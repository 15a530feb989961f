/**
 * Runs the randomized Raft simulation over many seeds and prints a table.
 *
 *   pnpm --filter @tsraft/core sim --seeds 200 [--nodes 5] [--from 1]
 *   pnpm --filter @tsraft/core sim --seed 17          (replays one seed)
 *   --small-batches: one or two entries per AppendEntries and a tiny window (more interleavings)
 *   --membership: an operator changes the membership and transfers leadership meanwhile
 *   --leader-churn: the leader crashes or is cut off every few dozen ms (Figure 8, stale reads)
 *   --log: print the nodes' log lines (info and above) with their virtual time
 *   --plan NAME: a scripted membership workload instead (grow, shrink, replace-one-by-one,
 *     replace-all-joint, remove-leader; its own number of nodes); --crash-in-joint: the leader
 *     may crash between C_old,new and C_new
 *   --figure-8: five servers play the Raft paper's Figure 8 by partitions, instead of random faults
 *   --install-during-apply: three servers play a graceful restart during a snapshot install that
 *     waits for a busy apply loop, instead of random faults
 *   --options JSON: any other SimulationOptions (a failure prints the exact replay command)
 * A seed is judged as in the test batch (`runSimulation` applies the per-seed verdict, e.g. that
 * writes made progress), so a seed that fails there fails here too.
 */
import { benchCommandLine, integerOption, UsageError } from '@tsraft/bench-cli';
import { type MembershipPlanName, planServers } from '../src/testing/sim/membership-plans.ts';
import {
  runSimulation,
  SimulationFailure,
  type SimulationOptions,
  SMALL_BATCHES,
} from '../src/testing/sim/simulator.ts';

const { values, extra, nodes, seeds } = await benchCommandLine(
  {
    program: 'core sim',
    options: {
      seeds: { type: 'string', default: '20' },
      seed: { type: 'string' },
      from: { type: 'string', default: '1' },
      nodes: { type: 'string' },
      'small-batches': { type: 'boolean', default: false },
      membership: { type: 'boolean', default: false },
      log: { type: 'boolean', default: false },
      'leader-churn': { type: 'boolean', default: false },
      plan: { type: 'string' },
      'crash-in-joint': { type: 'boolean', default: false },
      'figure-8': { type: 'boolean', default: false },
      'install-during-apply': { type: 'boolean', default: false },
      options: { type: 'string' },
    },
  },
  ({ values }) => {
    if (values.plan !== undefined) {
      try {
        planServers(values.plan as MembershipPlanName);
      } catch (error) {
        throw new UsageError(`--plan: ${(error as Error).message}`);
      }
    }
    let extra: Omit<SimulationOptions, 'seed'> = {};
    if (values.options !== undefined) {
      try {
        extra = JSON.parse(values.options) as Omit<SimulationOptions, 'seed'>;
      } catch (error) {
        throw new UsageError(
          `--options takes JSON of SimulationOptions: ${(error as Error).message}`,
        );
      }
      if (typeof extra !== 'object' || extra === null || Array.isArray(extra)) {
        throw new UsageError(
          `--options takes a JSON object of SimulationOptions, not ${values.options}`,
        );
      }
    }
    const seed = (flag: string, text: string) => integerOption(flag, text, { min: 0 });
    const from = seed('--from', values.from);
    return {
      values,
      extra,
      nodes:
        values.nodes === undefined
          ? undefined
          : integerOption('--nodes', values.nodes, { min: 1, max: 9 }),
      seeds:
        values.seed === undefined
          ? Array.from({ length: seed('--seeds', values.seeds) }, (_, i) => from + i)
          : [seed('--seed', values.seed)],
    };
  },
);

console.log(
  'seed   events  virtual-ms  terms  acked  unknown  applied  reads  crashes  in-flight  closes  partitions  io-fail  restarts  slow-io  snap-taken  snap-installed  changes  transfers  joint-crashes  schedule  wall-ms',
);
let failures = 0;
for (const seed of seeds) {
  const started = performance.now();
  try {
    const r = await runSimulation({
      ...(nodes === undefined ? {} : { nodes }),
      ...(values['small-batches'] ? { tuning: SMALL_BATCHES } : {}),
      ...(values.membership ? { membership: true } : {}),
      ...(values.plan === undefined ? {} : { membership: values.plan as MembershipPlanName }),
      ...(values['crash-in-joint'] ? { crashInJoint: true } : {}),
      ...(values['figure-8'] ? { figure8: true } : {}),
      ...(values['install-during-apply'] ? { installDuringApply: true } : {}),
      ...extra,
      ...(values['leader-churn'] ? { leaderChurn: true } : {}),
      ...(values.log ? { log: (line: string) => console.log(line) } : {}),
      seed,
    });
    const cols = [
      r.seed,
      r.events,
      r.virtualMs,
      r.leaderTerms,
      r.writesAcknowledged,
      r.writesUnknown,
      r.writesApplied,
      r.readsCompleted,
      r.crashes,
      r.crashesInFlight,
      r.closes,
      r.partitions,
      r.storageFailures,
      r.supervisorRestarts,
      r.slowStorageCalls,
      r.snapshotsTaken,
      r.snapshotsInstalled,
      r.membershipChanges,
      r.transfers,
      r.crashesInJoint,
      r.schedulePlayed ? 'played' : '-',
      Math.round(performance.now() - started),
    ];
    const widths = [5, 8, 11, 6, 6, 8, 8, 6, 8, 10, 7, 11, 8, 9, 8, 11, 15, 8, 10, 14, 9, 8];
    console.log(cols.map((c, i) => String(c).padStart(widths[i] ?? 6)).join(' '));
  } catch (error) {
    failures++;
    console.log(error instanceof SimulationFailure ? error.message : error);
  }
}
console.log(`${seeds.length - failures} passed, ${failures} failed`);
process.exitCode = failures > 0 ? 1 : 0;

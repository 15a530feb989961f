/** Every nemesis scenario, in the order the report lists them. A new one is one more here. */
import type { Scenario } from '../scenario.ts';
import { membershipJoint, membershipRemoveAdd, transferLeader } from './membership-faults.ts';
import {
  partitionBridge,
  partitionHalves,
  partitionLeader,
  partitionOneWay,
} from './partition-faults.ts';
import { postgresHang, postgresKill, postgresStop } from './postgres-faults.ts';
import { killAll, killFollower, killLeader, killMajority, pauseLeader } from './process-faults.ts';
import { snapshotCatchUp } from './snapshot-faults.ts';

export const SCENARIOS: readonly Scenario[] = [
  killLeader,
  killFollower,
  killMajority,
  killAll,
  pauseLeader,
  partitionLeader,
  partitionHalves,
  partitionBridge,
  partitionOneWay,
  postgresStop,
  postgresKill,
  postgresHang,
  snapshotCatchUp,
  membershipRemoveAdd,
  membershipJoint,
  transferLeader,
];

/** The scenarios named in `names` (all when empty); throws on a name that is none of them. */
export function scenariosNamed(names: readonly string[]): Scenario[] {
  if (names.length === 0) return [...SCENARIOS];
  return names.map((name) => {
    const scenario = SCENARIOS.find((candidate) => candidate.name === name);
    if (scenario === undefined) {
      throw new Error(
        `no nemesis scenario "${name}"; the scenarios are ${SCENARIOS.map((s) => s.name).join(', ')}`,
      );
    }
    return scenario;
  });
}

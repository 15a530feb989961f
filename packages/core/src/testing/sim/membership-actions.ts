import type { ClusterConfig } from '../../configuration.ts';
import type { ChangeMode, MembershipChange } from '../../engine/membership-change.ts';
import type { NodeId } from '../../log-entry.ts';
import { type RandomSource, randomInt } from '../../random.ts';

/** What a simulated operator asks the leader for. */
export type MembershipAction =
  | {
      readonly kind: 'change';
      readonly what: string;
      readonly change: MembershipChange;
      readonly mode: ChangeMode;
    }
  | { readonly kind: 'transfer'; readonly to: NodeId | undefined };

/**
 * Picks an operator's action for a cluster whose configuration is `config` (not joint), among
 * the `servers` that exist: grow (add a learner to promote, or a voter), shrink (remove a voter,
 * the leader included), replace one voter, replace every voter at once through joint
 * consensus, demote a voter to a learner, or transfer leadership. Voters stay between 3 and 5,
 * so that the cluster can always make progress once faults heal.
 */
export function pickMembershipAction(
  random: RandomSource,
  config: ClusterConfig,
  servers: readonly NodeId[],
): MembershipAction {
  const voters = [...config.voters];
  const learners = [...(config.learners ?? [])];
  const outside = servers.filter((id) => !voters.includes(id) && !learners.includes(id));
  const pick = <T>(items: readonly T[]): T => items[randomInt(random, 0, items.length)]!;
  const mode: ChangeMode = random.next() < 0.3 ? 'joint' : 'auto';
  const roll = random.next();
  if (roll < 0.15) {
    return { kind: 'transfer', to: random.next() < 0.5 ? undefined : pick(voters) };
  }
  if (roll < 0.35 && outside.length > 0) {
    const id = pick(outside);
    return {
      kind: 'change',
      what: `add ${id} as a learner to promote`,
      change: {
        voters,
        learners: [...learners, id],
        autoPromote: [...(config.autoPromote ?? []), id],
      },
      mode,
    };
  }
  if (roll < 0.45 && outside.length > 0 && voters.length < 5) {
    const id = pick(outside);
    return {
      kind: 'change',
      what: `add ${id} as a voter`,
      change: { voters: [...voters, id], learners },
      mode,
    };
  }
  if (roll < 0.6 && voters.length > 3) {
    const id = pick(voters);
    return {
      kind: 'change',
      what: `remove ${id}`,
      change: { voters: voters.filter((v) => v !== id), learners },
      mode,
    };
  }
  if (roll < 0.7 && voters.length > 3) {
    const id = pick(voters);
    return {
      kind: 'change',
      what: `demote ${id} to a learner`,
      change: { voters: voters.filter((v) => v !== id), learners: [...learners, id] },
      mode,
    };
  }
  if (roll < 0.85 && outside.length > 0) {
    const out = pick(voters);
    const inn = pick(outside);
    return {
      kind: 'change',
      what: `replace ${out} by ${inn}`,
      change: { voters: [...voters.filter((v) => v !== out), inn], learners },
      mode,
    };
  }
  // Replace every voter at once (as far as the servers allow): three voters drawn anew.
  const shuffled = [...servers];
  for (let i = shuffled.length - 1; i > 0; i--) {
    const j = randomInt(random, 0, i + 1);
    [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
  }
  const next = shuffled.slice(0, 3);
  return {
    kind: 'change',
    what: `replace the voters by ${next.join(', ')}`,
    change: { voters: next, learners: learners.filter((id) => !next.includes(id)) },
    mode,
  };
}

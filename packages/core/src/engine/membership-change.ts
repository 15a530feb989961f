import { type ClusterConfig, isJoint, members, validateConfig } from '../configuration.ts';
import type { NodeId } from '../log-entry.ts';

/**
 * The membership a caller asks for. Members of the current configuration that it does not list
 * leave the cluster. `addresses` adds or replaces members' addresses; addresses of members that
 * leave are dropped.
 */
export interface MembershipChange {
  readonly voters: readonly NodeId[];
  readonly learners?: readonly NodeId[];
  /** Learners to promote to voters once caught up (see `EngineTuning.promotionLagEntries`). */
  readonly autoPromote?: readonly NodeId[];
  readonly addresses?: Readonly<Record<NodeId, string>>;
}

/**
 * How a change of the voters is made:
 * - `auto` (default): one step when at most one voter is added or removed (thesis 4.1), joint
 *   consensus otherwise;
 * - `joint`: always through C_old,new (Raft paper 6), even for one voter.
 */
export type ChangeMode = 'auto' | 'joint';

/** The configuration entry to append for `change`, starting from the non-joint `current`. */
export function planChange(
  current: ClusterConfig,
  change: MembershipChange,
  mode: ChangeMode,
): { config: ClusterConfig; joint: boolean } {
  const target: ClusterConfig = {
    voters: [...change.voters],
    ...(change.learners === undefined ? {} : { learners: [...change.learners] }),
    ...(change.autoPromote === undefined ? {} : { autoPromote: [...change.autoPromote] }),
  };
  validateConfig(target);
  const incoming = members(target);
  for (const id of Object.keys(change.addresses ?? {})) {
    if (!incoming.includes(id)) {
      throw new TypeError(
        `an address is given for "${id}", which the change does not make a member`,
      );
    }
  }
  const added = target.voters.filter((id) => !current.voters.includes(id));
  const removed = current.voters.filter((id) => !target.voters.includes(id));
  const joint =
    mode === 'joint' ? added.length + removed.length > 0 : added.length + removed.length > 1;
  const config: ClusterConfig = joint ? { ...target, outgoingVoters: [...current.voters] } : target;
  const withAddresses = withMemberAddresses(config, { ...current.addresses, ...change.addresses });
  validateConfig(withAddresses);
  return { config: withAddresses, joint };
}

/** C_new, which a leader appends once C_old,new is committed (Raft paper 6). */
export function leaveJoint(joint: ClusterConfig): ClusterConfig {
  if (!isJoint(joint)) return joint;
  const { outgoingVoters: _, ...rest } = joint;
  return withMemberAddresses(rest, joint.addresses ?? {});
}

/** The one-step change that makes learner `id` a voter (thesis 4.1). */
export function promoteLearner(config: ClusterConfig, id: NodeId): ClusterConfig {
  const learners = (config.learners ?? []).filter((l) => l !== id);
  const autoPromote = (config.autoPromote ?? []).filter((l) => l !== id);
  return withMemberAddresses(
    {
      voters: [...config.voters, id],
      ...(learners.length > 0 ? { learners } : {}),
      ...(autoPromote.length > 0 ? { autoPromote } : {}),
    },
    config.addresses ?? {},
  );
}

/** `config` with the addresses of its members among `addresses`. */
function withMemberAddresses(
  config: ClusterConfig,
  addresses: Readonly<Record<NodeId, string>>,
): ClusterConfig {
  const { addresses: _, ...rest } = config;
  const kept = Object.fromEntries(
    members(config).flatMap((id) => (addresses[id] === undefined ? [] : [[id, addresses[id]]])),
  );
  return Object.keys(kept).length === 0 ? rest : { ...rest, addresses: kept };
}

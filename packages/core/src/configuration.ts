import type { NodeId } from './log-entry.ts';

/**
 * Cluster membership. `voters` decide elections and commitment by majority. During a joint
 * configuration (Raft paper 6) `outgoingVoters` is non-empty and decisions need a majority of
 * both sets. `learners` receive the log but never vote and never count toward a quorum.
 */
export interface ClusterConfig {
  readonly voters: readonly NodeId[];
  readonly outgoingVoters?: readonly NodeId[];
  readonly learners?: readonly NodeId[];
}

/** Every member that receives the log: voters of both halves and learners, without duplicates. */
export function members(config: ClusterConfig): NodeId[] {
  return [
    ...new Set([...config.voters, ...(config.outgoingVoters ?? []), ...(config.learners ?? [])]),
  ];
}

/** Whether `id` may vote in `config` (in either half of a joint configuration). */
export function isVoter(config: ClusterConfig, id: NodeId): boolean {
  return config.voters.includes(id) || (config.outgoingVoters ?? []).includes(id);
}

/** Checks a configuration for mistakes a caller can make; throws a `TypeError` that says which. */
export function validateConfig(config: ClusterConfig): void {
  if (config.voters.length === 0)
    throw new TypeError('a cluster configuration needs at least one voter');
  const seen = new Set<NodeId>();
  for (const id of config.voters) {
    if (typeof id !== 'string' || id.length === 0)
      throw new TypeError('node ids must be non-empty strings');
    if (seen.has(id)) throw new TypeError(`node id "${id}" is listed twice among the voters`);
    seen.add(id);
  }
  for (const id of config.learners ?? []) {
    if (seen.has(id)) throw new TypeError(`node id "${id}" cannot be both a voter and a learner`);
  }
}

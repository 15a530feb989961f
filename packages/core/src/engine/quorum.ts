import type { ClusterConfig } from '../configuration.ts';
import type { NodeId } from '../log-entry.ts';

/**
 * Quorum arithmetic over a configuration. In a joint configuration (Raft paper 6) every decision
 * needs a majority of the incoming voters AND a majority of the outgoing voters; learners never
 * count.
 */

/** Highest index that a majority of `voters` hold, given each voter's match index. */
function majorityIndex(voters: readonly NodeId[], matchOf: (id: NodeId) => number): number {
  if (voters.length === 0) return Number.POSITIVE_INFINITY;
  const matches = voters.map(matchOf).sort((a, b) => b - a);
  return matches[Math.floor(voters.length / 2)] ?? 0;
}

/** Highest index held by a quorum of the configuration (both halves when joint). */
export function quorumIndex(config: ClusterConfig, matchOf: (id: NodeId) => number): number {
  const incoming = majorityIndex(config.voters, matchOf);
  const outgoing = majorityIndex(config.outgoingVoters ?? [], matchOf);
  return Math.min(incoming, outgoing);
}

export type VoteResult = 'won' | 'lost' | 'pending';

function majorityVote(voters: readonly NodeId[], votes: ReadonlyMap<NodeId, boolean>): VoteResult {
  if (voters.length === 0) return 'won';
  let granted = 0;
  let missing = 0;
  for (const id of voters) {
    const vote = votes.get(id);
    if (vote === undefined) missing++;
    else if (vote) granted++;
  }
  const needed = Math.floor(voters.length / 2) + 1;
  if (granted >= needed) return 'won';
  if (granted + missing >= needed) return 'pending';
  return 'lost';
}

/** Outcome of an election given the votes received so far (Raft paper 5.2). */
export function voteResult(config: ClusterConfig, votes: ReadonlyMap<NodeId, boolean>): VoteResult {
  const incoming = majorityVote(config.voters, votes);
  const outgoing = majorityVote(config.outgoingVoters ?? [], votes);
  if (incoming === 'lost' || outgoing === 'lost') return 'lost';
  if (incoming === 'won' && outgoing === 'won') return 'won';
  return 'pending';
}

/** Whether the members in `active` form a quorum (CheckQuorum, ReadIndex confirmation). */
export function hasQuorum(config: ClusterConfig, active: (id: NodeId) => boolean): boolean {
  const votes = new Map<NodeId, boolean>();
  for (const id of [...config.voters, ...(config.outgoingVoters ?? [])]) votes.set(id, active(id));
  return voteResult(config, votes) === 'won';
}

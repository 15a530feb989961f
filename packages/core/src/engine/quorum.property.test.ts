import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ClusterConfig } from '../configuration.ts';
import type { NodeId } from '../log-entry.ts';
import { hasQuorum, quorumIndex, type VoteResult, voteResult } from './quorum.ts';

/**
 * Quorum arithmetic against brute-force definitions (Raft paper 5.2, 5.3, and 6 for joint
 * consensus): a set of nodes is a quorum iff it holds a strict majority of the voters, and of the
 * outgoing voters too in a joint configuration. Learners and strangers never count.
 */

const IDS = ['a', 'b', 'c', 'd', 'e', 'f', 'g'];

const configArb: fc.Arbitrary<ClusterConfig> = fc
  .record({
    voters: fc.subarray(IDS, { minLength: 1 }),
    outgoing: fc.option(fc.subarray(IDS), { nil: undefined }),
    learners: fc.subarray(IDS),
  })
  .map(({ voters, outgoing, learners }) => ({
    voters,
    ...(outgoing === undefined ? {} : { outgoingVoters: outgoing }),
    // A learner is never a voter of either half.
    learners: learners.filter((id) => !voters.includes(id) && !(outgoing ?? []).includes(id)),
  }));

/** A strict majority of `voters` is in `members` (vacuously true for no voters). */
function majorityIn(voters: readonly NodeId[], members: (id: NodeId) => boolean): boolean {
  return voters.length === 0 || voters.filter(members).length * 2 > voters.length;
}

/** The definition of a quorum: a majority of each half of the configuration. */
function isQuorum(config: ClusterConfig, members: (id: NodeId) => boolean): boolean {
  return majorityIn(config.voters, members) && majorityIn(config.outgoingVoters ?? [], members);
}

/** Every way the missing voters may still vote. */
function completions(
  config: ClusterConfig,
  votes: ReadonlyMap<NodeId, boolean>,
): Map<NodeId, boolean>[] {
  const missing = [...new Set([...config.voters, ...(config.outgoingVoters ?? [])])].filter(
    (id) => !votes.has(id),
  );
  const out: Map<NodeId, boolean>[] = [];
  for (let mask = 0; mask < 1 << missing.length; mask++) {
    const full = new Map(votes);
    missing.forEach((id, bit) => {
      full.set(id, (mask & (1 << bit)) !== 0);
    });
    out.push(full);
  }
  return out;
}

/** Won when the granted votes are a quorum; lost when no way the rest vote makes one. */
function bruteForceVote(config: ClusterConfig, votes: ReadonlyMap<NodeId, boolean>): VoteResult {
  const granted = (v: ReadonlyMap<NodeId, boolean>) => (id: NodeId) => v.get(id) === true;
  if (isQuorum(config, granted(votes))) return 'won';
  if (completions(config, votes).some((full) => isQuorum(config, granted(full)))) return 'pending';
  return 'lost';
}

describe('quorum arithmetic against brute force', () => {
  it('quorumIndex: an index is at or below it iff a quorum has a match index at least that high', () => {
    fc.assert(
      fc.property(configArb, fc.array(fc.nat(10), { minLength: IDS.length }), (config, values) => {
        const matchOf = (id: NodeId) => values[IDS.indexOf(id)] ?? 0;
        const q = quorumIndex(config, matchOf);
        for (let index = 0; index <= 11; index++) {
          expect(q >= index, `index ${index}, quorumIndex ${q}`).toBe(
            isQuorum(config, (id) => matchOf(id) >= index),
          );
        }
        // It is one of the match indexes (or 0): a quorum really holds it.
        expect([0, ...values]).toContain(q);
      }),
      { numRuns: 1000 },
    );
  });

  it('voteResult: won iff the granted votes form a quorum, lost iff no outcome of the missing votes can', () => {
    fc.assert(
      fc.property(
        configArb,
        // Votes from any node, learners and strangers included: only voters may count.
        fc.array(fc.option(fc.boolean(), { nil: undefined }), {
          minLength: IDS.length + 1,
          maxLength: IDS.length + 1,
        }),
        (config, drawn) => {
          const votes = new Map<NodeId, boolean>();
          [...IDS, 'stranger'].forEach((id, i) => {
            const vote = drawn[i];
            if (vote !== undefined) votes.set(id, vote);
          });
          expect(voteResult(config, votes)).toBe(bruteForceVote(config, votes));
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('hasQuorum: true iff the active nodes hold a majority of each half', () => {
    fc.assert(
      fc.property(configArb, fc.subarray([...IDS, 'stranger']), (config, activeIds) => {
        const active = (id: NodeId) => activeIds.includes(id);
        expect(hasQuorum(config, active)).toBe(isQuorum(config, active));
      }),
      { numRuns: 1000 },
    );
  });
});

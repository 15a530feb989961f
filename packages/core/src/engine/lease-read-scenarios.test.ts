import { describe, expect, it } from 'vitest';
import { seededRandom } from '../random.ts';
import type { EngineTuning } from './engine-options.ts';
import { RaftEngine } from './raft-engine.ts';
import { Cluster, voteRequest } from './scenario-harness.test-helpers.ts';

/**
 * Scenario tests of lease reads (thesis 6.4.1). With electionTicks 10 and maxClockDrift 0.1 a
 * lease lasts floor(9 / 1.1) - 1 = 7 ticks from the departure of the heartbeat round a quorum
 * acknowledged.
 */

const THREE = ['n1', 'n2', 'n3'];
const LEASE: Partial<EngineTuning> = {
  preVote: true,
  checkQuorum: true,
  leaseReads: true,
  maxClockDrift: 0.1,
};
const payload = (n: number) => new Uint8Array([n]);

/** A cluster led by n1 whose lease holds: a heartbeat round was sent and acknowledged. */
function leasedCluster(): Cluster {
  const cluster = new Cluster({ voters: THREE, tuning: LEASE });
  cluster.elect('n1');
  cluster.tick('n1', 3);
  cluster.stabilize();
  return cluster;
}

/** Asks `id` for a lease read and returns what its next Readies answer for it, if anything. */
function leaseRead(cluster: Cluster, id: string, readId: string) {
  cluster.engine(id).readIndex(readId, { lease: true });
  const readies = cluster.flush(id);
  const answer = readies.flatMap((r) => r.reads).find((r) => r.id === readId);
  return { answer, readies };
}

describe('Thesis 6.4.1, lease reads', () => {
  it('while the lease holds, the leader answers a lease read at once with its commit index, without a heartbeat round', () => {
    const cluster = leasedCluster();
    cluster.engine('n1').propose([payload(1)]);
    cluster.stabilize();
    const { answer, readies } = leaseRead(cluster, 'n1', 'r1');
    expect(answer).toEqual({ id: 'r1', index: 2 });
    expect(readies.flatMap((r) => r.messages)).toEqual([]);
  });

  it('the first read of a new leader takes a heartbeat round (no lease yet); the reads after it ride the lease', () => {
    const cluster = new Cluster({ voters: THREE, tuning: LEASE });
    cluster.elect('n1');
    const first = leaseRead(cluster, 'n1', 'r1');
    expect(first.answer).toBeUndefined();
    expect(first.readies.flatMap((r) => r.messages).map((m) => m.type)).toEqual([
      'heartbeat',
      'heartbeat',
    ]);
    cluster.stabilize();
    expect(cluster.reads('n1')).toEqual([{ id: 'r1', index: 1 }]);
    expect(leaseRead(cluster, 'n1', 'r2').answer).toEqual({ id: 'r2', index: 1 });
  });

  it('once leaseTicks pass without a newer acknowledged round, a lease read takes the ReadIndex path', () => {
    const cluster = leasedCluster();
    cluster.isolate('n2', 'n3');
    cluster.tick('n1', 7);
    cluster.stabilize();
    expect(leaseRead(cluster, 'n1', 'r1').answer).toEqual({ id: 'r1', index: 1 });
    cluster.tick('n1');
    expect(leaseRead(cluster, 'n1', 'r2').answer).toBeUndefined();
  });

  it('a leader transferring leadership does not trust its lease', () => {
    const cluster = leasedCluster();
    cluster.isolate('n2');
    cluster.engine('n1').transferLeadership({ to: 'n2' });
    expect(leaseRead(cluster, 'n1', 'r1').answer).toBeUndefined();
  });

  it('without leaseReads, a lease read takes the ReadIndex path', () => {
    const cluster = new Cluster({ voters: THREE, tuning: { checkQuorum: true } });
    cluster.elect('n1');
    cluster.tick('n1', 3);
    cluster.stabilize();
    expect(leaseRead(cluster, 'n1', 'r1').answer).toBeUndefined();
  });

  it('leaseReads without checkQuorum, or with an election timeout too short for the drift bound, is a TypeError', () => {
    const options = {
      id: 'n1',
      config: { voters: THREE },
      hardState: { term: 0, votedFor: null, commitIndex: 0 },
      snapshot: { index: 0, term: 0 },
      entries: [],
      applied: 0,
      random: seededRandom(1),
    };
    expect(
      () => new RaftEngine({ ...options, tuning: { leaseReads: true, checkQuorum: false } }),
    ).toThrow(TypeError);
    expect(
      () =>
        new RaftEngine({
          ...options,
          tuning: { leaseReads: true, electionTicks: 3, heartbeatTicks: 1 },
        }),
    ).toThrow(TypeError);
  });

  it('with clocks within the drift bound, no other leader is elected before the old leader’s lease ends', () => {
    const cluster = leasedCluster();
    cluster.isolate('n1');
    let lastLeaseAnswer = -1;
    let newLeaderAt = -1;
    for (let tick = 1; tick <= 60 && newLeaderAt < 0; tick++) {
      for (const id of THREE) cluster.tick(id);
      cluster.stabilize();
      if (leaseRead(cluster, 'n1', `r${tick}`).answer !== undefined) lastLeaseAnswer = tick;
      if (['n2', 'n3'].some((id) => cluster.status(id).role === 'leader')) newLeaderAt = tick;
    }
    expect(lastLeaseAnswer).toBeGreaterThan(0);
    expect(newLeaderAt).toBeGreaterThan(lastLeaseAnswer);
  });

  it('the bound matters: when the followers’ clocks run three times faster than the leader’s, a lease read misses a committed write', () => {
    const cluster = leasedCluster();
    cluster.isolate('n1');
    // n1 sees 5 ticks pass (within its 7-tick lease) while n2 and n3 see 15 each.
    for (let tick = 1; tick <= 5; tick++) {
      cluster.tick('n1');
      for (let fast = 0; fast < 3; fast++) {
        cluster.tick('n2');
        cluster.tick('n3');
        cluster.stabilize();
      }
    }
    let newLeader = ['n2', 'n3'].find((id) => cluster.status(id).role === 'leader');
    for (let more = 0; newLeader === undefined && more < 30; more++) {
      // The followers' clocks keep racing; the leader's is paused (still within its lease).
      cluster.tick('n2');
      cluster.tick('n3');
      cluster.stabilize();
      newLeader = ['n2', 'n3'].find((id) => cluster.status(id).role === 'leader');
    }
    expect(newLeader).toBeDefined();
    const write = cluster.engine(newLeader!).propose([payload(9)]);
    cluster.stabilize();
    expect(write).toMatchObject({ ok: true });
    const writeIndex = (write as { index: number }).index;
    expect(cluster.status(newLeader!).commitIndex).toBeGreaterThanOrEqual(writeIndex);

    // The write completed; a read that starts now must see it. The old leader's lease says yes.
    const { answer } = leaseRead(cluster, 'n1', 'stale');
    expect(answer).toEqual({ id: 'stale', index: 1 });
    expect(writeIndex).toBeGreaterThan(1);
  });

  it('a restarted voter refuses votes for its first election timeout, since it may have acknowledged a leader’s heartbeat before it crashed', () => {
    const cluster = leasedCluster();
    cluster.restart('n3');
    const vote = voteRequest({ from: 'n2', to: 'n3', term: 2, lastIndex: 1, lastTerm: 1 });
    cluster.engine('n3').step(vote);
    expect(cluster.status('n3')).toMatchObject({ term: 1 });
    cluster.tick('n3', 9);
    cluster.engine('n3').step(vote);
    expect(cluster.status('n3')).toMatchObject({ term: 1 });
    cluster.tick('n3');
    cluster.engine('n3').step(vote);
    expect(cluster.status('n3')).toMatchObject({ term: 2, votedFor: 'n2' });
  });
});

import { describe, expect, it } from 'vitest';
import type { EngineTuning } from './engine-options.ts';
import { Cluster, voteRequest } from './scenario-harness.test-helpers.ts';

/**
 * Scenario tests of leadership transfer (thesis 3.10), with PreVote and CheckQuorum on as they are
 * by default: a transfer must get past both.
 */

const THREE = ['n1', 'n2', 'n3'];
const THESIS: Partial<EngineTuning> = { preVote: true, checkQuorum: true };
const payload = (n: number) => new Uint8Array([n]);

function messagesOfType(cluster: Cluster, type: string) {
  return cluster.delivered.filter((m) => m.type === type);
}

describe('Thesis 3.10, leadership transfer', () => {
  it('to a caught-up voter: TimeoutNow at once, and the target wins an election of the next term without waiting for its election timeout', () => {
    const cluster = new Cluster({ voters: THREE, tuning: THESIS });
    cluster.elect('n1');
    expect(cluster.engine('n1').transferLeadership({ to: 'n2' })).toEqual({
      ok: true,
      target: 'n2',
    });
    expect(cluster.status('n1').leadTransferee).toBe('n2');
    // No tick: the target campaigns on TimeoutNow, skipping PreVote; n3 heard from n1 a moment
    // ago and would ignore an ordinary candidate, but grants a transfer's vote.
    cluster.stabilize();
    expect(messagesOfType(cluster, 'timeout-now')).toEqual([
      { type: 'timeout-now', from: 'n1', to: 'n2', term: 1 },
    ]);
    expect(cluster.delivered).toContainEqual(
      expect.objectContaining({
        type: 'vote',
        from: 'n2',
        to: 'n3',
        prevote: false,
        transfer: true,
      }),
    );
    expect(cluster.status('n2')).toMatchObject({ role: 'leader', term: 2 });
    expect(cluster.status('n1')).toMatchObject({
      role: 'follower',
      term: 2,
      leaderId: 'n2',
      leadTransferee: null,
    });
  });

  it('the leader refuses proposals while it transfers, pointing at the target', () => {
    const cluster = new Cluster({ voters: THREE, tuning: THESIS });
    cluster.elect('n1');
    cluster.isolate('n2');
    cluster.engine('n1').propose([payload(1)]);
    cluster.stabilize();
    cluster.engine('n1').transferLeadership({ to: 'n2' });
    expect(cluster.engine('n1').propose([payload(2)])).toEqual({
      ok: false,
      reason: 'transferring',
      target: 'n2',
    });
    expect(cluster.engine('n1').proposeConfigChange({ voters: ['n1', 'n2'] })).toEqual({
      ok: false,
      reason: 'transferring',
      target: 'n2',
    });
  });

  it('to a lagging voter: the leader first brings its log up to date, then sends TimeoutNow', () => {
    const cluster = new Cluster({ voters: THREE, tuning: THESIS });
    cluster.elect('n1');
    cluster.isolate('n2');
    cluster.engine('n1').propose([payload(1), payload(2), payload(3)]);
    cluster.stabilize();
    expect(cluster.status('n2').lastIndex).toBe(1);
    cluster.engine('n1').transferLeadership({ to: 'n2' });
    cluster.stabilize();
    expect(messagesOfType(cluster, 'timeout-now')).toEqual([]);

    cluster.heal();
    cluster.tick('n1', 3);
    cluster.stabilize();
    const toN2 = cluster.delivered.filter((m) => m.from === 'n1' && m.to === 'n2');
    const timeoutNow = toN2.findIndex((m) => m.type === 'timeout-now');
    const lastAppend = toN2.findLastIndex((m) => m.type === 'append' && m.entries.length > 0);
    expect(timeoutNow).toBeGreaterThan(lastAppend);
    expect(cluster.status('n2')).toMatchObject({ role: 'leader', term: 2 });
    // The new leader holds every entry of the old one.
    expect(cluster.logTerms('n2')).toEqual([1, 1, 1, 1, 2]);
  });

  it('without a target, the voter with the most up-to-date log is chosen', () => {
    const cluster = new Cluster({ voters: ['n1', 'n2', 'n3', 'n4', 'n5'], tuning: THESIS });
    cluster.elect('n1');
    cluster.isolate('n2', 'n3', 'n5');
    cluster.engine('n1').propose([payload(1)]);
    cluster.stabilize();
    cluster.heal();
    expect(cluster.engine('n1').transferLeadership()).toEqual({ ok: true, target: 'n4' });
  });

  it('when the target does not take over within the timeout (an election timeout by default), the leader resumes', () => {
    const cluster = new Cluster({ voters: THREE, tuning: THESIS });
    cluster.elect('n1');
    cluster.isolate('n2');
    cluster.engine('n1').transferLeadership({ to: 'n2' });
    for (let i = 0; i < 9; i++) {
      cluster.tick('n1');
      cluster.tick('n3');
      cluster.stabilize();
    }
    expect(cluster.status('n1').leadTransferee).toBe('n2');
    cluster.tick('n1');
    expect(cluster.status('n1')).toMatchObject({ role: 'leader', term: 1, leadTransferee: null });
    expect(cluster.engine('n1').propose([payload(1)])).toMatchObject({ ok: true });
  });

  it('a TimeoutNow that is lost is sent again when the caught-up target answers a heartbeat', () => {
    const cluster = new Cluster({ voters: THREE, tuning: THESIS });
    cluster.elect('n1');
    cluster.engine('n1').transferLeadership({ to: 'n2' });
    cluster.flush('n1');
    expect(cluster.drop({ type: 'timeout-now' })).toHaveLength(1);
    cluster.tick('n1', 3);
    cluster.stabilize();
    expect(cluster.status('n2')).toMatchObject({ role: 'leader', term: 2 });
  });

  it('a target that crashes once TimeoutNow left, and stays down: the transfer times out and the leader resumes', () => {
    const cluster = new Cluster({ voters: THREE, tuning: THESIS });
    cluster.elect('n1');
    cluster.engine('n1').transferLeadership({ to: 'n2', timeoutTicks: 5 });
    cluster.flush('n1');
    expect(cluster.pending.map((m) => m.type)).toContain('timeout-now');
    cluster.restart('n2'); // the TimeoutNow in flight is lost with it
    cluster.isolate('n2');
    for (let i = 0; i < 5; i++) {
      cluster.tick('n1');
      cluster.stabilize();
    }
    expect(cluster.status('n1')).toMatchObject({ role: 'leader', term: 1, leadTransferee: null });
    expect(cluster.status('n2')).toMatchObject({ role: 'follower', term: 1 });
  });

  it('a target that crashes while campaigning: the election still picks one leader, and no entry is lost', () => {
    const cluster = new Cluster({ voters: THREE, tuning: THESIS });
    cluster.elect('n1');
    cluster.engine('n1').propose([payload(1)]);
    cluster.stabilize();
    cluster.engine('n1').transferLeadership({ to: 'n2' });
    cluster.stabilize({ hold: { type: 'vote', from: 'n2' } });
    expect(cluster.status('n2')).toMatchObject({ role: 'candidate', term: 2 });
    // n1 learns of term 2 from a vote request and steps down; then n2 crashes.
    cluster.deliver({ type: 'vote', to: 'n1' });
    cluster.drop();
    cluster.restart('n2');
    expect(cluster.status('n1').role).toBe('follower');
    // Someone wins a later election, with every committed entry.
    for (
      let round = 0;
      round < 10 && !THREE.some((id) => cluster.status(id).role === 'leader');
      round++
    ) {
      for (const id of THREE) cluster.tick(id, 10);
      cluster.stabilize();
    }
    const leaders = THREE.filter((id) => cluster.status(id).role === 'leader');
    expect(leaders).toHaveLength(1);
    expect(cluster.logTerms(leaders[0]!).slice(0, 2)).toEqual([1, 1]);
  });

  it('bad targets are TypeErrors; a second transfer to another target is refused; non-leaders refuse', () => {
    const cluster = new Cluster({ voters: THREE, learners: ['n4'], tuning: THESIS });
    cluster.elect('n1');
    const leader = cluster.engine('n1');
    expect(() => leader.transferLeadership({ to: 'n4' })).toThrow(TypeError);
    expect(() => leader.transferLeadership({ to: 'n9' })).toThrow(TypeError);
    expect(() => leader.transferLeadership({ to: 'n1' })).toThrow(TypeError);
    expect(() => leader.transferLeadership({ to: 'n2', timeoutTicks: 0 })).toThrow(TypeError);
    expect(cluster.status('n1').leadTransferee).toBeNull();
    cluster.isolate('n2');
    expect(leader.transferLeadership({ to: 'n2' })).toEqual({ ok: true, target: 'n2' });
    expect(leader.transferLeadership({ to: 'n2' })).toEqual({ ok: true, target: 'n2' });
    expect(leader.transferLeadership({ to: 'n3' })).toEqual({ ok: false, reason: 'transferring' });
    expect(cluster.engine('n2').transferLeadership()).toEqual({
      ok: false,
      reason: 'not-leader',
      leaderHint: 'n1',
    });
  });

  it('a single voter has no one to hand over to', () => {
    const cluster = new Cluster({ voters: ['n1'], learners: ['n2'] });
    cluster.elect('n1');
    expect(cluster.engine('n1').transferLeadership()).toEqual({ ok: false, reason: 'no-target' });
  });

  it('a TimeoutNow reaching a learner is ignored', () => {
    const cluster = new Cluster({ voters: THREE, learners: ['n4'], tuning: THESIS });
    cluster.elect('n1');
    cluster.engine('n4').step({ type: 'timeout-now', from: 'n1', to: 'n4', term: 1 });
    expect(cluster.status('n4')).toMatchObject({ role: 'follower', term: 1 });
  });

  it('thesis 4.2.3: an ordinary candidate is still ignored within the lease; only the transfer flag gets past it', () => {
    const cluster = new Cluster({ voters: THREE, tuning: THESIS });
    cluster.elect('n1');
    const vote = voteRequest({ from: 'n2', to: 'n3', term: 2, lastIndex: 1, lastTerm: 1 });
    cluster.engine('n3').step(vote);
    expect(cluster.status('n3')).toMatchObject({ term: 1, votedFor: 'n1' });
    cluster.engine('n3').step({ ...vote, transfer: true });
    expect(cluster.status('n3')).toMatchObject({ term: 2, votedFor: 'n2' });
  });
});

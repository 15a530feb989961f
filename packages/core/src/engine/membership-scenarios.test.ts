import { describe, expect, it } from 'vitest';
import { type ClusterConfig, decodeConfig } from '../configuration.ts';
import { InvariantViolationError } from '../errors.ts';
import type { NodeId } from '../log-entry.ts';
import type { Message } from '../message.ts';
import { Cluster } from './scenario-harness.test-helpers.ts';

/**
 * Scenario tests of membership changes: each names the rule of the Raft paper (section 6) or of
 * Ongaro's thesis (chapter 4) that it checks, builds the situation by hand, and asserts the
 * outcome.
 */

const THREE = ['n1', 'n2', 'n3'];
const FIVE = ['n1', 'n2', 'n3', 'n4', 'n5'];
const payload = (n: number) => new Uint8Array([n]);

/** The configurations in the durable log of `id`, in order. */
function configEntries(cluster: Cluster, id: NodeId): ClusterConfig[] {
  return cluster
    .disk(id)
    .entries.filter((e) => e.type === 'config')
    .map((e) => decodeConfig(e.data));
}

/** Sends a heartbeat round from `leader` and lets the cluster settle (commit indexes spread). */
function heartbeat(cluster: Cluster, leader: NodeId): void {
  cluster.tick(leader, 3);
  cluster.stabilize();
}

describe('Raft paper 6, joint consensus', () => {
  it('a change of several voters goes through C_old,new; the leader appends C_new by itself once C_old,new commits', () => {
    const cluster = new Cluster({ voters: THREE, others: ['n4', 'n5'] });
    cluster.elect('n1');

    const result = cluster.engine('n1').proposeConfigChange({ voters: FIVE });
    expect(result).toEqual({ ok: true, index: 2, term: 1, joint: true });
    // It takes effect on the leader as soon as it is appended.
    expect(cluster.status('n1')).toMatchObject({
      config: { voters: FIVE, outgoingVoters: THREE },
      configIndex: 2,
    });

    cluster.stabilize();
    heartbeat(cluster, 'n1');
    for (const id of FIVE) {
      expect(configEntries(cluster, id)).toEqual([
        { voters: FIVE, outgoingVoters: THREE },
        { voters: FIVE },
      ]);
      expect(cluster.status(id)).toMatchObject({
        commitIndex: 3,
        config: { voters: FIVE },
        configIndex: 3,
      });
    }
  });

  it.each([
    ['a majority of C_old only', ['n4', 'n5']],
    ['a majority of C_new only', ['n2', 'n3']],
  ])(
    'in C_old,new an entry held by %s does not commit; held by both majorities it does',
    (_what, cut) => {
      // C_old = {n1, n2, n3}, C_new = {n1, n4, n5}.
      const cluster = new Cluster({ voters: THREE, others: ['n4', 'n5'] });
      cluster.elect('n1');
      cluster.isolate(...cut);
      const change = cluster.engine('n1').proposeConfigChange({ voters: ['n1', 'n4', 'n5'] });
      expect(change).toMatchObject({ ok: true, joint: true, index: 2 });
      cluster.stabilize();
      heartbeat(cluster, 'n1');
      const holders = FIVE.filter((id) => cluster.logTerms(id).length === 2);
      expect(holders).toEqual(FIVE.filter((id) => !cut.includes(id)));
      expect(cluster.status('n1').commitIndex).toBe(1);

      cluster.heal();
      heartbeat(cluster, 'n1');
      expect(cluster.status('n1')).toMatchObject({
        commitIndex: 3,
        config: { voters: ['n1', 'n4', 'n5'] },
      });
    },
  );

  it('in C_old,new an election needs a majority of C_old and a majority of C_new, and a server uses the joint configuration before it is committed', () => {
    // C_old = {n1, n2, n3}, C_new = {n1, n4, n5}: the joint entry reaches every log, uncommitted.
    const cluster = new Cluster({ voters: THREE, others: ['n4', 'n5'] });
    cluster.elect('n1');
    cluster.engine('n1').proposeConfigChange({ voters: ['n1', 'n4', 'n5'] });
    const acknowledgement = (m: Message) => m.type === 'append-response' && m.success;
    cluster.stabilize({ hold: acknowledgement });
    cluster.drop(acknowledgement);
    for (const id of ['n2', 'n3', 'n4', 'n5']) {
      expect(cluster.status(id)).toMatchObject({
        commitIndex: 1,
        config: { voters: ['n1', 'n4', 'n5'], outgoingVoters: THREE },
      });
    }

    // n1 fails. n2 wins n3's vote: a majority of C_old, none of C_new.
    cluster.isolate('n1', 'n4', 'n5');
    cluster.campaign('n2');
    cluster.stabilize();
    expect(cluster.status('n2')).toMatchObject({ role: 'candidate', term: 2 });

    // With the votes of n4 and n5 too (a majority of C_new), n2 wins.
    cluster.heal();
    cluster.isolate('n1');
    while (cluster.status('n2').term === 2) cluster.tick('n2');
    cluster.stabilize();
    const ledTerm3 = cluster
      .readies('n2')
      .some((r) => r.softState?.role === 'leader' && r.softState.term === 3);
    expect(ledTerm3).toBe(true);
    // n2 finished the change (C_old,new committed, C_new appended and committed), then, not
    // being in C_new, stepped down and handed leadership to n4.
    expect(configEntries(cluster, 'n4').at(-1)).toEqual({ voters: ['n1', 'n4', 'n5'] });
    expect(cluster.status('n2')).toMatchObject({ role: 'follower', term: 4 });
    expect(cluster.status('n4')).toMatchObject({
      role: 'leader',
      term: 4,
      config: { voters: ['n1', 'n4', 'n5'] },
    });
  });

  it('a leader that crashes between C_old,new and C_new: the next leader, elected by both majorities, finishes the change', () => {
    // C_old = {n1, n2, n3}, C_new = {n1, n2, n4, n5}.
    const cluster = new Cluster({ voters: THREE, others: ['n4', 'n5'] });
    cluster.elect('n1');
    const target = ['n1', 'n2', 'n4', 'n5'];
    cluster.engine('n1').proposeConfigChange({ voters: target });
    // C_old,new commits on n1, which appends C_new and persists it, but sends it to no one.
    cluster.stabilize({ hold: (m) => m.type === 'append' && m.entries.some((e) => e.index === 3) });
    expect(cluster.status('n1')).toMatchObject({ commitIndex: 2, lastIndex: 3 });
    expect(configEntries(cluster, 'n1').at(-1)).toEqual({ voters: target });
    cluster.drop();
    cluster.restart('n1');
    cluster.isolate('n1');

    cluster.elect('n2');
    heartbeat(cluster, 'n2');
    expect(cluster.status('n2')).toMatchObject({ config: { voters: target }, configIndex: 4 });
    expect(cluster.status('n2').commitIndex).toBe(4);

    // n1 returns: its C_new of term 1 is overwritten by n2's no-op, then n2's C_new arrives.
    cluster.heal();
    heartbeat(cluster, 'n2');
    expect(cluster.logTerms('n1')).toEqual([1, 1, 2, 2]);
    expect(cluster.status('n1')).toMatchObject({ config: { voters: target }, configIndex: 4 });
  });

  it('a configuration takes effect on a follower as soon as its entry is in its log, before it commits', () => {
    const cluster = new Cluster({ voters: THREE, others: ['n4'] });
    cluster.elect('n1');
    cluster.engine('n1').proposeConfigChange({ voters: [...THREE, 'n4'] });
    cluster.flush('n1');
    cluster.deliver({ type: 'append', to: 'n2' });
    cluster.flush('n2');
    expect(cluster.status('n2')).toMatchObject({
      commitIndex: 1,
      config: { voters: [...THREE, 'n4'] },
      configIndex: 2,
    });
  });

  it('a truncated configuration entry rolls back to the previous configuration', () => {
    const cluster = new Cluster({ voters: THREE, others: ['n4'] });
    cluster.elect('n1');
    // n1 appends (and persists) a configuration that reaches no one, then is cut off.
    cluster.engine('n1').proposeConfigChange({ voters: [...THREE, 'n4'] });
    cluster.flush('n1');
    cluster.drop();
    expect(cluster.status('n1')).toMatchObject({
      config: { voters: [...THREE, 'n4'] },
      configIndex: 2,
    });
    cluster.isolate('n1');
    cluster.elect('n2');

    // n2's no-op of term 2 overwrites index 2 on n1, and with it the configuration.
    cluster.heal();
    heartbeat(cluster, 'n2');
    expect(cluster.logTerms('n1')).toEqual([1, 2]);
    expect(cluster.status('n1')).toMatchObject({
      role: 'follower',
      config: { voters: THREE },
      configIndex: 0,
    });
  });

  it('one change at a time: while a configuration entry is uncommitted, or the configuration is joint, another change is refused and nothing is appended', () => {
    const cluster = new Cluster({ voters: THREE, others: ['n4', 'n5'] });
    cluster.elect('n1');
    const leader = cluster.engine('n1');
    expect(leader.proposeConfigChange({ voters: [...THREE, 'n4'] })).toMatchObject({ ok: true });
    expect(leader.proposeConfigChange({ voters: [...THREE, 'n5'] })).toEqual({
      ok: false,
      reason: 'change-in-progress',
    });
    expect(cluster.status('n1').lastIndex).toBe(2);
    cluster.stabilize();
    expect(cluster.status('n1')).toMatchObject({ commitIndex: 2, configIndex: 2 });

    // A joint change: refused while C_old,new is uncommitted, and while C_new is.
    expect(leader.proposeConfigChange({ voters: ['n1', 'n2', 'n5'] })).toMatchObject({
      ok: true,
      joint: true,
      index: 3,
    });
    expect(leader.proposeConfigChange({ voters: THREE })).toEqual({
      ok: false,
      reason: 'change-in-progress',
    });
    cluster.stabilize({ hold: (m) => m.type === 'append-response' && m.index === 4 });
    // C_old,new committed and C_new appended; C_new waits for its acknowledgements.
    expect(cluster.status('n1')).toMatchObject({ commitIndex: 3, lastIndex: 4 });
    expect(leader.proposeConfigChange({ voters: THREE })).toEqual({
      ok: false,
      reason: 'change-in-progress',
    });
    cluster.stabilize();
    expect(cluster.status('n1')).toMatchObject({
      commitIndex: 4,
      config: { voters: ['n1', 'n2', 'n5'] },
    });
    expect(leader.proposeConfigChange({ voters: THREE })).toMatchObject({ ok: true });
  });

  it.each([
    ['no voter', { voters: [] }],
    ['a voter twice', { voters: ['n1', 'n1'] }],
    ['a voter that is a learner too', { voters: THREE, learners: ['n3'] }],
    ['a promotion of a non-learner', { voters: THREE, autoPromote: ['n4'] }],
    ['an address of a non-member', { voters: THREE, addresses: { n9: 'http://n9' } }],
  ])('a change with %s is a TypeError that appends nothing', (_what, change) => {
    const cluster = new Cluster({ voters: THREE });
    cluster.elect('n1');
    expect(() => cluster.engine('n1').proposeConfigChange(change)).toThrow(TypeError);
    expect(cluster.status('n1')).toMatchObject({ lastIndex: 1, config: { voters: THREE } });
  });

  it('only the leader changes the membership; others name the leader they know', () => {
    const cluster = new Cluster({ voters: THREE });
    cluster.elect('n1');
    expect(cluster.engine('n2').proposeConfigChange({ voters: ['n1', 'n2'] })).toEqual({
      ok: false,
      reason: 'not-leader',
      leaderHint: 'n1',
    });
  });
});

describe('Thesis 4.1, single-server changes', () => {
  it('a change of one voter takes one step, and the new configuration decides the commitment of its own entry', () => {
    const cluster = new Cluster({ voters: THREE, others: ['n4'] });
    cluster.elect('n1');
    cluster.isolate('n3', 'n4');
    const result = cluster.engine('n1').proposeConfigChange({ voters: [...THREE, 'n4'] });
    expect(result).toEqual({ ok: true, index: 2, term: 1, joint: false });
    expect(cluster.status('n1').config).toEqual({ voters: [...THREE, 'n4'] });
    cluster.stabilize();
    // n1 and n2 are a majority of the old three, not of the new four.
    expect(cluster.logTerms('n2')).toEqual([1, 1]);
    expect(cluster.status('n1').commitIndex).toBe(1);

    cluster.heal();
    cluster.isolate('n3');
    heartbeat(cluster, 'n1');
    expect(cluster.status('n1')).toMatchObject({ commitIndex: 2, configIndex: 2 });
  });

  it('`joint` mode takes C_old,new even for one voter', () => {
    const cluster = new Cluster({ voters: THREE, others: ['n4'] });
    cluster.elect('n1');
    const result = cluster
      .engine('n1')
      .proposeConfigChange({ voters: [...THREE, 'n4'] }, { mode: 'joint' });
    expect(result).toMatchObject({ ok: true, joint: true });
    cluster.stabilize();
    expect(configEntries(cluster, 'n1')).toEqual([
      { voters: [...THREE, 'n4'], outgoingVoters: THREE },
      { voters: [...THREE, 'n4'] },
    ]);
  });

  it('the safety condition: a new leader appends no configuration before it has committed an entry of its term', () => {
    const cluster = new Cluster({ voters: THREE, others: ['n4'] });
    cluster.campaign('n1');
    cluster.stabilize({ hold: { type: 'append' } });
    expect(cluster.status('n1')).toMatchObject({ role: 'leader', commitIndex: 0, lastIndex: 1 });
    expect(cluster.engine('n1').proposeConfigChange({ voters: [...THREE, 'n4'] })).toEqual({
      ok: false,
      reason: 'leader-not-ready',
    });
    expect(cluster.status('n1').lastIndex).toBe(1);
    cluster.stabilize();
    expect(cluster.status('n1').commitIndex).toBe(1);
    expect(cluster.engine('n1').proposeConfigChange({ voters: [...THREE, 'n4'] })).toMatchObject({
      ok: true,
    });
  });

  it('removing a voter that is down lets a cluster that lost a majority of its old size commit again', () => {
    // {n1, n2, n3, n4} with n3 and n4 down: no majority. Removing n4 (one step) needs 2 of 3.
    const cluster = new Cluster({ voters: ['n1', 'n2', 'n3', 'n4'] });
    cluster.elect('n1');
    cluster.isolate('n3', 'n4');
    cluster.engine('n1').propose([payload(1)]);
    cluster.stabilize();
    expect(cluster.status('n1').commitIndex).toBe(1);
    cluster.engine('n1').proposeConfigChange({ voters: THREE });
    cluster.stabilize();
    // The configuration entry commits on n1 and n2 (2 of 3), and with it the command before it.
    expect(cluster.status('n1')).toMatchObject({ commitIndex: 3, config: { voters: THREE } });
  });
});

describe('Thesis 4.1, servers process requests without consulting their configurations', () => {
  it('a voter grants its vote to a candidate outside its latest configuration, and follows a leader outside it: a server just added wins with the vote of one that never heard of it', () => {
    const FOUR = [...THREE, 'n4'];
    const cluster = new Cluster({ voters: THREE, others: ['n4'] });
    cluster.elect('n1');
    // C_new = {n1, n2, n3, n4} commits on n1, n2 and n4; n3 is cut off and keeps C_old.
    cluster.isolate('n3');
    expect(cluster.engine('n1').proposeConfigChange({ voters: FOUR })).toMatchObject({
      ok: true,
      joint: false,
    });
    cluster.stabilize();
    heartbeat(cluster, 'n1');
    const { configIndex, commitIndex } = cluster.status('n1');
    expect(commitIndex).toBeGreaterThanOrEqual(configIndex);
    expect(cluster.status('n4').config).toEqual({ voters: FOUR });
    expect(cluster.status('n3').config).toEqual({ voters: THREE });

    // n1 fails. Of C_new, n4 needs three votes: its own, n2's, and n3's, which is not in n3's
    // configuration. n3 grants it (its log is behind n4's), so n4 leads.
    cluster.heal();
    cluster.isolate('n1');
    cluster.campaign('n4');
    cluster.stabilize();
    expect(cluster.status('n4')).toMatchObject({ role: 'leader', term: 2 });
    expect(
      cluster.delivered.some(
        (m) => m.type === 'vote-response' && m.from === 'n3' && m.to === 'n4' && m.granted,
      ),
    ).toBe(true);
    // n3 accepts AppendEntries from n4, a leader outside its configuration, and learns C_new.
    heartbeat(cluster, 'n4');
    expect(cluster.status('n3')).toMatchObject({
      role: 'follower',
      leaderId: 'n4',
      config: { voters: FOUR },
    });
  });
});

describe('Raft paper 6, a leader that is not part of C_new', () => {
  it('manages the cluster until C_new commits, without counting itself in C_new majorities, then steps down and hands over', () => {
    const cluster = new Cluster({ voters: THREE });
    cluster.elect('n1');
    cluster.engine('n1').proposeConfigChange({ voters: ['n2', 'n3'] });
    cluster.isolate('n3');
    cluster.stabilize();
    // n1 and n2 hold the entry; C_new = {n2, n3} has no majority without n3.
    expect(cluster.logTerms('n2')).toEqual([1, 1]);
    expect(cluster.status('n1')).toMatchObject({ role: 'leader', commitIndex: 1 });
    // It still leads: it replicates a command, which does not commit either.
    expect(cluster.engine('n1').propose([payload(7)])).toMatchObject({ ok: true, index: 3 });

    cluster.heal();
    heartbeat(cluster, 'n1');
    // C_new committed: n1 stepped down, and the TimeoutNow it sent made n2 lead at once.
    expect(cluster.status('n1')).toMatchObject({ role: 'follower', term: 2 });
    expect(cluster.status('n2')).toMatchObject({
      role: 'leader',
      term: 2,
      config: { voters: ['n2', 'n3'] },
    });
    expect(cluster.delivered).toContainEqual({
      type: 'timeout-now',
      from: 'n1',
      to: 'n2',
      term: 1,
    });
    heartbeat(cluster, 'n2');
    expect(cluster.status('n2').commitIndex).toBe(4);
    expect(cluster.applied('n3').map((e) => e.index)).toEqual([1, 2, 3, 4]);
  });

  it('through joint consensus too: it leads C_old,new, appends C_new, and steps down once C_new commits', () => {
    const cluster = new Cluster({ voters: THREE, others: ['n4', 'n5'] });
    cluster.elect('n1');
    cluster.engine('n1').proposeConfigChange({ voters: ['n2', 'n4', 'n5'] });
    cluster.stabilize();
    expect(configEntries(cluster, 'n1')).toEqual([
      { voters: ['n2', 'n4', 'n5'], outgoingVoters: THREE },
      { voters: ['n2', 'n4', 'n5'] },
    ]);
    expect(cluster.status('n1').role).toBe('follower');
    const leaders = ['n2', 'n4', 'n5'].filter((id) => cluster.status(id).role === 'leader');
    expect(leaders).toHaveLength(1);
  });

  it('a removed server learns of its removal while the entry is uncommitted, then is sent nothing more', () => {
    const cluster = new Cluster({ voters: THREE });
    cluster.elect('n1');
    cluster.engine('n1').proposeConfigChange({ voters: ['n1', 'n2'] });
    cluster.stabilize();
    expect(cluster.status('n3').config).toEqual({ voters: ['n1', 'n2'] });
    expect(Object.keys(cluster.status('n1').progress)).toEqual(['n2']);
    cluster.engine('n1').propose([payload(1)]);
    heartbeat(cluster, 'n1');
    expect(cluster.delivered.filter((m) => m.to === 'n3' && m.term === 1).length).toBeGreaterThan(
      0,
    );
    expect(cluster.logTerms('n3')).toEqual([1, 1]);
    // Not a voter in its configuration: it never campaigns.
    cluster.tick('n3', 100);
    cluster.flush('n3');
    expect(cluster.pending.filter((m) => m.from === 'n3')).toEqual([]);
  });
});

describe('Thesis 4.2.3, removed servers cannot disrupt the cluster', () => {
  /** n3 is removed while cut off, so it never learns it; then it returns and keeps campaigning. */
  function removedWhileAway(tuning: { preVote: boolean; checkQuorum: boolean }) {
    const cluster = new Cluster({ voters: THREE, tuning });
    cluster.elect('n1');
    cluster.isolate('n3');
    cluster.engine('n1').proposeConfigChange({ voters: ['n1', 'n2'] });
    cluster.stabilize();
    heartbeat(cluster, 'n1');
    expect(cluster.status('n1')).toMatchObject({
      commitIndex: 2,
      config: { voters: ['n1', 'n2'] },
    });
    expect(cluster.status('n3').config).toEqual({ voters: THREE });
    cluster.heal();
    // n3 hears nothing from the leader: it campaigns again and again, while the leader
    // keeps sending heartbeats to n2.
    for (let round = 0; round < 20; round++) {
      cluster.tick('n3', 10);
      cluster.tick('n1', 3);
      cluster.tick('n2', 3);
      cluster.stabilize();
    }
    return cluster;
  }

  it('with PreVote and CheckQuorum, a removed server that keeps campaigning never changes the term of the cluster', () => {
    const cluster = removedWhileAway({ preVote: true, checkQuorum: true });
    const votes = cluster.delivered.filter((m) => m.from === 'n3' && m.type === 'vote');
    expect(votes.length).toBeGreaterThan(10);
    expect(cluster.status('n1')).toMatchObject({ role: 'leader', term: 1 });
    expect(cluster.status('n2')).toMatchObject({ term: 1, leaderId: 'n1' });
    // PreVote keeps n3's own term from growing too.
    expect(cluster.status('n3').term).toBe(1);
  });

  it('with CheckQuorum alone, voters that hear from the leader ignore its RequestVotes, however high their term', () => {
    const cluster = removedWhileAway({ preVote: false, checkQuorum: true });
    expect(cluster.status('n3').term).toBeGreaterThan(10);
    expect(cluster.status('n1')).toMatchObject({ role: 'leader', term: 1 });
    expect(cluster.status('n2')).toMatchObject({ term: 1, leaderId: 'n1' });
  });

  it('why: without either, its RequestVotes of ever higher terms depose the leader again and again', () => {
    const cluster = removedWhileAway({ preVote: false, checkQuorum: false });
    expect(cluster.status('n1').term).toBeGreaterThan(5);
  });
});

describe('Learners', () => {
  it('a learner receives the log, never campaigns, is not asked for votes, and never counts toward commitment', () => {
    const cluster = new Cluster({ voters: THREE, learners: ['n4'] });
    cluster.elect('n1');
    expect(cluster.delivered.filter((m) => m.type === 'vote' && m.to === 'n4')).toEqual([]);
    cluster.isolate('n2', 'n3');
    cluster.engine('n1').propose([payload(1)]);
    cluster.stabilize();
    // n1 and n4 hold the entry: two of four members, but only one of three voters.
    expect(cluster.logTerms('n4')).toEqual([1, 1]);
    expect(cluster.status('n1').commitIndex).toBe(1);

    cluster.tick('n4', 100);
    cluster.flush('n4');
    expect(cluster.status('n4').role).toBe('follower');
    expect(cluster.pending.filter((m) => m.from === 'n4' && m.type === 'vote')).toEqual([]);
  });

  it('a vote from a learner does not count toward an election', () => {
    const cluster = new Cluster({ voters: THREE, learners: ['n4'] });
    cluster.isolate('n2', 'n3');
    cluster.campaign('n1');
    cluster.engine('n1').step({
      type: 'vote-response',
      from: 'n4',
      to: 'n1',
      term: 1,
      prevote: false,
      granted: true,
    });
    expect(cluster.status('n1').role).toBe('candidate');
  });

  it('a learner added when the log is compacted catches up through a snapshot that carries the configuration as of its index', () => {
    const cluster = new Cluster({ voters: THREE, others: ['n4'] });
    cluster.elect('n1');
    cluster.engine('n1').propose([payload(1), payload(2), payload(3)]);
    cluster.stabilize();
    cluster.compact('n1', 4);
    cluster.engine('n1').proposeConfigChange({ voters: THREE, learners: ['n4'] });
    cluster.stabilize();
    heartbeat(cluster, 'n1');
    expect(cluster.delivered).toContainEqual(
      expect.objectContaining({
        type: 'snapshot',
        to: 'n4',
        snapshot: { index: 4, term: 1, config: { voters: THREE } },
      }),
    );
    expect(cluster.disk('n4').snapshot).toEqual({ index: 4, term: 1 });
    expect(cluster.status('n4')).toMatchObject({
      lastIndex: 5,
      commitIndex: 5,
      config: { voters: THREE, learners: ['n4'] },
    });
  });
});

describe('Automatic promotion of learners', () => {
  it('a learner marked autoPromote stays a learner while it lags, and becomes a voter once within promotionLagEntries', () => {
    const cluster = new Cluster({
      voters: THREE,
      others: ['n4'],
      tuning: { promotionLagEntries: 2 },
    });
    cluster.elect('n1');
    cluster.isolate('n4');
    cluster
      .engine('n1')
      .proposeConfigChange({ voters: THREE, learners: ['n4'], autoPromote: ['n4'] });
    cluster.stabilize();
    cluster.engine('n1').propose([payload(1), payload(2), payload(3), payload(4)]);
    cluster.stabilize();
    heartbeat(cluster, 'n1');
    expect(cluster.status('n1').config).toEqual({
      voters: THREE,
      learners: ['n4'],
      autoPromote: ['n4'],
    });

    // n4 returns but its log stays behind: every AppendEntries to it is lost until the last.
    cluster.heal();
    cluster.tick('n1', 3);
    cluster.flush('n1');
    cluster.drop({ to: 'n4' });
    expect(cluster.status('n1').config.learners).toEqual(['n4']);

    heartbeat(cluster, 'n1');
    heartbeat(cluster, 'n1');
    expect(cluster.status('n1')).toMatchObject({ config: { voters: [...THREE, 'n4'] } });
    const last = configEntries(cluster, 'n4').at(-1);
    expect(last).toEqual({ voters: [...THREE, 'n4'] });
    expect(cluster.status('n1').commitIndex).toBe(cluster.status('n1').configIndex);
  });

  it('a learner that acknowledged nothing is not promoted, though the whole log is shorter than promotionLagEntries', () => {
    const cluster = new Cluster({ voters: THREE, others: ['n4'] });
    cluster.elect('n1');
    cluster
      .engine('n1')
      .proposeConfigChange({ voters: THREE, learners: ['n4'], autoPromote: ['n4'] });
    // n4 answers heartbeats, but every AppendEntries to it is lost: its log is unknown.
    const appendsToN4 = (m: Message) => m.type === 'append' && m.to === 'n4';
    for (let round = 0; round < 3; round++) {
      cluster.stabilize({ hold: appendsToN4 });
      cluster.drop(appendsToN4);
      cluster.tick('n1', 3);
    }
    cluster.stabilize({ hold: appendsToN4 });
    const leader = cluster.status('n1');
    expect(leader.lastIndex).toBeLessThan(64); // the default promotionLagEntries
    expect(leader.progress.n4).toMatchObject({ match: 0, recentActive: true });
    expect(leader.config).toEqual({ voters: THREE, learners: ['n4'], autoPromote: ['n4'] });

    // Once it acknowledges the log, it is promoted.
    cluster.drop(appendsToN4);
    heartbeat(cluster, 'n1');
    heartbeat(cluster, 'n1');
    expect(cluster.status('n1').progress.n4?.match).toBeGreaterThan(0);
    expect(cluster.status('n1').config).toEqual({ voters: [...THREE, 'n4'] });
  });

  it('a learner behind by more than promotionLagEntries is not promoted', () => {
    const cluster = new Cluster({
      voters: THREE,
      others: ['n4'],
      tuning: { promotionLagEntries: 2, maxEntriesPerMessage: 1, maxInflightMessages: 1 },
    });
    cluster.elect('n1');
    cluster.engine('n1').propose([payload(1), payload(2), payload(3), payload(4), payload(5)]);
    cluster.stabilize();
    cluster
      .engine('n1')
      .proposeConfigChange({ voters: THREE, learners: ['n4'], autoPromote: ['n4'] });
    // n4 receives one entry per round trip (after the first probe at the configuration entry
    // fails): it acknowledges 1, 2, 3 while the leader is at 7.
    cluster.stabilize({
      hold: (m) => m.type === 'append' && m.to === 'n4' && m.prevIndex >= 3 && m.prevIndex < 6,
    });
    expect(cluster.status('n1').progress.n4?.match).toBe(3);
    expect(cluster.status('n1').config.voters).toEqual(THREE);
    cluster.stabilize();
    heartbeat(cluster, 'n1');
    expect(cluster.status('n1').config.voters).toEqual([...THREE, 'n4']);
  });
});

describe('Raft paper 7 and 6: configurations in snapshots and across restarts', () => {
  it('a snapshot carries the configuration as of its last index, not the latest one', () => {
    const cluster = new Cluster({ voters: THREE, others: ['n4'] });
    cluster.elect('n1');
    cluster.engine('n1').propose([payload(1)]);
    cluster.stabilize();
    cluster.engine('n1').proposeConfigChange({ voters: [...THREE, 'n4'] });
    cluster.stabilize();
    const leader = cluster.engine('n1');
    expect(leader.configAt(2)).toEqual({ voters: THREE });
    expect(leader.configAt(3)).toEqual({ voters: [...THREE, 'n4'] });
    // A snapshot at 2 that claims the latest configuration is refused as a broken invariant.
    expect(() =>
      leader.compact({ index: 2, term: 1, config: { voters: [...THREE, 'n4'] } }),
    ).toThrow(InvariantViolationError);
    cluster.compact('n1', 2);
    expect(cluster.disk('n1').config).toEqual({ voters: THREE });
    expect(cluster.status('n1').config).toEqual({ voters: [...THREE, 'n4'] });
  });

  it('a restarted server rebuilds its configuration from its snapshot and the configuration entries after it', () => {
    const cluster = new Cluster({ voters: THREE, others: ['n4', 'n5'] });
    cluster.elect('n1');
    cluster.engine('n1').proposeConfigChange({ voters: [...THREE, 'n4'] });
    cluster.stabilize();
    heartbeat(cluster, 'n1');
    cluster.compact('n2', 2);
    cluster.engine('n1').proposeConfigChange({ voters: [...THREE, 'n4', 'n5'] });
    cluster.stabilize();
    heartbeat(cluster, 'n1');
    cluster.restart('n2');
    expect(cluster.status('n2')).toMatchObject({
      config: { voters: [...THREE, 'n4', 'n5'] },
      configIndex: 3,
    });
    cluster.compact('n2', 3);
    cluster.restart('n2');
    expect(cluster.status('n2')).toMatchObject({
      config: { voters: [...THREE, 'n4', 'n5'] },
      configIndex: 3,
    });
  });
});

import { describe, expect, it } from 'vitest';
import { InvariantViolationError } from '../errors.ts';
import type { AppendEntries, Message, RequestVote } from '../message.ts';
import { DEFAULT_ENGINE_TUNING } from './engine-options.ts';
import type { Ready } from './ready.ts';
import { Cluster, entriesOfTerms, voteRequest } from './scenario-harness.test-helpers.ts';

/**
 * Scenario tests: each names the rule or figure of the Raft paper (extended version) or of
 * Ongaro's thesis that it checks, builds the situation by hand, and asserts the outcome.
 */

const THREE = ['n1', 'n2', 'n3'];
const payload = (n: number) => new Uint8Array(n);

function append(fields: Omit<AppendEntries, 'type'>): AppendEntries {
  return { type: 'append', ...fields };
}

/** Messages of `type` in the Readies, e.g. the vote responses a node sent. */
function sent<T extends Message['type']>(
  readies: readonly Ready[],
  type: T,
): Extract<Message, { type: T }>[] {
  return readies.flatMap((r) =>
    r.messages.filter((m): m is Extract<Message, { type: T }> => m.type === type),
  );
}

describe('Figure 2, rules for all servers', () => {
  const higherTermMessages = (term: number): Message[] => {
    const base = { from: 'n2', to: 'n1', term } as const;
    return [
      { ...base, type: 'append', prevIndex: 0, prevTerm: 0, entries: [], commit: 0 },
      { ...base, type: 'append-response', success: false, index: 0 },
      { ...base, type: 'vote', prevote: false, lastIndex: 0, lastTerm: 0 },
      { ...base, type: 'vote-response', prevote: false, granted: false },
      { ...base, type: 'heartbeat', commit: 0, round: 0 },
      { ...base, type: 'heartbeat-response', round: 0, lastIndex: 0 },
      { ...base, type: 'snapshot', snapshot: { index: 0, term: 0, config: { voters: THREE } } },
      { ...base, type: 'snapshot-response', index: 0 },
      { ...base, type: 'read-index', id: 'r' },
      { ...base, type: 'read-index-response', id: 'r', index: null },
    ];
  };

  it.each(higherTermMessages(5).map((m) => [m.type, m] as const))(
    'any message of a higher term (here %s) makes a leader adopt the term and become a follower',
    (_type, message) => {
      const cluster = new Cluster({ voters: THREE });
      cluster.elect('n1');
      expect(cluster.status('n1')).toMatchObject({ role: 'leader', term: 1 });

      cluster.engine('n1').step(message);

      const fromLeader = ['append', 'heartbeat', 'snapshot'].includes(message.type);
      expect(cluster.status('n1')).toMatchObject({
        role: 'follower',
        term: 5,
        votedFor: null,
        leaderId: fromLeader ? 'n2' : null,
      });
      cluster.flush('n1');
      expect(cluster.disk('n1').hardState.term).toBe(5);
    },
  );

  it('a message of a stale term is rejected and answered with the current term, so a deposed leader steps down', () => {
    const cluster = new Cluster({ voters: THREE });
    cluster.elect('n1');
    cluster.isolate('n1');
    cluster.elect('n2');
    expect(cluster.status('n2')).toMatchObject({ role: 'leader', term: 2 });
    cluster.heal();

    // n1 still believes it leads term 1 and proposes an entry.
    expect(cluster.engine('n1').propose([payload(1)])).toMatchObject({ ok: true, term: 1 });
    cluster.flush('n1');
    const stale = cluster.pending.filter((m) => m.from === 'n1' && m.type === 'append');
    expect(stale.map((m) => m.to).sort()).toEqual(['n2', 'n3']);
    cluster.deliver({ from: 'n1' });
    cluster.flush('n2', 'n3');

    // Neither receiver took the stale entry; each answered with its term.
    expect(cluster.logTerms('n2')).toEqual([1, 2]);
    expect(cluster.logTerms('n3')).toEqual([1, 2]);
    const answers = cluster.pending.filter((m) => m.to === 'n1');
    expect(answers).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ from: 'n2', type: 'append-response', term: 2, success: false }),
        expect.objectContaining({ from: 'n3', type: 'append-response', term: 2, success: false }),
      ]),
    );
    cluster.stabilize();
    expect(cluster.status('n1')).toMatchObject({ role: 'follower', term: 2 });
    expect(cluster.status('n2')).toMatchObject({ role: 'leader', term: 2 });
    // The next AppendEntries from the real leader overwrites the stale entry.
    cluster.tick('n2', 3);
    cluster.stabilize();
    expect(cluster.logTerms('n1')).toEqual([1, 2]);
  });

  it('a RequestVote of a stale term is denied, and answered with the current term', () => {
    const cluster = new Cluster({ voters: THREE, nodes: { n3: { hardState: { term: 4 } } } });
    cluster.campaign('n1');
    cluster.flush('n1');
    cluster.deliver({ to: 'n3' });
    cluster.flush('n3');

    expect(cluster.status('n3')).toMatchObject({ term: 4, votedFor: null });
    expect(sent(cluster.readies('n3'), 'vote-response')).toEqual([
      expect.objectContaining({ to: 'n1', term: 4, granted: false }),
    ]);
  });
});

describe('Raft paper 5.2, leader election', () => {
  it('a follower whose election timeout elapses becomes a candidate of the next term and votes for itself', () => {
    const cluster = new Cluster({ voters: THREE });
    cluster.tick('n1', 9); // the timeout is drawn from [electionTicks, 2 * electionTicks)
    expect(cluster.status('n1').role).toBe('follower');

    cluster.campaign('n1');
    expect(cluster.status('n1')).toMatchObject({ role: 'candidate', term: 1, votedFor: 'n1' });
    const [ready] = cluster.flush('n1');
    expect(ready?.write?.hardState).toEqual({ term: 1, votedFor: 'n1', commitIndex: 0 });
    expect(ready?.messages).toEqual([
      { type: 'vote', from: 'n1', to: 'n2', term: 1, prevote: false, lastIndex: 0, lastTerm: 0 },
      { type: 'vote', from: 'n1', to: 'n3', term: 1, prevote: false, lastIndex: 0, lastTerm: 0 },
    ]);
  });

  it('a candidate that receives votes from a majority becomes leader', () => {
    const cluster = new Cluster({ voters: THREE });
    cluster.isolate('n3');
    cluster.campaign('n1');
    cluster.stabilize();
    expect(cluster.status('n1')).toMatchObject({ role: 'leader', term: 1, leaderId: 'n1' });
    expect(cluster.status('n2')).toMatchObject({ role: 'follower', term: 1, leaderId: 'n1' });
  });

  it('a split vote is resolved by randomized election timeouts: eventually exactly one leader', () => {
    const voters = ['n1', 'n2', 'n3', 'n4'];
    const cluster = new Cluster({ voters });
    cluster.campaign('n1');
    cluster.campaign('n2');
    cluster.flush();
    cluster.deliver({ from: 'n1', to: 'n3' });
    cluster.deliver({ from: 'n2', to: 'n4' });
    cluster.stabilize();
    // Two votes each out of four: nobody won term 1.
    expect(voters.filter((id) => cluster.status(id).role === 'leader')).toEqual([]);
    expect(cluster.status('n1').term).toBe(1);

    let ticks = 0;
    while (!voters.some((id) => cluster.status(id).role === 'leader')) {
      if (++ticks > 200) throw new Error('no leader after 200 ticks');
      for (const id of voters) cluster.tick(id);
      cluster.stabilize();
    }
    const leaders = voters.filter((id) => cluster.status(id).role === 'leader');
    expect(leaders).toHaveLength(1);
    const { term } = cluster.status(leaders[0] ?? '');
    expect(term).toBeGreaterThan(1);
    for (const id of voters) {
      expect(cluster.status(id)).toMatchObject({ term, leaderId: leaders[0] });
    }
  });

  it('a server votes for at most one candidate per term, and its vote is durable before it is announced', () => {
    const cluster = new Cluster({ voters: THREE });
    cluster.campaign('n1');
    cluster.campaign('n2');
    cluster.flush();
    const requestFromN2 = cluster.pending.find((m) => m.from === 'n2' && m.to === 'n3');

    cluster.deliver({ from: 'n1', to: 'n3' });
    const [voteReady] = cluster.flush('n3');
    // Granted in the same Ready as the write that records votedFor: the driver persists first.
    expect(voteReady?.write?.hardState).toMatchObject({ term: 1, votedFor: 'n1' });
    expect(voteReady?.messages).toEqual([
      expect.objectContaining({ type: 'vote-response', to: 'n1', term: 1, granted: true }),
    ]);

    cluster.deliver({ from: 'n2', to: 'n3' });
    cluster.flush('n3');
    expect(sent(cluster.readies('n3'), 'vote-response').at(-1)).toMatchObject({
      to: 'n2',
      granted: false,
    });

    // After a crash the vote is still cast: the request of n2 is denied again.
    cluster.restart('n3');
    expect(requestFromN2).toBeDefined();
    if (requestFromN2 !== undefined) cluster.engine('n3').step(requestFromN2);
    cluster.flush('n3');
    expect(sent(cluster.readies('n3'), 'vote-response').at(-1)).toMatchObject({
      to: 'n2',
      granted: false,
    });
    expect(cluster.status('n3')).toMatchObject({ term: 1, votedFor: 'n1' });
  });
});

describe('Figure 2, rules for followers and candidates', () => {
  it('a candidate that receives an AppendEntries of its own term from the new leader becomes its follower', () => {
    const cluster = new Cluster({ voters: THREE });
    // n1 and n2 both campaign in term 1; n1's requests are lost, so n3 votes for n2.
    cluster.campaign('n1');
    cluster.flush('n1');
    cluster.drop({ from: 'n1' });
    cluster.campaign('n2');
    cluster.stabilize({ hold: { type: 'append' } });
    expect(cluster.status('n2')).toMatchObject({ role: 'leader', term: 1 });
    expect(cluster.status('n1')).toMatchObject({ role: 'candidate', term: 1, votedFor: 'n1' });

    cluster.deliver({ type: 'append', to: 'n1' });
    expect(cluster.status('n1')).toMatchObject({ role: 'follower', term: 1, leaderId: 'n2' });
  });

  it('a follower that grants a vote restarts its election timeout', () => {
    // n2 holds an entry of term 1. A candidate with an empty log brings it to term 2 (denied);
    // electionTicks - 1 ticks later, n1 asks in the same term with a log as up to date: granted.
    const cluster = new Cluster({ voters: THREE, nodes: { n2: { log: [1] } } });
    const { electionTicks } = DEFAULT_ENGINE_TUNING;
    const follower = cluster.engine('n2');
    follower.step(voteRequest({ from: 'n3', to: 'n2', term: 2, lastIndex: 0, lastTerm: 0 }));
    expect(cluster.status('n2')).toMatchObject({ role: 'follower', term: 2, votedFor: null });
    cluster.tick('n2', electionTicks - 1);
    follower.step(voteRequest({ from: 'n1', to: 'n2', term: 2, lastIndex: 1, lastTerm: 1 }));
    expect(cluster.status('n2')).toMatchObject({ term: 2, votedFor: 'n1' });
    // 2 * electionTicks - 2 ticks since the term began, but electionTicks - 1 since the vote.
    cluster.tick('n2', electionTicks - 1);
    expect(cluster.status('n2')).toMatchObject({ role: 'follower', term: 2 });
    cluster.tick('n2', electionTicks + 1);
    expect(cluster.status('n2').role).toBe('candidate');
  });

  it('a vote request of a later term that is denied leaves the election timer running: candidates whose logs are behind cannot keep a server from campaigning', () => {
    // Every electionTicks - 1 ticks a candidate with an empty log asks n2 in a later term:
    // denied each time. Were the timer reset each time, n2 would never reach its timeout.
    const cluster = new Cluster({ voters: THREE, nodes: { n2: { log: [1] } } });
    const { electionTicks } = DEFAULT_ENGINE_TUNING;
    const follower = cluster.engine('n2');
    for (let term = 2; term < 6; term++) {
      cluster.tick('n2', electionTicks - 1);
      follower.step(voteRequest({ from: 'n3', to: 'n2', term, lastIndex: 0, lastTerm: 0 }));
    }
    const readies = cluster.flush('n2');
    expect(sent(readies, 'vote-response').every((m) => !m.granted)).toBe(true);
    expect(sent(readies, 'vote').filter((m) => m.from === 'n2').length).toBeGreaterThan(0);
  });
});

describe('Raft paper 5.4.1, election restriction', () => {
  it.each([
    {
      rule: 'denied: the candidate has a lower last term',
      candidate: [1, 1, 1, 1],
      voter: [1, 1, 2],
      granted: false,
    },
    {
      rule: 'denied: same last term, shorter log',
      candidate: [1, 2],
      voter: [1, 2, 2],
      granted: false,
    },
    {
      rule: 'granted: higher last term, even with a shorter log',
      candidate: [1, 3],
      voter: [1, 2, 2, 2],
      granted: true,
    },
    {
      rule: 'granted: same last term, log as long',
      candidate: [1, 2, 2],
      voter: [1, 2, 2],
      granted: true,
    },
    {
      rule: 'granted: same last term, longer log',
      candidate: [1, 2, 2, 2],
      voter: [1, 2, 2],
      granted: true,
    },
  ])('vote $rule', ({ candidate, voter, granted }) => {
    const cluster = new Cluster({
      voters: THREE,
      nodes: {
        n1: { log: candidate, hardState: { term: 3 } },
        n2: { log: voter, hardState: { term: 3 } },
      },
    });
    cluster.campaign('n1');
    cluster.flush('n1');
    cluster.deliver({ to: 'n2' });
    cluster.flush('n2');
    expect(sent(cluster.readies('n2'), 'vote-response')).toEqual([
      expect.objectContaining({ to: 'n1', term: 4, granted }),
    ]);
    expect(cluster.disk('n2').hardState).toMatchObject({
      term: 4,
      votedFor: granted ? 'n1' : null,
    });
  });
});

describe('Raft paper 5.3, log replication: the AppendEntries consistency check', () => {
  /** n2 is a follower of n1 in term 3, holding `log`. */
  const follower = (log: number[], commitIndex = 0) =>
    new Cluster({ voters: THREE, nodes: { n2: { log, hardState: { term: 3, commitIndex } } } });
  const fromLeader = { from: 'n1', to: 'n2', term: 3 } as const;

  it('rejects an AppendEntries whose prevIndex/prevTerm it does not hold, and keeps its log', () => {
    const cluster = follower([1, 1, 2]);
    cluster.engine('n2').step(
      append({
        ...fromLeader,
        prevIndex: 3,
        prevTerm: 3,
        entries: entriesOfTerms([3], 4),
        commit: 0,
      }),
    );
    cluster
      .engine('n2')
      .step(append({ ...fromLeader, prevIndex: 5, prevTerm: 3, entries: [], commit: 0 }));
    cluster.flush('n2');

    expect(cluster.logTerms('n2')).toEqual([1, 1, 2]);
    expect(sent(cluster.readies('n2'), 'append-response')).toEqual([
      expect.objectContaining({ success: false, index: 3 }),
      expect.objectContaining({ success: false, index: 5 }),
    ]);
  });

  it('deletes a conflicting entry and all that follow it, then appends the new entries', () => {
    const cluster = follower([1, 1, 2, 2, 2]);
    cluster.engine('n2').step(
      append({
        ...fromLeader,
        prevIndex: 2,
        prevTerm: 1,
        entries: entriesOfTerms([3, 3], 3),
        commit: 0,
      }),
    );
    const [ready] = cluster.flush('n2');

    expect(ready?.write).toMatchObject({ truncateFrom: 3 });
    expect(cluster.logTerms('n2')).toEqual([1, 1, 3, 3]);
    expect(ready?.messages).toEqual([expect.objectContaining({ success: true, index: 4 })]);
  });

  it('keeps the entries it already holds: a delayed, shorter AppendEntries truncates nothing', () => {
    const cluster = follower([1, 1, 3, 3]);
    cluster.engine('n2').step(
      append({
        ...fromLeader,
        prevIndex: 1,
        prevTerm: 1,
        entries: entriesOfTerms([1], 2),
        commit: 0,
      }),
    );
    const [ready] = cluster.flush('n2');

    expect(ready?.write).toBeUndefined();
    expect(cluster.logTerms('n2')).toEqual([1, 1, 3, 3]);
    expect(ready?.messages).toEqual([expect.objectContaining({ success: true, index: 2 })]);
  });

  it('State Machine Safety: a follower never truncates a committed entry', () => {
    const cluster = follower([1, 1, 1, 3], 3);
    cluster.flush('n2');
    // Whatever an AppendEntries claims about indexes at or below the commit index, they stay.
    cluster.engine('n2').step(
      append({
        ...fromLeader,
        prevIndex: 1,
        prevTerm: 1,
        entries: entriesOfTerms([2, 2], 2),
        commit: 0,
      }),
    );
    const [ready] = cluster.flush('n2');

    expect(ready?.write).toBeUndefined();
    expect(cluster.logTerms('n2')).toEqual([1, 1, 1, 3]);
    expect(ready?.messages).toEqual([expect.objectContaining({ success: true, index: 3 })]);
  });

  it('refuses, as a broken invariant, an acknowledgement beyond the leader’s log rather than trusting it', () => {
    const cluster = new Cluster({ voters: THREE });
    cluster.elect('n1');
    const bogus: Message = {
      type: 'append-response',
      from: 'n2',
      to: 'n1',
      term: 1,
      success: true,
      index: 9,
    };
    expect(() => cluster.engine('n1').step(bogus)).toThrow(InvariantViolationError);
  });
});

describe('Raft paper, Figure 7: a new leader brings divergent followers into line', () => {
  // Figure 7: the leader's log, and the logs (a)-(f) followers may have when it takes office.
  const leaderLog = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
  const followers = {
    a: [1, 1, 1, 4, 4, 5, 5, 6, 6],
    b: [1, 1, 1, 4],
    c: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
    d: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
    e: [1, 1, 1, 4, 4, 4, 4],
    f: [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
  };
  const figure7 = () => {
    const nodes: Record<string, { log: number[]; hardState: { term: number } }> = {
      leader: { log: leaderLog, hardState: { term: 7 } },
    };
    for (const [id, log] of Object.entries(followers)) nodes[id] = { log, hardState: { term: 7 } };
    const cluster = new Cluster({ voters: ['leader', ...Object.keys(followers)], nodes });
    // It wins term 8 with the votes of (a), (b), (e), (f); (c) and (d) hold more up to date logs.
    cluster.campaign('leader');
    cluster.stabilize();
    expect(cluster.status('leader')).toMatchObject({ role: 'leader', term: 8 });
    return cluster;
  };

  it('the leader of term 8 appends its no-op and every follower (a)-(f) ends with a log identical to the leader’s', () => {
    const cluster = figure7();
    const expected = [...leaderLog, 8];
    expect(cluster.logTerms('leader')).toEqual(expected);
    for (const id of Object.keys(followers)) {
      expect({ id, log: cluster.logTerms(id) }).toEqual({ id, log: expected });
      expect(cluster.disk(id).entries).toEqual(cluster.disk('leader').entries);
    }
    expect(cluster.status('leader').commitIndex).toBe(11);
  });

  it('Leader Append-Only: the leader never overwrites or deletes its own entries, whatever the followers hold', () => {
    const cluster = figure7();
    for (const ready of cluster.readies('leader')) {
      expect(ready.write?.truncateFrom).toBeUndefined();
      expect(ready.write?.snapshot).toBeUndefined();
    }
    expect(cluster.logTerms('leader')).toEqual([...leaderLog, 8]);
  });

  it('fast back-tracking: follower (f) is repaired in fewer round trips than it has conflicting entries', () => {
    const cluster = figure7();
    const toF = cluster.delivered.filter((m) => m.to === 'f' && m.type === 'append');
    const rejections = cluster.delivered.filter(
      (m) => m.from === 'f' && m.type === 'append-response' && !m.success,
    );
    // (f) conflicts with the leader from index 4 to 11: eight entries. One index per round trip
    // would take seven rejections; the conflict hint skips (f)'s whole terms 3 and 2 at once.
    expect(rejections).toHaveLength(1);
    expect(toF.map((m) => (m as AppendEntries).prevIndex)).toEqual([10, 3]);
  });
});

describe('Raft paper 5.4.2, Figure 8: committing entries from previous terms', () => {
  // Figure 8 (c): S1 leads term 4 (its no-op at index 3 is the entry of term 4). It replicated
  // the term-2 entry at index 2 to S2 and S3, a majority; S5 holds a term-3 entry at index 2.
  const figure8c = () => {
    const cluster = new Cluster({
      voters: ['s1', 's2', 's3', 's4', 's5'],
      nodes: {
        s1: {
          log: [1, 2],
          hardState: { term: 3, commitIndex: 1 },
          tuning: { maxEntriesPerMessage: 1 },
        },
        s2: { log: [1], hardState: { term: 3, commitIndex: 1 } },
        s3: { log: [1], hardState: { term: 3, commitIndex: 1 } },
        s4: { log: [1], hardState: { term: 3, commitIndex: 1 } },
        s5: { log: [1, 3], hardState: { term: 3, commitIndex: 1 } },
      },
    });
    cluster.campaign('s1');
    cluster.flush('s1');
    cluster.deliver({ type: 'vote' });
    cluster.isolate('s4', 's5'); // they crash after voting
    // S1's entry of term 4 is still in flight to the servers that now hold index 2.
    const termFour = (m: Message) =>
      m.type === 'append' &&
      m.entries.some((e) => e.term === 4) &&
      cluster.engine(m.to).entry(2)?.term === 2;
    cluster.stabilize({ hold: termFour });
    expect(cluster.status('s1')).toMatchObject({ role: 'leader', term: 4 });
    expect(cluster.logTerms('s1')).toEqual([1, 2, 4]);
    expect(cluster.logTerms('s2')).toEqual([1, 2]);
    expect(cluster.logTerms('s3')).toEqual([1, 2]);
    expect(cluster.logTerms('s4')).toEqual([1]);
    expect(cluster.logTerms('s5')).toEqual([1, 3]);
    expect(cluster.status('s1').progress).toMatchObject({ s2: { match: 2 }, s3: { match: 2 } });
    return { cluster, termFour };
  };

  it('(c) a leader does not commit an entry of an earlier term by counting replicas, even on a majority', () => {
    const { cluster } = figure8c();
    expect(cluster.status('s1').commitIndex).toBe(1);
    expect(cluster.applied('s1').map((e) => e.index)).toEqual([1]);
  });

  it('(d) why: that entry can still be overwritten, by S5 elected with the votes of S2, S3, S4', () => {
    const { cluster } = figure8c();
    cluster.drop();
    cluster.heal();
    cluster.isolate('s1'); // S1 crashes
    cluster.elect('s5');
    expect(cluster.status('s5').term).toBe(5);
    for (const id of ['s2', 's3', 's4', 's5']) expect(cluster.logTerms(id)).toEqual([1, 3, 5]);
  });

  it('(e) once an entry of the leader’s own term is on a majority, it commits and so does every entry before it', () => {
    const { cluster, termFour } = figure8c();
    cluster.deliver(termFour);
    cluster.stabilize();
    expect(cluster.status('s1').commitIndex).toBe(3);
    expect(cluster.applied('s1').map((e) => [e.index, e.term])).toEqual([
      [1, 1],
      [2, 2],
      [3, 4],
    ]);

    // And S5 can no longer be elected: S2 and S3 hold a more up to date log than it.
    cluster.heal();
    cluster.isolate('s1');
    cluster.campaign('s5');
    cluster.stabilize();
    expect(cluster.status('s5').role).not.toBe('leader');
  });
});

describe('Raft paper 8: a new leader commits a no-op of its term', () => {
  it('appends a no-op of its term on election; entries of earlier terms commit once it is replicated', () => {
    const cluster = new Cluster({
      voters: THREE,
      nodes: { n1: { log: [1, 1] }, n2: { log: [1, 1] }, n3: { log: [1, 1] } },
    });
    cluster.campaign('n1');
    cluster.stabilize({ hold: { type: 'append' } });
    expect(cluster.status('n1')).toMatchObject({ role: 'leader', term: 2, commitIndex: 0 });
    expect(cluster.engine('n1').entry(3)).toMatchObject({ index: 3, term: 2, type: 'noop' });

    cluster.stabilize();
    expect(cluster.status('n1').commitIndex).toBe(3);
    expect(cluster.applied('n1').map((e) => e.type)).toEqual(['command', 'command', 'noop']);
  });
});

describe('Figure 2, AppendEntries step 5: the commit index', () => {
  it('heartbeats carry the leader’s commit index to followers', () => {
    const cluster = new Cluster({ voters: THREE });
    cluster.elect('n1');
    cluster.engine('n1').propose([payload(4)]);
    cluster.stabilize();
    expect(cluster.status('n1').commitIndex).toBe(2);
    expect(cluster.status('n2').commitIndex).toBe(1);

    cluster.tick('n1', 3); // heartbeatTicks
    cluster.flush('n1');
    expect(cluster.pending.filter((m) => m.type === 'heartbeat')).toEqual([
      expect.objectContaining({ to: 'n2', commit: 2 }),
      expect.objectContaining({ to: 'n3', commit: 2 }),
    ]);
    cluster.stabilize();
    expect(cluster.status('n2').commitIndex).toBe(2);
    expect(cluster.applied('n3').map((e) => e.index)).toEqual([1, 2]);
  });

  it('a heartbeat never tells a follower to commit beyond what it is known to hold', () => {
    const cluster = new Cluster({ voters: THREE });
    cluster.elect('n1');
    cluster.isolate('n3');
    cluster.engine('n1').propose([payload(4)]);
    cluster.stabilize();
    cluster.tick('n1', 3);
    cluster.flush('n1');
    expect(cluster.pending.find((m) => m.type === 'heartbeat' && m.to === 'n3')).toMatchObject({
      commit: 1,
    });
  });

  it('a follower sets its commit index to min(leaderCommit, index of the last new entry)', () => {
    const cluster = new Cluster({ voters: THREE, nodes: { n2: { log: [1, 1, 1, 1, 1] } } });
    // Entries 3-5 may not match the leader's log: only what this message vouches for commits.
    cluster.engine('n2').step(
      append({
        from: 'n1',
        to: 'n2',
        term: 1,
        prevIndex: 1,
        prevTerm: 1,
        entries: entriesOfTerms([1], 2),
        commit: 5,
      }),
    );
    cluster.flush('n2');
    expect(cluster.status('n2').commitIndex).toBe(2);
    expect(cluster.applied('n2').map((e) => e.index)).toEqual([1, 2]);
  });
});

describe('Thesis 9.6, PreVote', () => {
  it('a partitioned server does not increase its term however long it waits, and does not disrupt the leader when it returns', () => {
    const cluster = new Cluster({ voters: THREE, tuning: { preVote: true, checkQuorum: true } });
    cluster.elect('n1');
    cluster.isolate('n3');
    for (let i = 0; i < 200; i++) {
      cluster.tick('n3');
      cluster.stabilize();
    }
    expect(cluster.status('n3')).toMatchObject({ role: 'pre-candidate', term: 1 });
    expect(cluster.disk('n3').hardState.term).toBe(1);

    cluster.heal();
    for (let i = 0; i < 60; i++) {
      for (const id of THREE) cluster.tick(id);
      cluster.stabilize();
    }
    expect(cluster.status('n1')).toMatchObject({ role: 'leader', term: 1 });
    expect(cluster.status('n3')).toMatchObject({ role: 'follower', term: 1, leaderId: 'n1' });
  });

  it('without CheckQuorum too, a returning server whose log fell behind cannot win the pre-vote', () => {
    const cluster = new Cluster({ voters: THREE, tuning: { preVote: true, checkQuorum: false } });
    cluster.elect('n1');
    cluster.isolate('n3');
    cluster.engine('n1').propose([payload(1)]);
    cluster.stabilize();
    cluster.campaign('n3');
    cluster.heal();
    cluster.stabilize();
    expect(cluster.status('n1')).toMatchObject({ role: 'leader', term: 1 });
    expect(cluster.status('n3').term).toBe(1);
  });
});

describe('Thesis 9.6, PreVote: voters that hear from a leader refuse a pre-vote', () => {
  it('without CheckQuorum, a returning server with an up to date log does not disrupt the leader', () => {
    const cluster = new Cluster({ voters: THREE, tuning: { preVote: true, checkQuorum: false } });
    cluster.elect('n1');
    cluster.isolate('n3');
    cluster.campaign('n3');
    cluster.stabilize();
    cluster.heal();
    cluster.tick('n3', 20); // its next pre-vote reaches n1 and n2
    cluster.stabilize();
    expect(cluster.status('n1')).toMatchObject({ role: 'leader', term: 1 });
  });
});

describe('Thesis 6.2, CheckQuorum', () => {
  it('a leader that hears from no quorum for an election timeout steps down', () => {
    const cluster = new Cluster({ voters: THREE, tuning: { checkQuorum: true } });
    cluster.elect('n1');
    for (let i = 0; i < 30; i++) {
      cluster.tick('n1');
      cluster.stabilize();
    }
    expect(cluster.status('n1').role).toBe('leader');

    cluster.isolate('n1');
    for (let i = 0; i < 20; i++) {
      cluster.tick('n1');
      cluster.stabilize();
    }
    expect(cluster.status('n1')).toMatchObject({ role: 'follower', term: 1, leaderId: null });
  });

  it('a server that heard from the leader within the election timeout ignores a RequestVote of a higher term (disruptive server)', () => {
    const cluster = new Cluster({ voters: THREE, tuning: { checkQuorum: true } });
    cluster.elect('n1');
    const disruptive = (to: string): RequestVote => ({
      type: 'vote',
      from: 'n3',
      to,
      term: 9,
      prevote: false,
      lastIndex: 1,
      lastTerm: 1,
    });
    cluster.engine('n2').step(disruptive('n2'));
    cluster.engine('n1').step(disruptive('n1'));
    cluster.flush();
    expect(cluster.status('n2')).toMatchObject({ role: 'follower', term: 1, votedFor: 'n1' });
    expect(cluster.status('n1')).toMatchObject({ role: 'leader', term: 1 });
    expect(cluster.pending).toEqual([]);
  });
});

describe('Thesis 6.4, ReadIndex', () => {
  it('a leader serves a read only once a quorum acknowledges a heartbeat round sent after the read arrived', () => {
    const cluster = new Cluster({ voters: THREE });
    cluster.elect('n1');
    cluster.engine('n1').readIndex('r1');
    cluster.flush('n1');
    expect(cluster.reads('n1')).toEqual([]);
    const round = cluster.pending.filter((m) => m.type === 'heartbeat');
    expect(round).toHaveLength(2);
    expect(round.every((m) => m.type === 'heartbeat' && m.round > 0)).toBe(true);

    cluster.deliver({ type: 'heartbeat', to: 'n2' });
    cluster.flush('n2');
    cluster.deliver({ type: 'heartbeat-response' });
    cluster.flush('n1');
    expect(cluster.reads('n1')).toEqual([{ id: 'r1', index: 1 }]);
  });

  it('a read whose heartbeat round was lost is confirmed by the next periodic heartbeat, which repeats the round', () => {
    const cluster = new Cluster({ voters: THREE });
    cluster.elect('n1');
    cluster.engine('n1').readIndex('r1');
    cluster.flush('n1');
    expect(cluster.drop({ type: 'heartbeat' })).toHaveLength(2);
    cluster.stabilize();
    expect(cluster.reads('n1')).toEqual([]);

    cluster.tick('n1', 3);
    cluster.stabilize();
    expect(cluster.reads('n1')).toEqual([{ id: 'r1', index: 1 }]);
  });

  it('a new leader delays reads until its no-op commits', () => {
    const cluster = new Cluster({
      voters: THREE,
      nodes: { n1: { log: [1] }, n2: { log: [1] }, n3: { log: [1] } },
    });
    cluster.campaign('n1');
    cluster.stabilize({ hold: { type: 'append' } });
    expect(cluster.status('n1')).toMatchObject({ role: 'leader', commitIndex: 0 });
    cluster.engine('n1').readIndex('r1');
    cluster.flush('n1');
    expect(cluster.pending.some((m) => m.type === 'heartbeat')).toBe(false);

    cluster.stabilize();
    expect(cluster.reads('n1')).toEqual([{ id: 'r1', index: 2 }]);
  });

  it('a deposed leader never confirms a read index; the read fails once it learns it lost leadership', () => {
    const cluster = new Cluster({ voters: THREE });
    cluster.elect('n1');
    cluster.isolate('n1');
    cluster.elect('n2');
    cluster.engine('n2').propose([payload(1)]);
    cluster.stabilize();

    cluster.engine('n1').readIndex('stale');
    for (let i = 0; i < 50; i++) {
      cluster.tick('n1');
      cluster.stabilize();
    }
    expect(cluster.status('n1').role).toBe('leader');
    expect(cluster.reads('n1')).toEqual([]);

    cluster.heal();
    cluster.tick('n1', 3);
    cluster.stabilize();
    expect(cluster.status('n1')).toMatchObject({ role: 'follower', term: 2 });
    expect(cluster.reads('n1')).toEqual([{ id: 'stale', error: 'leadership-lost' }]);
  });

  it('a follower’s read goes to the leader and returns the leader’s commit index', () => {
    const cluster = new Cluster({ voters: THREE });
    cluster.elect('n1');
    cluster.engine('n1').propose([payload(1)]);
    cluster.stabilize();
    expect(cluster.status('n1').commitIndex).toBe(2);
    expect(cluster.status('n2').commitIndex).toBe(1);

    cluster.engine('n2').readIndex('f1');
    cluster.flush('n2');
    expect(cluster.pending).toEqual([
      { type: 'read-index', from: 'n2', to: 'n1', term: 1, id: 'f1' },
    ]);
    cluster.stabilize();
    expect(cluster.reads('n2')).toEqual([{ id: 'f1', index: 2 }]);
  });

  it('a follower asks again for a read index whose request was lost, and settles the read once', () => {
    const cluster = new Cluster({ voters: THREE });
    cluster.elect('n1');
    cluster.engine('n2').readIndex('f1');
    cluster.flush('n2');
    expect(cluster.drop({ type: 'read-index' })).toHaveLength(1);
    cluster.tick('n2', 5);
    cluster.flush('n2');
    expect(cluster.pending).toEqual([]);

    cluster.tick('n2');
    cluster.flush('n2');
    expect(cluster.pending).toEqual([
      { type: 'read-index', from: 'n2', to: 'n1', term: 1, id: 'f1' },
    ]);
    cluster.stabilize();
    expect(cluster.reads('n2')).toEqual([{ id: 'f1', index: 1 }]);
    // Settled: the follower stops asking.
    cluster.tick('n1', 3);
    cluster.stabilize();
    cluster.tick('n2', 6);
    cluster.flush('n2');
    expect(cluster.pending.filter((m) => m.type === 'read-index')).toEqual([]);
  });

  it('a follower that abandoned a read ignores the leader’s late answer to it', () => {
    const cluster = new Cluster({ voters: THREE });
    cluster.elect('n1');
    cluster.engine('n2').readIndex('late');
    cluster.flush('n2');
    cluster.engine('n2').abandonRead('late');
    cluster.stabilize();
    expect(cluster.reads('n2')).toEqual([]);
  });
});

describe('Flow control', () => {
  it('pipelining: in replicate state the leader sends AppendEntries without waiting for acks, up to maxInflightMessages', () => {
    const cluster = new Cluster({
      voters: THREE,
      tuning: { maxInflightMessages: 3, maxEntriesPerMessage: 1 },
    });
    cluster.elect('n1');
    expect(cluster.status('n1').progress.n2?.state).toBe('replicate');

    cluster.engine('n1').propose([payload(1), payload(1), payload(1), payload(1), payload(1)]);
    cluster.flush('n1');
    const toN2 = () => cluster.drop((m) => m.type === 'append' && m.to === 'n2') as AppendEntries[];
    const window = toN2();
    expect(window.map((m) => m.entries.map((e) => e.index))).toEqual([[2], [3], [4]]);

    // Acknowledging the first frees one slot, and the next entry goes out at once.
    cluster.engine('n2').step(window[0] as AppendEntries);
    cluster.flush('n2');
    cluster.deliver({ from: 'n2' });
    cluster.flush('n1');
    expect(toN2().map((m) => m.entries.map((e) => e.index))).toEqual([[5]]);
  });

  it('backpressure: proposals are refused once uncommitted bytes would exceed maxUncommittedBytes, and accepted after commit', () => {
    const cluster = new Cluster({ voters: THREE, tuning: { maxUncommittedBytes: 100 } });
    cluster.elect('n1');
    const leader = cluster.engine('n1');
    // Each 10-byte command counts 34 bytes.
    expect(leader.propose([payload(10)])).toMatchObject({ ok: true });
    expect(leader.propose([payload(10)])).toMatchObject({ ok: true });
    expect(leader.propose([payload(10)])).toEqual({ ok: false, reason: 'backpressure' });
    cluster.stabilize();
    expect(cluster.status('n1').commitIndex).toBe(3);
    expect(leader.propose([payload(10)])).toMatchObject({ ok: true, index: 4 });
  });

  it('backpressure: a new leader counts the uncommitted entries it inherited, so their commit does not hide its own', () => {
    const limit = 150;
    const cluster = new Cluster({ voters: THREE, tuning: { maxUncommittedBytes: limit } });
    cluster.elect('n1');
    // n1 replicates two 34-byte commands of term 1 to both followers and hears no answer.
    cluster.engine('n1').propose([payload(10), payload(10)]);
    cluster.flush('n1');
    cluster.deliver({ type: 'append', from: 'n1' });
    cluster.flush('n2', 'n3');
    cluster.drop();
    cluster.isolate('n1');
    // n2 wins term 2; its no-op (index 4) is on its way to n3, not answered yet.
    cluster.campaign('n2');
    cluster.stabilize({ hold: { type: 'append' } });
    expect(cluster.status('n2')).toMatchObject({ role: 'leader', commitIndex: 1 });
    const leader = cluster.engine('n2');
    const own: number[] = [];
    const proposeUntilRefused = () => {
      for (;;) {
        const outcome = leader.propose([payload(10)]);
        if (!outcome.ok) return;
        own.push(outcome.index);
      }
    };
    proposeUntilRefused();
    // n3 answers the no-op: it commits, and the inherited commands with it; n2's own do not.
    cluster.deliver({ type: 'append', from: 'n2', to: 'n3' });
    cluster.flush('n3');
    cluster.deliver({ type: 'append-response', to: 'n2' });
    cluster.flush('n2');
    expect(cluster.status('n2').commitIndex).toBe(4);
    proposeUntilRefused();
    const uncommittedOwnBytes = own.filter((index) => index > 4).length * 34;
    expect(uncommittedOwnBytes).toBeLessThanOrEqual(limit);
    expect(uncommittedOwnBytes).toBeGreaterThan(limit - 34);
  });
});

describe('Raft paper 7, log compaction: InstallSnapshot', () => {
  it('a follower whose next entry was compacted away is sent the snapshot, installs it, and replication resumes after it', () => {
    const config = { voters: THREE };
    const cluster = new Cluster(config);
    cluster.elect('n1');
    cluster.isolate('n3');
    const leader = cluster.engine('n1');
    leader.propose([payload(1), payload(1), payload(1), payload(1), payload(1)]);
    cluster.stabilize();
    leader.propose([payload(2), payload(2)]);
    cluster.stabilize();
    expect(cluster.status('n1').commitIndex).toBe(8);
    leader.compact({ index: 6, term: 1, config });
    expect(cluster.status('n1').firstIndex).toBe(7);

    cluster.heal();
    cluster.tick('n1', 3);
    cluster.stabilize({ hold: { type: 'snapshot' } });
    expect(cluster.pending).toEqual([
      { type: 'snapshot', from: 'n1', to: 'n3', term: 1, snapshot: { index: 6, term: 1, config } },
    ]);
    expect(cluster.status('n1').progress.n3?.state).toBe('snapshot');

    cluster.deliver({ type: 'snapshot' });
    const [installed] = cluster.flush('n3');
    expect(installed?.snapshot).toEqual({ index: 6, term: 1, config });
    expect(installed?.write?.snapshot).toEqual({ index: 6, term: 1 });
    expect(installed?.messages).toEqual([
      { type: 'snapshot-response', from: 'n3', to: 'n1', term: 1, index: 6 },
    ]);

    cluster.stabilize();
    cluster.tick('n1', 3);
    cluster.stabilize();
    expect(cluster.disk('n3').snapshot).toEqual({ index: 6, term: 1 });
    expect(cluster.disk('n3').entries.map((e) => e.index)).toEqual([7, 8]);
    expect(cluster.status('n1').progress.n3).toMatchObject({ state: 'replicate', match: 8 });
    // The state machine was restored from the snapshot; only what follows it is applied.
    expect(cluster.applied('n3').map((e) => e.index)).toEqual([1, 7, 8]);
  });

  it('Figure 13, receiver step 6: a snapshot whose last entry the follower holds keeps the entries after it; one within its commit index changes nothing', () => {
    const config = { voters: THREE };
    const cluster = new Cluster(config);
    cluster.elect('n1');
    // n2 receives entries 2..4 and hears of no commit beyond the no-op yet.
    cluster.engine('n1').propose([payload(1), payload(1), payload(1)]);
    cluster.flush('n1');
    cluster.deliver({ type: 'append', to: 'n2' });
    cluster.flush('n2');
    cluster.drop();
    expect(cluster.status('n2')).toMatchObject({ lastIndex: 4, commitIndex: 1 });
    const snapshotUpTo = (index: number): Message => ({
      type: 'snapshot',
      from: 'n1',
      to: 'n2',
      term: 1,
      snapshot: { index, term: 1, config },
    });

    cluster.engine('n2').step(snapshotUpTo(3));
    const kept = cluster.flush('n2');
    expect(kept.some((r) => r.snapshot !== undefined)).toBe(false);
    expect(cluster.status('n2')).toMatchObject({ firstIndex: 1, lastIndex: 4, commitIndex: 3 });
    expect(cluster.disk('n2').entries.map((e) => e.index)).toEqual([1, 2, 3, 4]);
    expect(sent(kept, 'snapshot-response')).toEqual([
      { type: 'snapshot-response', from: 'n2', to: 'n1', term: 1, index: 3 },
    ]);

    // A late duplicate, within the commit index: answered with the commit index, nothing else.
    cluster.drop();
    cluster.engine('n2').step(snapshotUpTo(2));
    const ignored = cluster.flush('n2');
    expect(ignored.some((r) => r.snapshot !== undefined || r.write !== undefined)).toBe(false);
    expect(cluster.status('n2')).toMatchObject({ lastIndex: 4, commitIndex: 3 });
    expect(sent(ignored, 'snapshot-response')).toEqual([
      { type: 'snapshot-response', from: 'n2', to: 'n1', term: 1, index: 3 },
    ]);
  });
});

describe('Figure 2, persistent state: durable before it is announced', () => {
  /**
   * Replays the Readies of `id` against a model of its disk, and checks that every message that
   * promises durable state (an acknowledged entry, a granted vote, an installed snapshot) leaves
   * in the same Ready as the write that makes it durable, or in a later one; what may leave
   * before the write is an AppendEntries of a durable term.
   */
  function checkAcknowledgementsFollowWrites(cluster: Cluster, id: string): number {
    const log = new Map<number, number>();
    let snapshotIndex = 0;
    let hardState = { term: 0, votedFor: null as string | null };
    let checked = 0;
    for (const ready of cluster.readies(id)) {
      const w = ready.write;
      const termBefore = hardState.term;
      if (w?.snapshot !== undefined) {
        snapshotIndex = w.snapshot.index;
        log.clear();
      }
      if (w?.truncateFrom !== undefined)
        for (const i of [...log.keys()]) if (i >= w.truncateFrom) log.delete(i);
      for (const e of w?.entries ?? []) log.set(e.index, e.term);
      if (w?.hardState !== undefined) hardState = w.hardState;
      const durableLast = Math.max(snapshotIndex, ...log.keys());
      for (const m of ready.earlyMessages) {
        // Sent before the write: only AppendEntries, of the term the disk held already.
        expect(m).toMatchObject({ type: 'append', term: termBefore });
      }
      for (const m of ready.messages) {
        if (m.type === 'append-response' && m.success) {
          expect(m.index).toBeLessThanOrEqual(durableLast);
          checked++;
        } else if (m.type === 'vote-response' && m.granted && !m.prevote) {
          expect(hardState).toMatchObject({ term: m.term, votedFor: m.to });
          checked++;
        } else if (m.type === 'snapshot-response') {
          expect(m.index).toBeLessThanOrEqual(durableLast);
          checked++;
        }
      }
    }
    return checked;
  }

  it('votes and acknowledgements of entries travel in the Ready that persists them, or a later one', () => {
    const leaderLog = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
    const cluster = new Cluster({
      voters: ['leader', 'e', 'f'],
      nodes: {
        leader: { log: leaderLog, hardState: { term: 7 } },
        e: { log: [1, 1, 1, 4, 4, 4, 4], hardState: { term: 7 } },
        f: { log: [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3], hardState: { term: 7 } },
      },
    });
    cluster.elect('leader');
    cluster.engine('leader').propose([payload(3), payload(3)]);
    cluster.stabilize();
    cluster.tick('leader', 3);
    cluster.stabilize();
    expect(cluster.logTerms('f')).toEqual([...leaderLog, 8, 8, 8]);
    expect(checkAcknowledgementsFollowWrites(cluster, 'e')).toBeGreaterThan(2);
    expect(checkAcknowledgementsFollowWrites(cluster, 'f')).toBeGreaterThan(2);
  });
});

describe("Thesis 10.2.1: a leader's AppendEntries leave while its own write persists", () => {
  it("the leader's own entries count toward commit only once durable: acknowledgements of an entry its disk does not hold yet commit nothing", () => {
    const cluster = new Cluster({ voters: THREE });
    cluster.elect('n1');
    const leader = cluster.engine('n1');
    const committedBefore = cluster.status('n1').commitIndex;
    expect(leader.propose([payload(1)])).toMatchObject({ ok: true });
    const ready = leader.ready();
    const index = committedBefore + 1;
    expect(ready.write?.entries?.map((e) => e.index)).toEqual([index]);
    expect(ready.earlyMessages.map((m) => `${m.type} ${m.to}`)).toEqual(['append n2', 'append n3']);
    expect(ready.messages.filter((m) => m.type === 'append')).toEqual([]);

    // While n1's write is on its way to its disk, n2 persists the entry and acknowledges it; n3
    // has not received it. n2's copy is the only durable one: 1 of 3.
    cluster.pending.push(...ready.earlyMessages.filter((m) => m.to === 'n2'));
    cluster.deliver({ to: 'n2' });
    cluster.flush('n2');
    expect(cluster.deliver({ from: 'n2', to: 'n1' }).map((m) => m.type)).toEqual([
      'append-response',
    ]);
    expect(cluster.status('n1').progress.n2?.match).toBe(index);
    expect(cluster.disk('n1').entries.at(-1)?.index).toBe(index - 1);
    expect(cluster.status('n1').commitIndex).toBe(committedBefore);

    // The write is durable: the leader's copy counts now, 2 of 3.
    cluster.complete('n1', ready);
    expect(cluster.status('n1').commitIndex).toBe(index);
    cluster.flush('n1');
    expect(cluster.applied('n1').at(-1)?.index).toBe(index);
  });

  it('AppendEntries of a term not yet durable wait for the write that records it (Figure 2: a term is durable before it is sent)', () => {
    const cluster = new Cluster({ voters: ['n1'], learners: ['n2'] });
    cluster.campaign('n1');
    expect(cluster.status('n1')).toMatchObject({ role: 'leader', term: 1 });
    const first = cluster.engine('n1').ready();
    expect(first.write?.hardState).toMatchObject({ term: 1, votedFor: 'n1' });
    expect(first.earlyMessages).toEqual([]);
    expect(first.messages).toContainEqual(expect.objectContaining({ type: 'append', to: 'n2' }));
    cluster.complete('n1', first);
    cluster.stabilize();

    cluster.engine('n1').propose([payload(1)]);
    const next = cluster.engine('n1').ready();
    expect(next.write?.hardState?.term ?? 1).toBe(1);
    expect(next.earlyMessages).toContainEqual(
      expect.objectContaining({ type: 'append', to: 'n2', term: 1 }),
    );
    cluster.complete('n1', next);
  });
});

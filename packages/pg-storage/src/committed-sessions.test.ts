import { describe, expect, it } from 'vitest';
import { CommittedSessions, type StoredSession } from './committed-sessions.ts';

const session = (lastActive: number, floor: number, highest: number): StoredSession => ({
  lastActive,
  floor,
  highest,
});

describe('CommittedSessions: what a batch may start from without reading Postgres', () => {
  it('answers only for the batch right after its last commit, with every client known and no possible retry', () => {
    const known = new CommittedSessions(10);
    expect(known.lookup(1, [])).toBeUndefined(); // nothing committed yet
    known.committed(known.begin(), {
      index: 4,
      now: 1_000,
      sessions: [['c', session(900, 2, 5)]],
    });
    expect(known.lookup(5, [])).toEqual({ now: 1_000, sessions: new Map() });
    // New (above the highest) and expired (at or below the floor) need no recorded result.
    expect(known.lookup(5, [{ clientId: 'c', seq: 6 }])?.sessions.get('c')).toEqual(
      session(900, 2, 5),
    );
    expect(known.lookup(5, [{ clientId: 'c', seq: 2 }])).toBeDefined();
    // A possible retry (floor < seq <= highest) or an unknown client: read Postgres.
    expect(known.lookup(5, [{ clientId: 'c', seq: 3 }])).toBeUndefined();
    expect(known.lookup(5, [{ clientId: 'c', seq: 5 }])).toBeUndefined();
    expect(
      known.lookup(5, [
        { clientId: 'c', seq: 6 },
        { clientId: 'd', seq: 1 },
      ]),
    ).toBeUndefined();
  });

  it('forgets every session once a batch does not follow its last commit (another writer moved the position)', () => {
    for (const firstIndex of [6, 4]) {
      const known = new CommittedSessions(10);
      known.committed(known.begin(), {
        index: 4,
        now: 1_000,
        sessions: [['c', session(900, 2, 5)]],
      });
      expect(known.lookup(firstIndex, [])).toBeUndefined();
      expect(known.lookup(5, [])).toBeUndefined(); // not even the batch that followed before
      // The read batch re-arms the index with its own clients only; c must be read again.
      known.committed(known.begin(), {
        index: 9,
        now: 2_000,
        sessions: [['d', session(2_000, 0, 1)]],
      });
      expect(known.lookup(10, [{ clientId: 'd', seq: 2 }])).toBeDefined();
      expect(known.lookup(10, [{ clientId: 'c', seq: 6 }])).toBeUndefined();
    }
  });

  it('records nothing of a batch begun before it forgot, and forgets everything', () => {
    const known = new CommittedSessions(10);
    known.committed(known.begin(), { index: 1, now: 10, sessions: [['c', session(10, 0, 1)]] });
    const stale = known.begin();
    known.forget();
    expect(known.lookup(2, [])).toBeUndefined();
    known.committed(stale, { index: 2, now: 20, sessions: [['c', session(20, 0, 2)]] });
    expect(known.lookup(3, [])).toBeUndefined();
    known.committed(known.begin(), { index: 7, now: 70, sessions: [] });
    expect(known.lookup(8, [{ clientId: 'c', seq: 3 }])).toBeUndefined(); // c was forgotten
  });

  it('keeps the most recently committed clients up to its capacity, and drops swept sessions', () => {
    const known = new CommittedSessions(2);
    let index = 0;
    const commit = (sessions: [string, StoredSession][], sweptBefore?: number): void => {
      index++;
      known.committed(known.begin(), {
        index,
        now: 1_000 + index,
        sessions,
        ...(sweptBefore === undefined ? {} : { sweptBefore }),
      });
    };
    const has = (clientId: string): boolean =>
      known.lookup(index + 1, [{ clientId, seq: 1_000 }]) !== undefined;
    commit([['a', session(100, 0, 1)]]);
    commit([['b', session(200, 0, 1)]]);
    commit([['a', session(300, 0, 2)]]); // a is now the most recent
    commit([['c', session(400, 0, 1)]]);
    expect([has('a'), has('b'), has('c')]).toEqual([true, false, true]);
    // The sweep deleted the sessions idle since before 350, a batch's own ones included.
    commit([['d', session(340, 0, 1)]], 350);
    expect([has('a'), has('c'), has('d')]).toEqual([false, true, false]);
  });
});

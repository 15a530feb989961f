import { describe, expect, it } from 'vitest';
import {
  ClientSessions,
  type ClientSessionsJson,
  sessionConflictResult,
} from './client-sessions.ts';
import { commandDigest } from './command-digest.ts';
import { describeClientSessionConformance } from './testing/client-session-conformance.ts';

describeClientSessionConformance('ClientSessions', async (options) => {
  const sessions = new ClientSessions<string>(options);
  return {
    apply: async (batches) =>
      batches.map((batch) =>
        batch.map((command) => {
          const key = { ...command, digest: commandDigest(command.command) };
          const check = sessions.check(key, command.timestamp);
          switch (check.kind) {
            case 'new':
              sessions.record(key, command.token, command.timestamp);
              return { result: command.token };
            case 'duplicate':
              return { result: check.result };
            case 'expired':
              return { expired: true };
            case 'conflict':
              return { conflict: true };
            default:
              return check satisfies never;
          }
        }),
      ),
  };
});

const HOUR = 60 * 60 * 1_000;
const DAY = 24 * HOUR;
const T0 = 1_700_000_000_000;

describe('ClientSessions (exactly-once commands, Raft thesis 6.3)', () => {
  it('answers new for a first command, and duplicate with the recorded result afterwards', () => {
    const sessions = new ClientSessions<string>();
    const session = { clientId: 'a', seq: 1 };
    expect(sessions.check(session, T0)).toEqual({ kind: 'new' });
    sessions.record(session, 'result-1', T0);
    expect(sessions.check(session, T0 + 5)).toEqual({ kind: 'duplicate', result: 'result-1' });
    expect(sessions.check({ clientId: 'a', seq: 2 }, T0 + 5)).toEqual({ kind: 'new' });
    expect(sessions.check({ clientId: 'b', seq: 1 }, T0 + 5)).toEqual({ kind: 'new' });
  });

  it('accepts commands of one client out of order (pipelined clients)', () => {
    const sessions = new ClientSessions<number>();
    sessions.record({ clientId: 'a', seq: 3 }, 3, T0);
    expect(sessions.check({ clientId: 'a', seq: 1 }, T0)).toEqual({ kind: 'new' });
    sessions.record({ clientId: 'a', seq: 1 }, 1, T0);
    sessions.record({ clientId: 'a', seq: 2 }, 2, T0);
    for (const seq of [1, 2, 3]) {
      expect(sessions.check({ clientId: 'a', seq }, T0)).toEqual({
        kind: 'duplicate',
        result: seq,
      });
    }
  });

  it('keeps the results of the highest retainPerClient sequence numbers; older ones are expired', () => {
    const sessions = new ClientSessions<number>({ retainPerClient: 3 });
    for (const seq of [2, 1, 4, 3, 5]) sessions.record({ clientId: 'a', seq }, seq * 10, T0);
    // Kept: 3, 4, 5. Dropped: 1, 2, so anything at or below 2 may have executed.
    expect(sessions.check({ clientId: 'a', seq: 1 }, T0)).toEqual({ kind: 'expired' });
    expect(sessions.check({ clientId: 'a', seq: 2 }, T0)).toEqual({ kind: 'expired' });
    expect(sessions.check({ clientId: 'a', seq: 3 }, T0)).toEqual({
      kind: 'duplicate',
      result: 30,
    });
    expect(sessions.check({ clientId: 'a', seq: 5 }, T0)).toEqual({
      kind: 'duplicate',
      result: 50,
    });
    expect(sessions.check({ clientId: 'a', seq: 6 }, T0)).toEqual({ kind: 'new' });
    // Retention is per client.
    sessions.record({ clientId: 'b', seq: 1 }, 1, T0);
    expect(sessions.check({ clientId: 'b', seq: 1 }, T0)).toEqual({ kind: 'duplicate', result: 1 });
  });

  it('retains 1,000 results per client by default', () => {
    const sessions = new ClientSessions<number>();
    for (let seq = 1; seq <= 1_001; seq++) sessions.record({ clientId: 'a', seq }, seq, T0);
    expect(sessions.check({ clientId: 'a', seq: 1 }, T0)).toEqual({ kind: 'expired' });
    expect(sessions.check({ clientId: 'a', seq: 2 }, T0)).toEqual({ kind: 'duplicate', result: 2 });
  });

  it('expires a session idle for longer than expireAfterMs (one hour by default)', () => {
    const sessions = new ClientSessions<string>();
    sessions.record({ clientId: 'a', seq: 1 }, 'r', T0);
    expect(sessions.check({ clientId: 'a', seq: 1 }, T0 + HOUR)).toEqual({
      kind: 'duplicate',
      result: 'r',
    });
    expect(sessions.check({ clientId: 'a', seq: 1 }, T0 + HOUR + 1)).toEqual({ kind: 'expired' });
    // Even a command it never sent: the client must start a new session (a new client id).
    expect(sessions.check({ clientId: 'a', seq: 2 }, T0 + HOUR + 1)).toEqual({ kind: 'expired' });
    expect(() => sessions.record({ clientId: 'a', seq: 2 }, 'x', T0 + HOUR + 1)).toThrow(/expired/);
  });

  it('keeps a session alive while it records commands', () => {
    const sessions = new ClientSessions<number>({ expireAfterMs: 100 });
    for (let seq = 1; seq <= 10; seq++) sessions.record({ clientId: 'a', seq }, seq, T0 + seq * 90);
    sessions.expire(T0 + 1_000);
    expect(sessions.check({ clientId: 'a', seq: 10 }, T0 + 1_000)).toEqual({
      kind: 'duplicate',
      result: 10,
    });
  });

  it('forgets an expired session after forgetAfterMs (one day by default): the id starts anew', () => {
    const sessions = new ClientSessions<string>();
    sessions.record({ clientId: 'a', seq: 7 }, 'r', T0);
    expect(sessions.check({ clientId: 'a', seq: 8 }, T0 + DAY)).toEqual({ kind: 'expired' });
    expect(sessions.check({ clientId: 'a', seq: 7 }, T0 + DAY + 1)).toEqual({ kind: 'new' });
    sessions.record({ clientId: 'a', seq: 1 }, 'fresh', T0 + DAY + 1);
    expect(sessions.check({ clientId: 'a', seq: 1 }, T0 + DAY + 2)).toEqual({
      kind: 'duplicate',
      result: 'fresh',
    });
    expect(sessions.check({ clientId: 'a', seq: 7 }, T0 + DAY + 2)).toEqual({ kind: 'new' });
  });

  it('gives the same answers whether or not expire ran, so replicas agree whatever their batches', () => {
    const options = { expireAfterMs: 100, forgetAfterMs: 300, retainPerClient: 4 };
    const eager = new ClientSessions<string>(options);
    const lazy = new ClientSessions<string>(options);
    let random = 12345;
    const next = (bound: number): number => {
      random = (random * 1_103_515_245 + 12_345) % 2_147_483_648;
      return random % bound;
    };
    let timestamp = T0;
    const answers: [unknown, unknown][] = [];
    for (let step = 0; step < 2_000; step++) {
      timestamp += next(60) - 10; // leader clocks may step back a little
      const session = { clientId: `c${next(5)}`, seq: 1 + next(12) };
      const eagerAnswer = eager.check(session, timestamp);
      answers.push([eagerAnswer, lazy.check(session, timestamp)]);
      if (eagerAnswer.kind === 'new') {
        eager.record(session, `${session.clientId}/${session.seq}@${step}`, timestamp);
        lazy.record(session, `${session.clientId}/${session.seq}@${step}`, timestamp);
      }
      eager.expire(timestamp);
      if (step % 97 === 0) lazy.expire(timestamp - next(500));
    }
    for (const [eagerAnswer, lazyAnswer] of answers) expect(lazyAnswer).toEqual(eagerAnswer);
    const kinds = new Set(answers.map(([answer]) => (answer as { kind: string }).kind));
    expect(kinds).toEqual(new Set(['new', 'duplicate', 'expired']));
  });

  it('frees expired and forgotten sessions on expire, in entry time, never past the last record', () => {
    const sessions = new ClientSessions<string>({ expireAfterMs: 100, forgetAfterMs: 200 });
    sessions.record({ clientId: 'old', seq: 1 }, 'r', T0);
    sessions.record({ clientId: 'recent', seq: 1 }, 'r', T0 + 150);
    // A timestamp beyond the latest recorded one counts as that one (T0 + 150).
    sessions.expire(T0 + 10_000);
    expect(sessions.toJSON().sessions.map((s) => s.clientId)).toEqual(['recent']);
    expect(sessions.toJSON().expired).toEqual([{ clientId: 'old', lastActivity: T0 }]);
    sessions.record({ clientId: 'other', seq: 1 }, 'r', T0 + 201);
    sessions.expire(T0 + 201);
    expect(sessions.toJSON().expired).toEqual([]);
    expect(sessions.toJSON().sessions.map((s) => s.clientId)).toEqual(['recent', 'other']);
  });

  it('does not let a leader clock that steps back make a session younger', () => {
    const sessions = new ClientSessions<string>({ expireAfterMs: 100 });
    sessions.record({ clientId: 'a', seq: 1 }, 'r', T0 + 1_000);
    sessions.record({ clientId: 'b', seq: 1 }, 'r', T0); // stamped by a leader whose clock lags
    // b's activity counts at T0 + 1000, the latest time seen, not at T0.
    expect(sessions.toJSON().sessions.at(-1)).toMatchObject({
      clientId: 'b',
      lastActivity: T0 + 1_000,
    });
    expect(sessions.check({ clientId: 'b', seq: 1 }, T0 + 1_100)).toMatchObject({
      kind: 'duplicate',
    });
  });

  it('refuses to record a command that is not new', () => {
    const sessions = new ClientSessions<string>({ retainPerClient: 1 });
    sessions.record({ clientId: 'a', seq: 2 }, 'r', T0);
    expect(() => sessions.record({ clientId: 'a', seq: 2 }, 'again', T0)).toThrow(/not new/);
    sessions.record({ clientId: 'a', seq: 3 }, 'r', T0);
    expect(() => sessions.record({ clientId: 'a', seq: 2 }, 'late', T0)).toThrow(/not new/);
    expect(sessions.check({ clientId: 'a', seq: 3 }, T0)).toEqual({
      kind: 'duplicate',
      result: 'r',
    });
  });

  it('round-trips through JSON text and keeps answering the same', () => {
    type Result = { status: 'ok'; value: { n: number } } | { status: 'error'; message: string };
    const options = { retainPerClient: 2, expireAfterMs: 100, forgetAfterMs: 1_000 };
    const sessions = new ClientSessions<Result>(options);
    sessions.record({ clientId: 'gone', seq: 1 }, { status: 'ok', value: { n: 0 } }, T0 - 500);
    sessions.record({ clientId: 'a', seq: 1 }, { status: 'ok', value: { n: 1 } }, T0);
    sessions.record({ clientId: 'a', seq: 2 }, { status: 'error', message: 'no' }, T0 + 1);
    sessions.record({ clientId: 'a', seq: 3 }, { status: 'ok', value: { n: 3 } }, T0 + 2);
    sessions.record({ clientId: 'b', seq: 9 }, { status: 'ok', value: { n: 9 } }, T0 + 3);
    sessions.expire(T0 + 3);
    const text = JSON.stringify(sessions);
    const restored = ClientSessions.fromJSON<Result>(
      JSON.parse(text) as ClientSessionsJson<Result>,
      options,
    );
    expect(JSON.stringify(restored)).toBe(text);
    const probes = [
      { clientId: 'a', seq: 1 },
      { clientId: 'a', seq: 2 },
      { clientId: 'a', seq: 3 },
      { clientId: 'a', seq: 4 },
      { clientId: 'b', seq: 9 },
      { clientId: 'gone', seq: 1 },
      { clientId: 'new', seq: 1 },
    ];
    for (const probe of probes) {
      for (const at of [T0 + 3, T0 + 200, T0 + 2_000]) {
        expect(restored.check(probe, at)).toEqual(sessions.check(probe, at));
      }
    }
    expect(restored.check({ clientId: 'a', seq: 2 }, T0 + 3)).toEqual({
      kind: 'duplicate',
      result: { status: 'error', message: 'no' },
    });
    expect(restored.check({ clientId: 'gone', seq: 1 }, T0 + 3)).toEqual({ kind: 'expired' });
  });

  it('rejects malformed snapshot data and invalid options', () => {
    expect(() => ClientSessions.fromJSON(JSON.parse('{"now":"x"}'))).toThrow(TypeError);
    expect(() =>
      ClientSessions.fromJSON(JSON.parse('{"now":1,"sessions":[{"clientId":1}],"expired":[]}')),
    ).toThrow(TypeError);
    expect(() => new ClientSessions({ retainPerClient: 0 })).toThrow(RangeError);
    expect(() => new ClientSessions({ expireAfterMs: 10, forgetAfterMs: 5 })).toThrow(RangeError);
  });
});

describe('command digests with client sessions', () => {
  it('tells a retry of a command from another command reusing its stamp, also after a snapshot', () => {
    const sessions = new ClientSessions<string>();
    const put = { op: 'put', key: 'k', value: 'v' };
    const key = { clientId: 'a', seq: 1, digest: commandDigest(put) };
    sessions.record(key, 'done', T0);
    // The same command, its keys in another order: a retry.
    const retry = {
      clientId: 'a',
      seq: 1,
      digest: commandDigest({ value: 'v', key: 'k', op: 'put' }),
    };
    expect(sessions.check(retry, T0 + 1)).toEqual({ kind: 'duplicate', result: 'done' });
    const other = { clientId: 'a', seq: 1, digest: commandDigest({ ...put, value: 'w' }) };
    expect(sessions.check(other, T0 + 1)).toEqual({ kind: 'conflict' });
    // Without a digest (a state machine that records none), a stamp is all there is.
    expect(sessions.check({ clientId: 'a', seq: 1 }, T0 + 1)).toMatchObject({ kind: 'duplicate' });
    const restored = ClientSessions.fromJSON<string>(
      JSON.parse(JSON.stringify(sessions.toJSON())) as ClientSessionsJson<string>,
    );
    expect(restored.check(other, T0 + 2)).toEqual({ kind: 'conflict' });
    expect(restored.check(retry, T0 + 2)).toEqual({ kind: 'duplicate', result: 'done' });
  });

  it('answers a conflict with SessionConflictError (code CONFLICT) and executes nothing', () => {
    expect(sessionConflictResult({ clientId: 'a', seq: 4 })).toMatchObject({
      status: 'error',
      error: { name: 'SessionConflictError', code: 'CONFLICT', message: /sequence number 4/ },
    });
  });
});

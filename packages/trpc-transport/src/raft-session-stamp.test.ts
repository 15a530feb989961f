import { TRPCError } from '@trpc/server';
import { describe, expect, it } from 'vitest';
import { stampOf } from './raft-session-stamp.ts';

describe('stampOf: the client session a replicated request carries', () => {
  it('reads a well-formed stamp, keeping only clientId and seq', () => {
    expect(stampOf({ key: 'k' })).toBeUndefined();
    expect(stampOf({ raftSession: { clientId: 'c', seq: 1 } })).toEqual({ clientId: 'c', seq: 1 });
    const longest = 'x'.repeat(128);
    expect(stampOf({ raftSession: { clientId: longest, seq: 2 ** 53 - 1, extra: true } })).toEqual({
      clientId: longest,
      seq: 2 ** 53 - 1,
    });
  });

  it('refuses a malformed stamp or an input that is not an object with BAD_REQUEST', () => {
    const refused = [
      { raftSession: { clientId: '', seq: 1 } },
      { raftSession: { clientId: 'x'.repeat(129), seq: 1 } },
      { raftSession: { clientId: 7, seq: 1 } },
      { raftSession: { clientId: 'c', seq: 0 } },
      { raftSession: { clientId: 'c', seq: 1.5 } },
      { raftSession: { clientId: 'c', seq: 2 ** 53 } },
      { raftSession: { clientId: 'c', seq: '1' } },
      { raftSession: { clientId: 'c' } },
      { raftSession: null },
      { raftSession: 'c:1' },
      undefined,
      null,
      'text',
      [{ raftSession: { clientId: 'c', seq: 1 } }],
    ];
    for (const input of refused) {
      let thrown: unknown;
      try {
        stampOf(input);
      } catch (error) {
        thrown = error;
      }
      expect(thrown, JSON.stringify(input)).toBeInstanceOf(TRPCError);
      expect((thrown as TRPCError).code).toBe('BAD_REQUEST');
    }
  });
});

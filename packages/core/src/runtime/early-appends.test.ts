import { describe, expect, it } from 'vitest';
import type { Ready } from '../engine/ready.ts';
import type { LogEntry } from '../log-entry.ts';
import type { LogWrite } from '../log-store.ts';
import type { Message } from '../message.ts';
import { splitEarlyAppends } from './early-appends.ts';

const entry: LogEntry = { index: 6, term: 3, type: 'command', data: new Uint8Array([1]) };
const append = (to: string, term = 3): Message => ({
  type: 'append',
  from: 'n1',
  to,
  term,
  prevIndex: 5,
  prevTerm: 3,
  entries: [entry],
  commit: 5,
});
const heartbeat: Message = {
  type: 'heartbeat',
  from: 'n1',
  to: 'n2',
  term: 3,
  commit: 5,
  round: 1,
};
const durable = { term: 3, votedFor: 'n1' };

function ready(write: LogWrite | undefined, messages: readonly Message[]): Ready {
  return {
    softState: undefined,
    snapshot: undefined,
    write,
    messages,
    committed: [],
    reads: [],
    hardState: { term: 3, votedFor: 'n1', commitIndex: 5 },
  };
}

describe('splitEarlyAppends', () => {
  it("lets a leader's AppendEntries of its durable term go before the write; the rest waits", () => {
    const split = splitEarlyAppends(
      ready({ entries: [entry], hardState: { term: 3, votedFor: 'n1', commitIndex: 5 } }, [
        append('n2'),
        heartbeat,
        append('n3'),
      ]),
      durable,
    );
    expect(split).toEqual({ early: [append('n2'), append('n3')], afterPersist: [heartbeat] });
  });

  it('sends everything after the write when it changes the term or the vote', () => {
    for (const hardState of [
      { term: 4, votedFor: 'n1', commitIndex: 5 },
      { term: 3, votedFor: null, commitIndex: 5 },
    ]) {
      expect(
        splitEarlyAppends(ready({ entries: [entry], hardState }, [append('n2')]), durable),
      ).toBe(undefined);
    }
  });

  it('sends everything after a write that truncates or installs a snapshot, or when nothing is written', () => {
    const messages = [append('n2')];
    expect(splitEarlyAppends(ready({ truncateFrom: 6, entries: [entry] }, messages), durable)).toBe(
      undefined,
    );
    expect(splitEarlyAppends(ready({ snapshot: { index: 5, term: 3 } }, messages), durable)).toBe(
      undefined,
    );
    expect(splitEarlyAppends(ready(undefined, messages), durable)).toBe(undefined);
  });

  it('keeps an AppendEntries of a term that is not the durable one for after the write', () => {
    expect(splitEarlyAppends(ready({ entries: [entry] }, [append('n2', 4)]), durable)).toBe(
      undefined,
    );
  });
});

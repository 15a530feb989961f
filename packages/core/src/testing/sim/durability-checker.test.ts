import { describe, expect, it } from 'vitest';
import type { LogEntry } from '../../log-entry.ts';
import { DurabilityChecker } from './durability-checker.ts';
import { InvariantViolation } from './invariant-checker.ts';

function entryAt(index: number, term: number): LogEntry {
  return { index, term, type: 'command', data: new Uint8Array([index]) };
}

/** What the cluster applied: one entry per index. */
function appliedLog(...entries: LogEntry[]): (index: number) => LogEntry | undefined {
  return (index) => entries.find((entry) => entry.index === index);
}

describe('DurabilityChecker', () => {
  it('accepts a run in which every acknowledged write is applied everywhere', () => {
    const checker = new DurabilityChecker();
    checker.acknowledged({ index: 2, term: 1 });
    checker.acknowledged({ index: 3, term: 2 });
    checker.acknowledged({ index: 3, term: 2 });
    expect(checker.count).toBe(2);
    const applied = appliedLog(entryAt(1, 1), entryAt(2, 1), entryAt(3, 2));
    expect(() =>
      checker.check(applied, [
        { id: 'a', appliedIndex: 3 },
        { id: 'b', appliedIndex: 4 },
      ]),
    ).not.toThrow();
  });

  it('reports an acknowledged write that no node applied (lost)', () => {
    const checker = new DurabilityChecker();
    checker.acknowledged({ index: 2, term: 1 });
    expect(() => checker.check(appliedLog(entryAt(1, 1)), [{ id: 'a', appliedIndex: 1 }])).toThrow(
      /index 2 \(term 1\) is not the applied entry, which is missing/,
    );
  });

  it('reports an acknowledged write replaced by an entry of another term (changed)', () => {
    const checker = new DurabilityChecker();
    checker.acknowledged({ index: 2, term: 1 });
    const error = (() => {
      try {
        checker.check(appliedLog(entryAt(1, 1), entryAt(2, 3)), [{ id: 'a', appliedIndex: 2 }]);
      } catch (caught) {
        return caught;
      }
    })();
    expect(error).toBeInstanceOf(InvariantViolation);
    expect((error as InvariantViolation).property).toBe('Durability');
    expect((error as InvariantViolation).message).toMatch(/which is of term 3/);
  });

  it('reports a final member that has not applied an acknowledged write', () => {
    const checker = new DurabilityChecker();
    checker.acknowledged({ index: 3, term: 2 });
    const applied = appliedLog(entryAt(1, 1), entryAt(2, 1), entryAt(3, 2));
    expect(() =>
      checker.check(applied, [
        { id: 'a', appliedIndex: 3 },
        { id: 'b', appliedIndex: 2 },
      ]),
    ).toThrow(/not applied on b, which applied up to 2/);
  });

  it('reports one index acknowledged in two terms', () => {
    const checker = new DurabilityChecker();
    checker.acknowledged({ index: 4, term: 2 });
    expect(() => checker.acknowledged({ index: 4, term: 3 })).toThrow(
      /index 4 was acknowledged in term 2 and again in term 3/,
    );
  });
});

import { describe, expect, it } from 'vitest';
import {
  type AppliedWrites,
  checkAppliedWrites,
  checkLinearizable,
  checkReplicas,
} from './checks.ts';
import type { RecordedOperation } from './history.ts';
import type { NemesisAudit } from './node/nemesis-app.ts';

let nextId = 0;
type Spec = Partial<RecordedOperation> & Pick<RecordedOperation, 'kind' | 'call'>;
function op(spec: Spec): RecordedOperation {
  const id = ++nextId;
  const write = spec.kind !== 'get';
  return {
    id,
    client: spec.client ?? id,
    round: 1,
    key: 'r1-k0',
    via: 'any',
    return: spec.outcome === 'unknown' ? null : spec.call + 5,
    outcome: 'ok',
    ...(write ? { writeId: `w${id}` } : {}),
    ...spec,
  };
}

/** A history both checks accept: two appends, a cas, and reads that saw each in turn. */
function cleanHistory(): RecordedOperation[] {
  return [
    op({ kind: 'append', value: '[a]', call: 0, writeId: 'a' }),
    op({ kind: 'get', call: 10, output: '[a]' }),
    op({ kind: 'append', value: '[b]', call: 20, writeId: 'b' }),
    op({ kind: 'cas', expected: '[a][b]', value: 'c', call: 30, output: true, writeId: 'c' }),
    op({ kind: 'get', call: 40, output: 'c' }),
  ];
}

function appliedOnAll(counts: Record<string, number>): Map<string, AppliedWrites> {
  return new Map(['n1', 'n2', 'n3'].map((node) => [node, new Map(Object.entries(counts))]));
}

function audit(overrides: Partial<NemesisAudit> = {}): NemesisAudit {
  return {
    appliedIndex: 42,
    appliedIndexAfter: 42,
    kvRows: 3,
    kvChecksum: 'aaa',
    writeRows: 9,
    writeChecksum: 'bbb',
    duplicates: [],
    writes: [],
    ...overrides,
  };
}

describe('the nemesis checks catch what they are for', () => {
  it('accept a clean history, its writes applied once on every node, and equal replicas', () => {
    const history = cleanHistory();
    expect(checkLinearizable(history)).toEqual({ verdict: 'ok', operations: 5 });
    expect(checkAppliedWrites(history, appliedOnAll({ a: 1, b: 1, c: 1 }))).toEqual([]);
    expect(
      checkReplicas(
        new Map([
          ['n1', audit()],
          ['n2', audit()],
          ['n3', audit()],
        ]),
      ),
    ).toEqual([]);
  });

  it('a planted duplicate: a write applied twice on one node, and a read that sees an append twice', () => {
    const history = cleanHistory();
    const applied = appliedOnAll({ a: 1, b: 1, c: 1 });
    applied.set(
      'n2',
      new Map([
        ['a', 1],
        ['b', 2],
        ['c', 1],
      ]),
    );
    expect(checkAppliedWrites(history, applied)).toEqual([
      'write b (append r1-k0, ok) was applied 2 times on n2',
    ]);
    const seenTwice = [
      op({ kind: 'append', value: '[a]', call: 0 }),
      op({ kind: 'append', value: '[b]', call: 10 }),
      op({ kind: 'get', call: 20, output: '[a][b][b]' }),
    ];
    const verdict = checkLinearizable(seenTwice);
    expect(verdict.verdict).toBe('illegal');
    expect(verdict.message).toContain('[a][b][b]');
    expect(
      checkReplicas(
        new Map([
          ['n1', audit()],
          [
            'n2',
            audit({
              duplicates: [{ writeId: 'b', count: 2 }],
              writeRows: 10,
              writeChecksum: 'ccc',
            }),
          ],
        ]),
      ),
    ).toEqual([
      'n2 applied write b 2 times',
      'applied_write differs at applied index 42: n1 has 9 rows (md5 bbb), n2 10 (md5 ccc)',
    ]);
  });

  it('a lost acknowledged write: missing on a node, and a later read that does not see it', () => {
    const history = cleanHistory();
    expect(checkAppliedWrites(history, appliedOnAll({ a: 1, c: 1 }))).toEqual([
      'acknowledged write b (append r1-k0, ok) is missing on n1',
      'acknowledged write b (append r1-k0, ok) is missing on n2',
      'acknowledged write b (append r1-k0, ok) is missing on n3',
    ]);
    const lost = [
      op({ kind: 'append', value: '[a]', call: 0 }),
      op({ kind: 'append', value: '[b]', call: 10 }),
      op({ kind: 'get', call: 20, output: '[a]' }),
    ];
    expect(checkLinearizable(lost).verdict).toBe('illegal');
  });

  it('a stale read: a read that returns after an acknowledged write yet misses it (a deposed leader answering alone)', () => {
    const stale = [
      op({ kind: 'put', value: 'new', call: 0 }),
      op({ kind: 'get', call: 10, output: '', via: 'n1' }),
    ];
    const verdict = checkLinearizable(stale);
    expect(verdict.verdict).toBe('illegal');
    expect(verdict.message).toContain('get("r1-k0") -> ""');
    // The same read overlapping the write is fine: it may come first.
    const concurrent = [
      op({ kind: 'put', value: 'new', call: 0 }),
      op({ kind: 'get', call: 2, output: '', via: 'n1' }),
    ];
    expect(checkLinearizable(concurrent).verdict).toBe('ok');
  });

  it('an unknown write may have been applied or not, but once at most and on every node alike', () => {
    const seen = [
      op({ kind: 'append', value: '[u]', call: 0, outcome: 'unknown', writeId: 'u' }),
      op({ kind: 'get', call: 100, output: '[u]' }),
    ];
    const unseen = [
      op({ kind: 'append', value: '[u]', call: 0, outcome: 'unknown', writeId: 'u' }),
      op({ kind: 'get', call: 100, output: '' }),
    ];
    expect(checkLinearizable(seen).verdict).toBe('ok');
    expect(checkLinearizable(unseen).verdict).toBe('ok');
    expect(checkAppliedWrites(seen, appliedOnAll({ u: 1 }))).toEqual([]);
    expect(checkAppliedWrites(seen, appliedOnAll({}))).toEqual([]);
    const split = appliedOnAll({ u: 1 });
    split.set('n3', new Map());
    expect(checkAppliedWrites(seen, split)).toEqual([
      'write u (append r1-k0, unknown) is applied on n1, n2 only',
    ]);
    // A failed read took no effect and is not checked.
    const failedRead = [
      ...unseen,
      op({ kind: 'get', call: 200, outcome: 'failed', output: 'junk' }),
    ];
    expect(checkLinearizable(failedRead)).toEqual({ verdict: 'ok', operations: 2 });
  });

  it('a phantom write (applied, never issued) and replicas that diverged at one applied index', () => {
    expect(checkAppliedWrites(cleanHistory(), appliedOnAll({ a: 1, b: 1, c: 1, zz: 1 }))).toEqual([
      'n1 applied write zz, which no client issued',
      'n2 applied write zz, which no client issued',
      'n3 applied write zz, which no client issued',
    ]);
    expect(
      checkReplicas(
        new Map([
          ['n1', audit()],
          ['n2', audit({ kvChecksum: 'zzz' })],
          ['n3', audit({ appliedIndex: 41, appliedIndexAfter: 42 })],
        ]),
      ),
    ).toEqual([
      'n3 applied entries during its audit (41 -> 42)',
      'kv differs at applied index 42: n1 has 3 rows (md5 aaa), n2 3 (md5 zzz)',
      'n3 is at applied index 41, n1 at 42',
    ]);
  });

  it('an outage with many writes of unknown outcome that nothing observed is decided, not left undecided (the search alone is exponential in them)', () => {
    // Sixteen appends that timed out during an outage, none ever seen: the checker on its own
    // runs past any reasonable time on these (8 of them already take seconds).
    const outage = [
      ...Array.from({ length: 16 }, (_, i) =>
        op({ kind: 'append', value: `[u${i}]`, call: i, outcome: 'unknown', writeId: `u${i}` }),
      ),
      op({ kind: 'append', value: '[a]', call: 50, writeId: 'a' }),
      op({ kind: 'get', call: 60, output: '[a]' }),
    ];
    expect(checkLinearizable(outage, { timeoutMs: 10_000 })).toEqual({
      verdict: 'ok',
      operations: 18,
    });
    // One of them seen by a read is kept, and placed before that read.
    const oneSeen = [...outage, op({ kind: 'get', call: 70, output: '[a][u3]' })];
    expect(checkLinearizable(oneSeen, { timeoutMs: 10_000 }).verdict).toBe('ok');
    // And a lost acknowledged write among them is still caught.
    const lost = [
      ...outage.slice(0, 3),
      op({ kind: 'append', value: '[b]', call: 80, writeId: 'b' }),
      op({ kind: 'get', call: 90, output: '[a]' }),
      op({ kind: 'get', call: 100, output: '' }),
    ];
    expect(checkLinearizable(lost, { timeoutMs: 10_000 }).verdict).toBe('illegal');
  });

  it('a failed compare-and-set that only an unobserved write of unknown outcome explains is fine', () => {
    const history = [
      op({ kind: 'put', value: 'x', call: 0, outcome: 'unknown', writeId: 'x' }),
      op({ kind: 'cas', expected: '', value: 'y', call: 10, output: false, writeId: 'y' }),
    ];
    expect(checkLinearizable(history)).toEqual({ verdict: 'ok', operations: 2 });
    // Without that write, the same failure is a violation.
    expect(checkLinearizable(history.slice(1)).verdict).toBe('illegal');
  });
});

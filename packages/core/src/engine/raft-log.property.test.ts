import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvariantViolationError } from '../errors.ts';
import { entrySize, type LogEntry, type LogPosition } from '../log-entry.ts';
import { RaftLog } from './raft-log.ts';

/**
 * Property tests of {@link RaftLog} against a plain array model: fast-check draws a sequence of
 * mutations (each only where the engine may make it) and queries, runs it on both, and compares
 * every observer after each step. A failure prints the shrunk sequence and the seed to replay.
 *
 * Operation arguments are positions drawn as naturals and resolved against the current log
 * (modulo its valid range), so that every drawn sequence is valid and shrinks towards small ones.
 */

type Op =
  | {
      readonly kind: 'append';
      readonly count: number;
      readonly termBump: number;
      readonly bytes: number;
    }
  | {
      readonly kind: 'truncate-and-append';
      readonly at: number;
      readonly count: number;
      readonly termBump: number;
      readonly bytes: number;
    }
  | { readonly kind: 'truncate-outside'; readonly at: number }
  | { readonly kind: 'compact'; readonly at: number }
  | { readonly kind: 'compact-not-handed-out'; readonly at: number }
  | { readonly kind: 'restore'; readonly at: number; readonly termBump: number }
  | { readonly kind: 'take-unstable' }
  | {
      readonly kind: 'slice';
      readonly from: number;
      readonly length: number;
      readonly maxBytes: number;
      readonly maxCount: number;
    }
  | {
      readonly kind: 'find-conflict';
      readonly at: number;
      readonly terms: readonly (number | null)[];
    }
  | { readonly kind: 'find-conflict-by-term'; readonly at: number; readonly term: number }
  | { readonly kind: 'is-up-to-date'; readonly indexDelta: number; readonly termDelta: number };

const count = fc.integer({ min: 1, max: 4 });
const termBump = fc.nat(2);
const bytes = fc.nat(40);

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.record({ kind: fc.constant('append'), count, termBump, bytes }), weight: 4 },
  {
    arbitrary: fc.record({
      kind: fc.constant('truncate-and-append'),
      at: fc.nat(),
      count,
      termBump,
      bytes,
    }),
    weight: 3,
  },
  fc.record({ kind: fc.constant('truncate-outside'), at: fc.nat() }),
  { arbitrary: fc.record({ kind: fc.constant('compact'), at: fc.nat() }), weight: 2 },
  fc.record({ kind: fc.constant('compact-not-handed-out'), at: fc.nat() }),
  fc.record({ kind: fc.constant('restore'), at: fc.nat(), termBump }),
  { arbitrary: fc.record({ kind: fc.constant('take-unstable') }), weight: 3 },
  {
    arbitrary: fc.record({
      kind: fc.constant('slice'),
      from: fc.nat(),
      length: fc.nat(8),
      maxBytes: fc.nat(200),
      maxCount: fc.oneof(fc.integer({ min: 1, max: 6 }), fc.constant(Number.POSITIVE_INFINITY)),
    }),
    weight: 2,
  },
  {
    arbitrary: fc.record({
      kind: fc.constant('find-conflict'),
      at: fc.nat(),
      terms: fc.array(fc.option(fc.nat(4)), { maxLength: 5 }),
    }),
    weight: 2,
  },
  fc.record({ kind: fc.constant('find-conflict-by-term'), at: fc.nat(), term: fc.nat(8) }),
  fc.record({
    kind: fc.constant('is-up-to-date'),
    indexDelta: fc.integer({ min: -2, max: 2 }),
    termDelta: fc.integer({ min: -1, max: 1 }),
  }),
);

/**
 * The reference: the entries after the snapshot, and what the log store holds after carrying out
 * every hand-out so far (entries compared by identity: every created entry is a new object).
 */
class LogModel {
  snapshot: LogPosition = { index: 0, term: 0 };
  entries: LogEntry[] = [];
  durable: LogEntry[] = [];
  #serial = 0;

  get lastIndex(): number {
    return this.snapshot.index + this.entries.length;
  }

  get lastTerm(): number {
    return this.entries.at(-1)?.term ?? this.snapshot.term;
  }

  term(index: number): number | undefined {
    if (index === this.snapshot.index) return this.snapshot.term;
    if (index <= this.snapshot.index || index > this.lastIndex) return undefined;
    return this.entries[index - this.snapshot.index - 1]?.term;
  }

  entry(index: number): LogEntry | undefined {
    if (index <= this.snapshot.index || index > this.lastIndex) return undefined;
    return this.entries[index - this.snapshot.index - 1];
  }

  /** Entries the store holds that are still the log's own: the handed-out prefix. */
  get handedOutCount(): number {
    let n = 0;
    while (
      n < this.entries.length &&
      n < this.durable.length &&
      this.entries[n] === this.durable[n]
    )
      n++;
    return n;
  }

  get handedOutIndex(): number {
    return this.snapshot.index + this.handedOutCount;
  }

  newEntries(first: number, n: number, term: number, size: number): LogEntry[] {
    const out: LogEntry[] = [];
    for (let i = 0; i < n; i++) {
      this.#serial++;
      out.push({
        index: first + i,
        term,
        type: 'command',
        data: new Uint8Array(size).fill(this.#serial % 256),
      });
    }
    return out;
  }
}

function expectSameObservers(log: RaftLog, model: LogModel, step: string): void {
  // One comparison per step (vitest's expect is slow in a loop): observers as plain values,
  // entries by identity.
  const observe = (
    snapshot: LogPosition,
    firstIndex: number,
    lastIndex: number,
    lastTerm: number,
    at: (index: number) => [number | undefined, LogEntry | undefined],
  ) => {
    const terms: string[] = [];
    for (let i = Math.max(0, model.snapshot.index - 2); i <= model.lastIndex + 2; i++) {
      const [term, entry] = at(i);
      terms.push(`${i}: term ${term}, entry ${entry === undefined ? '-' : serialOf(entry)}`);
    }
    return { snapshot, firstIndex, lastIndex, lastTerm, terms };
  };
  const unstable =
    model.handedOutCount < model.entries.length || model.handedOutCount < model.durable.length;
  expect(
    {
      ...observe(log.snapshot, log.firstIndex, log.lastIndex, log.lastTerm, (i) => [
        log.term(i),
        log.entry(i),
      ]),
      hasUnstable: log.hasUnstable,
    },
    step,
  ).toEqual({
    ...observe(model.snapshot, model.snapshot.index + 1, model.lastIndex, model.lastTerm, (i) => [
      model.term(i),
      model.entry(i),
    ]),
    hasUnstable: unstable,
  });
}

/** Entries are told apart by identity; give each object a stable number for the comparison. */
const serials = new WeakMap<LogEntry, number>();
let nextSerial = 0;
function serialOf(entry: LogEntry): string {
  let serial = serials.get(entry);
  if (serial === undefined) {
    serial = nextSerial++;
    serials.set(entry, serial);
  }
  return `#${serial}@${entry.index}/${entry.term}`;
}

function expectRejectedUnchanged(log: RaftLog, model: LogModel, step: string, act: () => void) {
  expect(act, step).toThrow(InvariantViolationError);
  expectSameObservers(log, model, `${step} (after the rejected call)`);
}

/** Slice per its contract: `from <= index < to`, at most `maxCount`, at least one, byte budget. */
function modelSlice(
  model: LogModel,
  from: number,
  to: number,
  maxBytes: number,
  maxCount: number,
): LogEntry[] | undefined {
  if (from <= model.snapshot.index) return undefined;
  const out: LogEntry[] = [];
  let total = 0;
  for (let index = from; index < to && index <= model.lastIndex; index++) {
    const entry = model.entry(index)!;
    if (out.length >= maxCount) break;
    if (out.length > 0 && total + entrySize(entry) > maxBytes) break;
    total += entrySize(entry);
    out.push(entry);
  }
  return out;
}

/** Largest index in [snapshot.index, min(index, lastIndex)] with term <= `term`; else the snapshot. */
function modelConflictByTerm(model: LogModel, index: number, term: number): LogPosition {
  const candidates: LogPosition[] = [];
  for (let i = model.snapshot.index; i <= Math.min(index, model.lastIndex); i++) {
    const t = model.term(i)!;
    if (t <= term) candidates.push({ index: i, term: t });
  }
  return candidates.at(-1) ?? model.snapshot;
}

function run(ops: readonly Op[]): void {
  const log = new RaftLog({ index: 0, term: 0 }, []);
  const model = new LogModel();
  ops.forEach((op, n) => {
    const step = `step ${n} ${JSON.stringify(op)}`;
    const span = model.lastIndex - model.snapshot.index;
    switch (op.kind) {
      case 'append': {
        const added = model.newEntries(
          model.lastIndex + 1,
          op.count,
          model.lastTerm + op.termBump,
          op.bytes,
        );
        log.append(added);
        model.entries.push(...added);
        break;
      }
      case 'truncate-and-append': {
        // Valid positions: after the snapshot, up to one past the last entry.
        const first = model.snapshot.index + 1 + (op.at % (span + 1));
        const term = (model.term(first - 1) ?? 0) + op.termBump;
        const added = model.newEntries(first, op.count, term, op.bytes);
        log.truncateAndAppend(added);
        model.entries = [...model.entries.slice(0, first - model.snapshot.index - 1), ...added];
        break;
      }
      case 'truncate-outside': {
        // At or below the snapshot, or leaving a gap after the last entry.
        const below = model.snapshot.index - (op.at % (model.snapshot.index + 1));
        const first = op.at % 2 === 0 && model.snapshot.index > 0 ? below : model.lastIndex + 2;
        const added = model.newEntries(first, 1, model.lastTerm, 0);
        expectRejectedUnchanged(log, model, step, () => log.truncateAndAppend(added));
        break;
      }
      case 'compact': {
        // Only what was handed out may be compacted (a snapshot covers only durable entries).
        const low = Math.max(0, model.snapshot.index - 2);
        const index = low + (op.at % (model.handedOutIndex - low + 1));
        log.compact(index);
        if (index > model.snapshot.index) {
          const drop = index - model.snapshot.index;
          const term = model.term(index)!;
          model.entries = model.entries.slice(drop);
          model.durable = model.durable.slice(drop);
          model.snapshot = { index, term };
        }
        break;
      }
      case 'compact-not-handed-out': {
        const low = model.handedOutIndex + 1;
        const index = low + (op.at % (model.lastIndex + 2 - low + 1));
        expectRejectedUnchanged(log, model, step, () => log.compact(index));
        break;
      }
      case 'restore': {
        // A follower installs a snapshot beyond its current snapshot (InstallSnapshot).
        const index = model.snapshot.index + 1 + (op.at % (span + 3));
        const snapshot = { index, term: model.lastTerm + op.termBump };
        log.restore(snapshot);
        model.snapshot = snapshot;
        model.entries = [];
        // The Ready that carries the snapshot replaces the store's log (LogWrite step 1).
        model.durable = [];
        break;
      }
      case 'take-unstable': {
        const kept = model.handedOutCount;
        const expected = {
          truncateFrom: model.durable.length > kept ? model.snapshot.index + 1 + kept : undefined,
          entries: model.entries.slice(kept),
        };
        const taken = log.takeUnstable();
        expect(taken.truncateFrom, `${step}: truncateFrom`).toBe(expected.truncateFrom);
        expect(taken.entries.length, `${step}: entries handed out`).toBe(expected.entries.length);
        taken.entries.forEach((e, i) => {
          expect(e, `${step}: handed-out entry ${i}`).toBe(expected.entries[i]);
        });
        // Carrying out the hand-out (LogWrite steps 2-3) makes the store hold the log.
        const cut =
          taken.truncateFrom === undefined
            ? model.durable
            : model.durable.slice(0, taken.truncateFrom - model.snapshot.index - 1);
        model.durable = [...cut, ...taken.entries];
        expect(model.durable.length, step).toBe(model.entries.length);
        break;
      }
      case 'slice': {
        const from = Math.max(0, model.snapshot.index - 1) + (op.from % (span + 4));
        const to = from + op.length;
        const got = log.slice(from, to, op.maxBytes, op.maxCount);
        const want = modelSlice(model, from, to, op.maxBytes, op.maxCount);
        const call = `${step}: slice(${from}, ${to}, ${op.maxBytes}, ${op.maxCount})`;
        if (want === undefined) {
          expect(got, call).toBeUndefined();
        } else {
          expect(got?.length, call).toBe(want.length);
          want.forEach((e, i) => {
            expect(got?.[i], call).toBe(e);
          });
        }
        break;
      }
      case 'find-conflict': {
        const first = model.snapshot.index + 1 + (op.at % (span + 2));
        const probe: LogEntry[] = op.terms.map((t, i) => ({
          index: first + i,
          term: t ?? model.term(first + i) ?? model.lastTerm,
          type: 'command',
          data: new Uint8Array(0),
        }));
        const want = probe.find((e) => model.term(e.index) !== e.term);
        expect(log.findConflict(probe), `${step}: findConflict`).toBe(want);
        break;
      }
      case 'find-conflict-by-term': {
        const index = model.snapshot.index + (op.at % (span + 3));
        expect(log.findConflictByTerm(index, op.term), `${step}: findConflictByTerm`).toEqual(
          modelConflictByTerm(model, index, op.term),
        );
        break;
      }
      case 'is-up-to-date': {
        // Raft paper 5.4.1: a later last term wins; with equal last terms, the longer log.
        const lastIndex = Math.max(0, model.lastIndex + op.indexDelta);
        const lastTerm = Math.max(0, model.lastTerm + op.termDelta);
        const want =
          lastTerm !== model.lastTerm ? lastTerm > model.lastTerm : lastIndex >= model.lastIndex;
        expect(log.isUpToDate(lastIndex, lastTerm), step).toBe(want);
        break;
      }
      default:
        op satisfies never;
    }
    expectSameObservers(log, model, step);
  });
}

describe('RaftLog against an array model', () => {
  it('agrees on every observer and hands out exactly what the store lacks, over random operation sequences', () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 80, size: 'max' }), (ops) => {
        run(ops);
      }),
      { numRuns: 500 },
    );
  });

  it('builds from durable entries, which count as handed out', () => {
    fc.assert(
      fc.property(
        fc.nat(5),
        fc.nat(3),
        fc.array(fc.nat(2), { maxLength: 8 }),
        (snapshotIndex, snapshotTerm, bumps) => {
          let term = snapshotTerm;
          const entries: LogEntry[] = bumps.map((bump, i) => {
            term += bump;
            return {
              index: snapshotIndex + 1 + i,
              term,
              type: 'command',
              data: new Uint8Array(0),
            };
          });
          const log = new RaftLog({ index: snapshotIndex, term: snapshotTerm }, entries);
          expect(log.lastIndex).toBe(snapshotIndex + entries.length);
          expect(log.lastTerm).toBe(entries.at(-1)?.term ?? snapshotTerm);
          expect(log.hasUnstable).toBe(false);
          expect(log.takeUnstable()).toEqual({ truncateFrom: undefined, entries: [] });
        },
      ),
    );
  });
});

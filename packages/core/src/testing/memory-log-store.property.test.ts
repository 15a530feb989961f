import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { HardState } from '../hard-state.ts';
import { entrySize, type LogEntry, type LogPosition } from '../log-entry.ts';
import type { LogWrite } from '../log-store.ts';
import { MemoryLogStore } from './memory-log-store.ts';

/**
 * {@link MemoryLogStore} against a model of the {@link LogWrite} contract, through random
 * sequences of valid writes, purges, reads and reopens; and writes that break the log's shape in
 * one way each, which must reject and leave the store as it was. fast-check shrinks a failure to
 * a short sequence and prints the seed that replays it.
 *
 * Positions are drawn as naturals and resolved against the model's current log (modulo the range
 * that makes them valid, or invalid for the rejected kinds), so every sequence can run.
 */

interface Model {
  hardState: HardState;
  snapshot: LogPosition;
  /** Entries after `snapshot`, contiguous. */
  entries: LogEntry[];
}

const lastIndex = (m: Model) => m.snapshot.index + m.entries.length;
const lastTerm = (m: Model) => m.entries.at(-1)?.term ?? m.snapshot.term;
/** Term at `index`, the snapshot's at its index, `undefined` outside the log. */
const termAt = (m: Model, index: number): number | undefined =>
  index === m.snapshot.index
    ? m.snapshot.term
    : m.entries.find((entry) => entry.index === index)?.term;

/** The {@link LogWrite} contract, step by step: the reference the store is compared with. */
function modelAfter(m: Model, write: LogWrite): Model {
  let snapshot = m.snapshot;
  let entries = m.entries;
  if (write.snapshot !== undefined) {
    const s = write.snapshot;
    entries = termAt(m, s.index) === s.term ? entries.filter((e) => e.index > s.index) : [];
    snapshot = { index: s.index, term: s.term };
  }
  const from = write.truncateFrom;
  if (from !== undefined) entries = entries.filter((e) => e.index < from);
  return {
    hardState: write.hardState ?? m.hardState,
    snapshot,
    entries: [...entries, ...(write.entries ?? [])],
  };
}

let serial = 0;
function makeEntries(first: number, terms: readonly number[], bytes: number): LogEntry[] {
  return terms.map((term, i) => {
    serial++;
    return {
      index: first + i,
      term,
      type: 'command',
      data: new Uint8Array(bytes).fill(serial % 256),
    };
  });
}

const NODES = ['n1', 'n2', 'n3'];

interface WriteParams {
  readonly snapshot: { readonly at: number; readonly keep: boolean } | undefined;
  readonly truncate: number | undefined;
  readonly termBumps: readonly number[];
  readonly bytes: number;
  readonly hard:
    | { readonly bump: number; readonly vote: number | null; readonly commit: number }
    | undefined;
}

const writeParams: fc.Arbitrary<WriteParams> = fc.record({
  snapshot: fc.option(fc.record({ at: fc.nat(), keep: fc.boolean() }), { nil: undefined }),
  truncate: fc.option(fc.nat(), { nil: undefined, freq: 3 }),
  termBumps: fc.array(fc.oneof(fc.constant(0), fc.constant(0), fc.constant(1)), { maxLength: 5 }),
  bytes: fc.nat(40),
  hard: fc.option(
    fc.record({
      bump: fc.nat(1),
      vote: fc.option(fc.nat(NODES.length - 1)),
      commit: fc.nat(20),
    }),
    { nil: undefined },
  ),
});

/** A write the store must accept: the log stays contiguous, terms never go back, one vote a term. */
function validWrite(m: Model, p: WriteParams): LogWrite {
  let after: Model = m;
  let snapshot: LogPosition | undefined;
  if (p.snapshot !== undefined) {
    const index = m.snapshot.index + (p.snapshot.at % (lastIndex(m) - m.snapshot.index + 3));
    const held = termAt(m, index);
    // Keeping the suffix needs the log's own term at `index`; any other term discards the log.
    const term = p.snapshot.keep && held !== undefined ? held : (held ?? lastTerm(m)) + 1;
    snapshot = { index, term };
    after = modelAfter(after, { snapshot });
  }
  let truncateFrom: number | undefined;
  if (p.truncate !== undefined) {
    // Anywhere after the snapshot, including past the end (a no-op).
    truncateFrom = after.snapshot.index + 1 + (p.truncate % (after.entries.length + 2));
    after = modelAfter(after, { truncateFrom });
  }
  let term = lastTerm(after);
  const terms = p.termBumps.map((bump) => {
    term += bump;
    return term;
  });
  const entries = makeEntries(lastIndex(after) + 1, terms, p.bytes);
  const current = m.hardState;
  const highest = Math.max(term, snapshot?.term ?? 0);
  let hardState: HardState | undefined;
  if (p.hard !== undefined || highest > current.term) {
    const newTerm = Math.max(current.term, highest) + (p.hard?.bump ?? 0);
    const vote = p.hard?.vote ?? null;
    hardState = {
      term: newTerm,
      votedFor:
        newTerm === current.term && current.votedFor !== null
          ? current.votedFor
          : vote === null
            ? null
            : (NODES[vote] ?? null),
      commitIndex: p.hard?.commit ?? 0,
    };
  }
  return {
    ...(snapshot === undefined ? {} : { snapshot }),
    ...(truncateFrom === undefined ? {} : { truncateFrom }),
    ...(entries.length === 0 ? {} : { entries }),
    ...(hardState === undefined ? {} : { hardState }),
  };
}

const INVALID_KINDS = [
  'gap',
  'overlap',
  'term-goes-back',
  'truncate-compacted',
  'snapshot-older',
  'hard-term-goes-back',
  'second-vote',
  'entry-term-above-hard-term',
] as const;
type InvalidKind = (typeof INVALID_KINDS)[number];

/**
 * A write that breaks the log's shape in the way `kind` names, or `undefined` when the model's
 * state makes that kind impossible (no vote cast yet, nothing compacted, term 0).
 */
function invalidWrite(m: Model, kind: InvalidKind, at: number): LogWrite | undefined {
  const next = lastIndex(m) + 1;
  const term = Math.max(lastTerm(m), m.hardState.term);
  const hardState = { ...m.hardState, term };
  switch (kind) {
    case 'gap':
      return { entries: makeEntries(next + 1 + (at % 3), [term], 4), hardState };
    case 'overlap':
      return { entries: makeEntries(next - 1 - (at % (next - 0)), [term], 4), hardState };
    case 'term-goes-back': {
      if (lastTerm(m) === 0) return undefined;
      return { entries: makeEntries(next, [lastTerm(m), lastTerm(m) - 1], 4), hardState };
    }
    case 'truncate-compacted': {
      // At or below the start; half the time the start is a snapshot in the same write that
      // keeps the rest of the log.
      if (at % 2 === 1 && m.entries.length > 0) {
        const index = m.snapshot.index + 1 + (at % m.entries.length);
        const snapshot = { index, term: termAt(m, index) ?? 0 };
        return { snapshot, truncateFrom: index - ((at >> 1) % 2) };
      }
      return { truncateFrom: m.snapshot.index - (at % (m.snapshot.index + 1)) };
    }
    case 'snapshot-older': {
      if (m.snapshot.index === 0) return undefined;
      const index = at % m.snapshot.index;
      return { snapshot: { index, term: termAt(m, index) ?? 0 } };
    }
    case 'hard-term-goes-back':
      if (m.hardState.term === 0) return undefined;
      return {
        hardState: { ...m.hardState, term: m.hardState.term - 1 - (at % m.hardState.term) },
      };
    case 'second-vote': {
      const voted = m.hardState.votedFor;
      if (voted === null) return undefined;
      const other = NODES.filter((id) => id !== voted)[at % (NODES.length - 1)] ?? null;
      return { hardState: { ...m.hardState, votedFor: at % 3 === 0 ? null : other } };
    }
    case 'entry-term-above-hard-term':
      // Without a hard state in the write, or with one of a lower term than the entries.
      return at % 2 === 0
        ? { entries: makeEntries(next, [term + 1], 4) }
        : { entries: makeEntries(next, [term + 1], 4), hardState };
    default:
      return kind satisfies never;
  }
}

type Op =
  | { readonly kind: 'persist'; readonly params: WriteParams }
  | { readonly kind: 'persist-failing'; readonly params: WriteParams }
  | { readonly kind: 'persist-invalid'; readonly invalid: InvalidKind; readonly at: number }
  | { readonly kind: 'purge'; readonly at: number; readonly wrongTerm: boolean }
  | { readonly kind: 'purge-invalid'; readonly at: number; readonly pastEnd: boolean }
  | {
      readonly kind: 'read';
      readonly from: number;
      readonly length: number;
      /**
       * A byte budget: a number, or the size of the first `entries` entries of the range plus
       * `slack` (a budget right at an entry boundary), or none.
       */
      readonly maxBytes: number | { readonly entries: number; readonly slack: number } | undefined;
    }
  | { readonly kind: 'reopen' };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.record({ kind: fc.constant('persist'), params: writeParams }), weight: 6 },
  fc.record({ kind: fc.constant('persist-failing'), params: writeParams }),
  {
    arbitrary: fc.record({
      kind: fc.constant('persist-invalid'),
      invalid: fc.constantFrom(...INVALID_KINDS),
      at: fc.nat(),
    }),
    weight: 3,
  },
  {
    arbitrary: fc.record({ kind: fc.constant('purge'), at: fc.nat(), wrongTerm: fc.boolean() }),
    weight: 2,
  },
  fc.record({ kind: fc.constant('purge-invalid'), at: fc.nat(), pastEnd: fc.boolean() }),
  {
    arbitrary: fc.record({
      kind: fc.constant('read'),
      from: fc.nat(),
      length: fc.integer({ min: -1, max: 8 }),
      maxBytes: fc.option(
        fc.oneof(
          fc.nat(150),
          fc.record({
            entries: fc.integer({ min: 1, max: 4 }),
            slack: fc.integer({ min: -1, max: 1 }),
          }),
        ),
        { nil: undefined },
      ),
    }),
    weight: 3,
  },
  fc.record({ kind: fc.constant('reopen') }),
);

/** What the store holds, read through its API; entries as the objects it returns. */
async function readAll(store: MemoryLogStore): Promise<Model> {
  const state = await store.load();
  const entries = await store.entries(state.snapshot.index + 1, state.lastIndex + 1);
  return { hardState: state.hardState, snapshot: state.snapshot, entries };
}

async function expectMatches(store: MemoryLogStore, m: Model, step: string): Promise<void> {
  const state = await store.load();
  expect(state, step).toEqual({
    hardState: m.hardState,
    snapshot: m.snapshot,
    lastIndex: lastIndex(m),
  });
  const held = await store.entries(m.snapshot.index + 1, lastIndex(m) + 1);
  // The store keeps entries by reference and never alters them.
  expect(held.length, step).toBe(m.entries.length);
  held.forEach((entry, i) => {
    if (entry !== m.entries[i]) expect(entry, `${step}: entry ${i}`).toBe(m.entries[i]);
  });
}

async function expectRejectedUnchanged(
  store: MemoryLogStore,
  m: Model,
  step: string,
  act: () => Promise<unknown>,
  isExpected: (error: unknown) => boolean = (error) => error instanceof RangeError,
): Promise<void> {
  await expect(act(), step).rejects.toSatisfy(isExpected);
  await expectMatches(store, m, `${step} (after the rejected call)`);
}

function describeWrite(write: LogWrite): string {
  return JSON.stringify({
    ...write,
    entries: write.entries?.map((e) => `${e.index}/${e.term}`),
  });
}

async function run(ops: readonly Op[]): Promise<void> {
  let store = new MemoryLogStore();
  let m: Model = await readAll(store);
  for (const [n, op] of ops.entries()) {
    const step = `step ${n} ${JSON.stringify(op)}`;
    switch (op.kind) {
      case 'persist': {
        const write = validWrite(m, op.params);
        await store.persist(write);
        m = modelAfter(m, write);
        await expectMatches(store, m, `${step}: persist(${describeWrite(write)})`);
        break;
      }
      case 'persist-failing': {
        const write = validWrite(m, op.params);
        const injected = new Error('disk full');
        store.failNextPersist(injected);
        await expectRejectedUnchanged(
          store,
          m,
          `${step}: persist(${describeWrite(write)})`,
          () => store.persist(write),
          (error) => error === injected,
        );
        break;
      }
      case 'persist-invalid': {
        const write = invalidWrite(m, op.invalid, op.at);
        if (write === undefined) break;
        await expectRejectedUnchanged(store, m, `${step}: persist(${describeWrite(write)})`, () =>
          store.persist(write),
        );
        break;
      }
      case 'purge': {
        // Anywhere up to the last entry with its term; at or below the start, any term (a no-op).
        const low = Math.max(0, m.snapshot.index - 2);
        const index = low + (op.at % (lastIndex(m) - low + 1));
        const held = termAt(m, index);
        const term =
          index > m.snapshot.index || held === undefined || !op.wrongTerm ? (held ?? 0) : held + 1;
        await store.purge({ index, term });
        if (index > m.snapshot.index) {
          m = {
            ...m,
            snapshot: { index, term },
            entries: m.entries.filter((e) => e.index > index),
          };
        }
        await expectMatches(store, m, `${step}: purge(${index}/${term})`);
        break;
      }
      case 'purge-invalid': {
        const span = m.entries.length;
        let upTo: LogPosition;
        if (op.pastEnd || span === 0) {
          upTo = { index: lastIndex(m) + 1 + (op.at % 3), term: lastTerm(m) };
        } else {
          const index = m.snapshot.index + 1 + (op.at % span);
          upTo = { index, term: (termAt(m, index) ?? 0) + 1 };
        }
        await expectRejectedUnchanged(store, m, `${step}: purge(${upTo.index}/${upTo.term})`, () =>
          store.purge(upTo),
        );
        break;
      }
      case 'read': {
        const first = m.snapshot.index + 1;
        const from = Math.max(0, first - 1) + (op.from % (m.entries.length + 3));
        const to = from + op.length;
        const budget = op.maxBytes;
        const maxBytes =
          typeof budget === 'object'
            ? m.entries
                .filter((e) => e.index >= from && e.index < from + budget.entries)
                .reduce((sum, e) => sum + entrySize(e), budget.slack)
            : budget;
        const call = `${step}: entries(${from}, ${to}, { maxBytes: ${maxBytes} })`;
        const options = maxBytes === undefined ? {} : { maxBytes };
        if (from > to || from < first || to > lastIndex(m) + 1) {
          await expect(store.entries(from, to, options), call).rejects.toThrow(RangeError);
          break;
        }
        // At least one entry, then as many as fit in the byte budget.
        const want: LogEntry[] = [];
        let bytes = 0;
        for (const e of m.entries.filter((e) => e.index >= from && e.index < to)) {
          bytes += entrySize(e);
          if (want.length > 0 && maxBytes !== undefined && bytes > maxBytes) break;
          want.push(e);
        }
        const got = await store.entries(from, to, options);
        expect(
          got.map((e) => e.index),
          call,
        ).toEqual(want.map((e) => e.index));
        got.forEach((e, i) => {
          if (e !== want[i]) expect(e, call).toBe(want[i]);
        });
        break;
      }
      case 'reopen':
        store = new MemoryLogStore({ durable: store.durable });
        await expectMatches(store, m, `${step}: reopen`);
        break;
      default:
        op satisfies never;
    }
  }
}

describe('MemoryLogStore against a model of the LogWrite contract', () => {
  it('holds what the model holds after random valid writes, purges and reopens, and rejects invalid ones unchanged', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { maxLength: 40, size: 'max' }), async (ops) => {
        await run(ops);
      }),
      { numRuns: 300 },
    );
  });
});

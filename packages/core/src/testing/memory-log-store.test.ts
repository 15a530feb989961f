import { describe, expect, it } from 'vitest';
import type { LogEntry } from '../log-entry.ts';
import type { LogStore } from '../log-store.ts';
import { MemoryLogStore, type MemoryLogStoreOptions } from './memory-log-store.ts';
import { describeLogStoreConformance, type LogStoreFixture } from './storage-conformance.ts';

/**
 * A process holding a store over a memory store's durable state, for the suite's crashes. A
 * persist or a purge is one step: the memory store applies a write in one synchronous step.
 */
class MemoryProcess {
  #stepsLeft: number | undefined;
  #crashed = false;

  crashAfter(steps: number): void {
    this.#stepsLeft = steps;
    if (steps === 0) this.#crashed = true;
  }

  open(inner: MemoryLogStore): LogStore {
    return {
      load: (options) => this.#alive(() => inner.load(options)),
      entries: (from, to, options) => this.#alive(() => inner.entries(from, to, options)),
      persist: (write, options) => this.#step(() => inner.persist(write, options)),
      purge: (upTo, options) => this.#step(() => inner.purge(upTo, options)),
    };
  }

  async #alive<T>(call: () => Promise<T>): Promise<T> {
    if (this.#crashed) throw new Error('the process crashed');
    return call();
  }

  async #step(write: () => Promise<void>): Promise<void> {
    await this.#alive(write);
    if (this.#stepsLeft !== undefined && --this.#stepsLeft === 0) {
      this.#crashed = true;
      throw new Error('the process crashed after the write took effect');
    }
  }
}

function memoryFixture(options: MemoryLogStoreOptions = {}): () => Promise<LogStoreFixture> {
  return async () => {
    const first = new MemoryLogStore(options);
    let process = new MemoryProcess();
    return {
      store: process.open(first),
      reopen: async () => {
        process = new MemoryProcess();
        return process.open(new MemoryLogStore({ ...options, durable: first.durable }));
      },
      crashAfter: (steps) => process.crashAfter(steps),
      [Symbol.asyncDispose]: async () => {},
    };
  };
}

describeLogStoreConformance('MemoryLogStore', memoryFixture());
describeLogStoreConformance(
  'MemoryLogStore with 3 ms persist latency',
  memoryFixture({ persistLatencyMs: 3 }),
  {
    modelRuns: 3,
  },
);

const entry = (index: number, term: number): LogEntry => ({
  index,
  term,
  type: 'command',
  data: new Uint8Array([index]),
});
const hard = (term: number, votedFor: string | null = null) => ({ term, votedFor, commitIndex: 0 });

/** A store holding entries 1..5 of term 1 after a snapshot-free start, in term 2. */
async function storeWithLog(): Promise<MemoryLogStore> {
  const store = new MemoryLogStore();
  await store.persist({
    entries: [1, 2, 3, 4, 5].map((i) => entry(i, 1)),
    hardState: hard(2, 'a'),
  });
  await store.purge({ index: 1, term: 1 });
  return store;
}

describe('MemoryLogStore', () => {
  it('keeps the entries it is given, without copying them', async () => {
    const store = new MemoryLogStore();
    const written = [entry(1, 1), entry(2, 1)];
    await store.persist({ entries: written, hardState: hard(1) });
    const read = await store.entries(1, 3);
    expect(read[0]).toBe(written[0]);
    expect(read[1]).toBe(written[1]);
    expect(read).not.toBe(store.durable.entries);
  });

  it.each([
    ['entries that do not follow the log', { entries: [entry(7, 2)] }, /expected index 6, got 7/],
    ['entries with a gap', { entries: [entry(6, 2), entry(8, 2)] }, /expected index 7, got 8/],
    ['entries whose term goes back', { entries: [entry(6, 0)] }, /term 0, below the term 1/],
    ['a truncation of compacted entries', { truncateFrom: 1 }, /entries up to 1 are compacted/],
    ['a snapshot older than the log', { snapshot: { index: 0, term: 0 } }, /older than the log/],
    ['a hard state whose term goes back', { hardState: hard(1) }, /cannot go back from 2 to 1/],
    ['a second vote in one term', { hardState: hard(2, 'b') }, /already voted for a in term 2/],
    [
      'an entry term above the current term',
      { entries: [entry(6, 3)] },
      /above the current term 2/,
    ],
  ])('rejects %s and changes nothing', async (_, write, message) => {
    const store = await storeWithLog();
    const before = structuredClone(store.durable);
    await expect(store.persist(write)).rejects.toThrow(message);
    expect(store.durable).toEqual(before);
  });

  it('accepts a vote in a new term, and the same vote again', async () => {
    const store = await storeWithLog();
    await store.persist({ hardState: hard(2, 'a') });
    await store.persist({ hardState: hard(3, 'b') });
    expect((await store.load()).hardState).toEqual(hard(3, 'b'));
  });

  it('rejects a purge past the log or at a position the log disagrees with', async () => {
    const store = await storeWithLog();
    await expect(store.purge({ index: 6, term: 1 })).rejects.toThrow(/the log ends at 5/);
    await expect(store.purge({ index: 3, term: 2 })).rejects.toThrow(/has term 1/);
    expect((await store.load()).snapshot).toEqual({ index: 1, term: 1 });
  });

  it('rejects an inverted or fractional range with a RangeError', async () => {
    const store = await storeWithLog();
    await expect(store.entries(4, 3)).rejects.toThrow(RangeError);
    await expect(store.entries(2.5, 4)).rejects.toThrow(RangeError);
  });

  it('fails the next persist on demand, once, leaving the state unchanged', async () => {
    const store = await storeWithLog();
    const before = structuredClone(store.durable);
    const failure = new Error('disk full');
    store.failNextPersist(failure);
    await expect(store.persist({ entries: [entry(6, 2)] })).rejects.toBe(failure);
    expect(store.durable).toEqual(before);
    await store.persist({ entries: [entry(6, 2)] });
    expect((await store.load()).lastIndex).toBe(6);
  });

  it('waits persistLatencyMs before a write takes effect, and an abort meanwhile cancels it', async () => {
    const store = new MemoryLogStore({ persistLatencyMs: 20 });
    const started = performance.now();
    await store.persist({ entries: [entry(1, 1)], hardState: hard(1) });
    expect(performance.now() - started).toBeGreaterThanOrEqual(15);
    const controller = new AbortController();
    const pending = store.persist({ entries: [entry(2, 1)] }, { signal: controller.signal });
    expect((await store.load()).lastIndex).toBe(1);
    const reason = new Error('deadline');
    controller.abort(reason);
    await expect(pending).rejects.toBe(reason);
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect((await store.load()).lastIndex).toBe(1);
  });

  // That an append costs the same however long the log is measured by
  // `pnpm --filter @tsraft/core bench:memory-log-store`, not timed here.
  it('appends one entry at a time to a long log, in order', async () => {
    const store = new MemoryLogStore();
    await store.persist({ hardState: hard(1) });
    for (let index = 1; index <= 50_000; index++)
      await store.persist({ entries: [entry(index, 1)] });
    expect((await store.load()).lastIndex).toBe(50_000);
    expect((await store.entries(49_999, 50_001)).map((e) => e.index)).toEqual([49_999, 50_000]);
  });
});

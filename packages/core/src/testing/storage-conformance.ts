import { describe, expect, it, type TestContext } from 'vitest';
import type { ClusterConfig } from '../configuration.ts';
import { CorruptSnapshotError } from '../errors.ts';
import { type HardState, INITIAL_HARD_STATE } from '../hard-state.ts';
import { type EntryType, entrySize, type LogEntry, type LogPosition } from '../log-entry.ts';
import type { LogStore, LogStoreState, LogWrite } from '../log-store.ts';
import type { SnapshotMeta } from '../message.ts';
import type { NodeIdentity } from '../node-identity.ts';
import type { SnapshotStore, StoredSnapshot } from '../snapshot-store.ts';
import { collectChunks, concatBytes, streamOf } from './byte-streams.ts';

/** A fresh, empty log store under test; disposing it removes every trace of it. */
export interface LogStoreFixture extends AsyncDisposable {
  readonly store: LogStore;
  /**
   * A new store instance over the same durable state, as after a process restart: it runs in a
   * new process (see `crashAfter`), while the stores opened before keep working.
   */
  reopen(): Promise<LogStore>;
  /**
   * Arms a crash of the process of the store opened last (`store`, or the last `reopen`'s): it
   * dies right after `steps` more of its steps have taken effect in the durable medium. A step is one
   * thing the medium does in one go: for a database, one statement, `BEGIN` and `COMMIT`
   * included. The call that issued the last step rejects, as if the process died before the
   * answer came back; every later call rejects without reaching the medium, which ends the work
   * left unfinished as it does for a client that died (Postgres rolls an open transaction back).
   * `steps` 0 crashes at once. `reopen` afterwards opens a live store on what survived.
   *
   * When given, the suite crashes writes after each of their steps and checks that each one took
   * effect whole or not at all (the contract's crash atomicity); a store that is atomic only
   * against aborts fails it.
   */
  crashAfter?(steps: number): void;
}

/** A fresh, empty snapshot store under test; disposing it removes every trace of it. */
export interface SnapshotStoreFixture extends AsyncDisposable {
  readonly store: SnapshotStore;
  /** A new store instance over the same durable state, as after a process restart. */
  reopen(): Promise<SnapshotStore>;
  /**
   * Damages the stored bytes of `snapshot` (flips bits, keeps the recorded checksum). When given,
   * the suite checks that reading the snapshot rejects.
   */
  corrupt?(snapshot: StoredSnapshot): Promise<void>;
}

/** Options of {@link describeLogStoreConformance}. */
export interface LogStoreConformanceOptions {
  /** Seed of the randomized model test; a failure prints the seed to pass here. Default: random. */
  readonly seed?: number;
  /** Runs of the randomized model test, each on a fresh store. Default 20. */
  readonly modelRuns?: number;
}

/**
 * Declares vitest tests that check a {@link LogStore} against every rule of its contract. Call it
 * at the top level of a test file; `factory` makes a fresh, empty store for each test.
 */
export function describeLogStoreConformance(
  name: string,
  factory: () => Promise<LogStoreFixture>,
  options: LogStoreConformanceOptions = {},
): void {
  describe(`LogStore conformance: ${name}`, () => {
    it('loads the initial state from an empty store', async () => {
      await using fixture = await factory();
      const { store } = fixture;
      const state = await store.load();
      expect(state.hardState).toEqual(INITIAL_HARD_STATE);
      expect(state.snapshot).toEqual({ index: 0, term: 0 });
      expect(state.lastIndex).toBe(0);
      expect(await store.entries(1, 1)).toEqual([]);
      await expect(store.entries(1, 2)).rejects.toThrow(RangeError);
      await expect(store.entries(0, 1)).rejects.toThrow(RangeError);
    });

    it('reads back appended entries, in order, for any range inside the log', async () => {
      await using fixture = await factory();
      const { store } = fixture;
      const written = [entry(1, 1), entry(2, 1), entry(3, 1), entry(4, 2), entry(5, 2)];
      await store.persist({ entries: written.slice(0, 2), hardState: hard(1) });
      await store.persist({ entries: written.slice(2), hardState: hard(2, 'n1') });
      expect(await store.load()).toEqual({
        hardState: hard(2, 'n1'),
        snapshot: { index: 0, term: 0 },
        lastIndex: 5,
      });
      expectEntries(await store.entries(1, 6), written);
      expectEntries(await store.entries(2, 4), written.slice(1, 3));
      expectEntries(await store.entries(5, 6), written.slice(4));
      expect(await store.entries(3, 3)).toEqual([]);
      // An up-to-date follower: nothing after the last entry, which is not an error.
      expect(await store.entries(6, 6)).toEqual([]);
    });

    it('rejects with a RangeError a range that reaches outside the log', async () => {
      await using fixture = await factory();
      const { store } = fixture;
      await store.persist({ entries: entries(1, 10, 1), hardState: hard(1) });
      await store.purge({ index: 3, term: 1 });
      await expect(store.entries(3, 5)).rejects.toThrow(RangeError);
      await expect(store.entries(1, 5)).rejects.toThrow(RangeError);
      await expect(store.entries(8, 12)).rejects.toThrow(RangeError);
      await expect(store.entries(11, 12)).rejects.toThrow(RangeError);
      expectEntries(await store.entries(4, 11), entries(4, 10, 1));
    });

    it('stops after maxBytes of entrySize, but always returns at least one entry', async () => {
      await using fixture = await factory();
      const { store } = fixture;
      const written = [10, 20, 30, 40].map((size, i) => entry(i + 1, 1, bytes(size, i)));
      await store.persist({ entries: written, hardState: hard(1) });
      const [first, second, third] = written.map(entrySize) as [number, number, number];
      expectEntries(await store.entries(1, 5, { maxBytes: 0 }), written.slice(0, 1));
      expectEntries(await store.entries(1, 5, { maxBytes: first - 1 }), written.slice(0, 1));
      expectEntries(await store.entries(1, 5, { maxBytes: first }), written.slice(0, 1));
      expectEntries(await store.entries(1, 5, { maxBytes: first + second }), written.slice(0, 2));
      expectEntries(
        await store.entries(1, 5, { maxBytes: first + second + third - 1 }),
        written.slice(0, 2),
      );
      expectEntries(await store.entries(2, 4, { maxBytes: 1e9 }), written.slice(1, 3));
      expectEntries(await store.entries(4, 5, { maxBytes: 1 }), written.slice(3));
    });

    it('truncates a conflicting suffix, appends and saves the hard state in one write', async () => {
      await using fixture = await factory();
      const { store } = fixture;
      await store.persist({ entries: entries(1, 5, 1), hardState: hard(1, 'n1', 2) });
      // A new leader's entries replace the follower's uncommitted suffix (Raft paper 5.3).
      const replacement = [entry(3, 2, bytes(3, 7)), entry(4, 2, bytes(0, 0))];
      await store.persist({ truncateFrom: 3, entries: replacement, hardState: hard(2, 'n2', 3) });
      expect(await store.load()).toEqual({
        hardState: hard(2, 'n2', 3),
        snapshot: { index: 0, term: 0 },
        lastIndex: 4,
      });
      expectEntries(await store.entries(1, 5), [...entries(1, 2, 1), ...replacement]);
      // A truncation alone, and one that empties the log.
      await store.persist({ truncateFrom: 4 });
      expect((await store.load()).lastIndex).toBe(3);
      await store.persist({ truncateFrom: 1, hardState: hard(3) });
      expect(await store.load()).toEqual({
        hardState: hard(3),
        snapshot: { index: 0, term: 0 },
        lastIndex: 0,
      });
      await store.persist({ entries: [entry(1, 3)] });
      expectEntries(await store.entries(1, 2), [entry(1, 3)]);
    });

    it('keeps the entries after a snapshot whose term matches the log (Raft paper 7, step 6)', async () => {
      await using fixture = await factory();
      const { store } = fixture;
      const log = [...entries(1, 5, 1), ...entries(6, 10, 2)];
      await store.persist({ entries: log, hardState: hard(2) });
      await store.persist({ snapshot: { index: 7, term: 2 } });
      expect(await store.load()).toEqual({
        hardState: hard(2),
        snapshot: { index: 7, term: 2 },
        lastIndex: 10,
      });
      expectEntries(await store.entries(8, 11), log.slice(7));
      await expect(store.entries(7, 8)).rejects.toThrow(RangeError);
      // A snapshot at the last entry, then entries after it, in one write.
      await store.persist({ snapshot: { index: 10, term: 2 }, entries: [entry(11, 2)] });
      expect((await store.load()).snapshot).toEqual({ index: 10, term: 2 });
      expectEntries(await store.entries(11, 12), [entry(11, 2)]);
    });

    it('discards the whole log for a snapshot it does not agree with (Raft paper 7, step 7)', async () => {
      await using fixture = await factory();
      const { store } = fixture;
      await store.persist({
        entries: [...entries(1, 5, 1), ...entries(6, 10, 2)],
        hardState: hard(2),
      });
      // The entry at 8 has term 2, the snapshot says 3: everything goes.
      await store.persist({ snapshot: { index: 8, term: 3 }, hardState: hard(3) });
      expect(await store.load()).toEqual({
        hardState: hard(3),
        snapshot: { index: 8, term: 3 },
        lastIndex: 8,
      });
      await expect(store.entries(9, 10)).rejects.toThrow(RangeError);
      expect(await store.entries(9, 9)).toEqual([]);
      // A snapshot beyond the end of the log, with the leader's next entries and a truncation
      // that no longer reaches anything, all in one write.
      await store.persist({
        snapshot: { index: 20, term: 4 },
        truncateFrom: 21,
        entries: [entry(21, 4), entry(22, 4)],
        hardState: hard(4, 'n3', 22),
      });
      expect(await store.load()).toEqual({
        hardState: hard(4, 'n3', 22),
        snapshot: { index: 20, term: 4 },
        lastIndex: 22,
      });
      expectEntries(await store.entries(21, 23), [entry(21, 4), entry(22, 4)]);
    });

    it('purges entries up to a snapshot and never beyond it (log compaction, Raft paper 7)', async () => {
      await using fixture = await factory();
      const { store } = fixture;
      await store.persist({
        entries: [...entries(1, 4, 1), ...entries(5, 10, 2)],
        hardState: hard(2),
      });
      await store.purge({ index: 6, term: 2 });
      expect(await store.load()).toEqual({
        hardState: hard(2),
        snapshot: { index: 6, term: 2 },
        lastIndex: 10,
      });
      expectEntries(await store.entries(7, 11), entries(7, 10, 2));
      await expect(store.entries(6, 7)).rejects.toThrow(RangeError);
      // At or below the current start: nothing happens.
      await store.purge({ index: 6, term: 2 });
      await store.purge({ index: 2, term: 1 });
      expect((await store.load()).snapshot).toEqual({ index: 6, term: 2 });
      expectEntries(await store.entries(7, 11), entries(7, 10, 2));
      // Appends continue after a purge, and the purge is durable.
      await store.persist({ entries: [entry(11, 2)] });
      const reopened = await fixture.reopen();
      expect(await reopened.load()).toEqual({
        hardState: hard(2),
        snapshot: { index: 6, term: 2 },
        lastIndex: 11,
      });
      expectEntries(await reopened.entries(7, 12), [...entries(7, 10, 2), entry(11, 2)]);
    });

    it('keeps everything across a reopen, byte for byte', async () => {
      await using fixture = await factory();
      const { store } = fixture;
      const big = bytes(1 << 20, 3);
      const view = new Uint8Array(bytes(64, 9).buffer, 16, 32); // data at an offset in its buffer
      const written = [
        entry(1, 1, new Uint8Array(0), 'noop'),
        entry(2, 1, allByteValues(), 'command'),
        entry(3, 1, new TextEncoder().encode('{"voters":["a","b","c"]}'), 'config'),
        entry(4, 1, big),
        entry(5, 1, view),
        entry(6, 1, new Uint8Array([0, 0, 0])),
      ];
      await store.persist({ entries: written, hardState: hard(1, 'node-é', 4) });
      for (const reader of [store, await fixture.reopen()]) {
        expect(await reader.load()).toEqual({
          hardState: hard(1, 'node-é', 4),
          snapshot: { index: 0, term: 0 },
          lastIndex: 6,
        });
        expectEntries(await reader.entries(1, 7), written);
      }
      // A later hard state replaces the whole saved one.
      await store.persist({ hardState: hard(2, null, 5) });
      expect((await (await fixture.reopen()).load()).hardState).toEqual(hard(2, null, 5));
    });

    it('keeps the node identity, persisted alone or with entries and the hard state, across a reopen', async () => {
      await using fixture = await factory();
      const { store } = fixture;
      expect((await store.load()).identity).toBeUndefined();
      await store.persist({ identity: IDENTITY });
      expect((await store.load()).identity).toEqual(IDENTITY);
      // A write without an identity keeps the saved one.
      await store.persist({ entries: entries(1, 3, 1), hardState: hard(1, 'n1', 2) });
      expect((await store.load()).identity).toEqual(IDENTITY);
      await store.persist({
        entries: entries(4, 5, 2),
        hardState: hard(2, 'n2', 4),
        identity: LEARNED_IDENTITY,
      });
      const reopened = await fixture.reopen();
      expect(await reopened.load()).toEqual({
        hardState: hard(2, 'n2', 4),
        snapshot: { index: 0, term: 0 },
        lastIndex: 5,
        identity: LEARNED_IDENTITY,
      });
      // A purge and a snapshot leave it as it is.
      await reopened.persist({ snapshot: { index: 4, term: 2 } });
      await reopened.purge({ index: 4, term: 2 });
      expect((await reopened.load()).identity).toEqual(LEARNED_IDENTITY);
    });

    it('rejects a malformed node identity with a TypeError, changing nothing', async () => {
      await using fixture = await factory();
      const { store } = fixture;
      await store.persist({ entries: entries(1, 2, 1), hardState: hard(1), identity: IDENTITY });
      const before = await readLog(store);
      const malformed = [
        { clusterId: null, incarnation: '', members: {} },
        { clusterId: 7, incarnation: 'x', members: {} },
        { clusterId: null, incarnation: 'x', members: { n2: 3 } },
      ] as unknown as NodeIdentity[];
      for (const identity of malformed) {
        await expect(
          store.persist({ entries: [entry(3, 1)], hardState: hard(1, null, 3), identity }),
        ).rejects.toThrow(TypeError);
      }
      expect(await readLog(store)).toEqual(before);
    });

    it('handles indexes up to 2^53 - 2 (the end of a range stays a safe integer) and terms above 2^32', async () => {
      for (const start of [2 ** 31, 2 ** 40, Number.MAX_SAFE_INTEGER - 4]) {
        await using fixture = await factory();
        const { store } = fixture;
        const term = 2 ** 33;
        const written = [entry(start + 1, term), entry(start + 2, term), entry(start + 3, term)];
        await store.persist({
          snapshot: { index: start, term },
          entries: written,
          hardState: hard(term),
        });
        const reopened = await fixture.reopen();
        expect(await reopened.load()).toEqual({
          hardState: hard(term),
          snapshot: { index: start, term },
          lastIndex: start + 3,
        });
        expectEntries(await reopened.entries(start + 2, start + 4), written.slice(1));
        await reopened.purge({ index: start + 1, term });
        await reopened.persist({ truncateFrom: start + 3 });
        expectEntries(await reopened.entries(start + 2, start + 3), written.slice(1, 2));
      }
    });

    it('rejects a persist whose signal is already aborted, and changes nothing', async () => {
      await using fixture = await factory();
      const { store } = fixture;
      await store.persist({ entries: entries(1, 3, 1), hardState: hard(1) });
      const before = await readLog(store);
      const controller = new AbortController();
      controller.abort(new Error('deadline passed'));
      await expect(
        store.persist(
          { truncateFrom: 2, entries: entries(2, 5, 2), hardState: hard(2, 'n2') },
          { signal: controller.signal },
        ),
      ).rejects.toThrow();
      expect(await readLog(store)).toEqual(before);
      expect(await readLog(await fixture.reopen())).toEqual(before);
    });

    it('applies a persist aborted midway either whole or not at all', async () => {
      const abortPoints: [string, () => Promise<void>][] = [
        ['after a microtask', () => Promise.resolve()],
        ['after a macrotask', () => new Promise((resolve) => setTimeout(resolve, 0))],
        ['after 2 ms', () => new Promise((resolve) => setTimeout(resolve, 2))],
        ['after 10 ms', () => new Promise((resolve) => setTimeout(resolve, 10))],
      ];
      for (const [when, wait] of abortPoints) {
        await using fixture = await factory();
        const { store } = fixture;
        await store.persist({ entries: entries(1, 20, 1), hardState: hard(1, 'n1', 3) });
        const before = await readLog(store);
        const write: LogWrite = {
          snapshot: { index: 5, term: 1 },
          truncateFrom: 10,
          entries: entries(10, 30, 2),
          hardState: hard(2, 'n2', 9),
        };
        const controller = new AbortController();
        const outcome = store.persist(write, { signal: controller.signal }).then(
          () => 'resolved' as const,
          () => 'rejected' as const,
        );
        await wait();
        controller.abort(new Error('deadline passed'));
        const settled = await outcome;
        const after = await readLog(await fixture.reopen());
        const expected = settled === 'resolved' ? modelAfter(before, write) : before;
        expect(after, `aborted ${when}, the persist ${settled}`).toEqual(expected);
      }
    });

    it('serves reads during a persist with the state before or after it', async () => {
      await using fixture = await factory();
      const { store } = fixture;
      await store.persist({ entries: entries(1, 10, 1), hardState: hard(1) });
      const before = await readLog(store);
      const write: LogWrite = { truncateFrom: 4, entries: entries(4, 12, 2), hardState: hard(2) };
      const after = modelAfter(before, write);
      const reads: Promise<ReadLog>[] = [];
      const persisting = store.persist(write);
      for (let i = 0; i < 5; i++) {
        reads.push(readLog(store));
        await Promise.resolve();
      }
      reads.push(new Promise((resolve) => setTimeout(resolve, 0)).then(() => readLog(store)));
      const [results] = await Promise.all([Promise.all(reads), persisting]);
      for (const read of results) {
        expect([before, after]).toContainEqual(read);
      }
      expect(await readLog(store)).toEqual(after);
    });

    for (const [what, setup, write] of CRASHED_WRITES) {
      it(`takes ${what} whole or not at all when the store crashes after any step`, async (context) => {
        await crashAtEveryStep(
          context,
          factory,
          setup,
          (store) => store.persist(write),
          (before) => modelAfter(before, write),
        );
      });
    }

    it('takes a purge whole or not at all when the store crashes after any step', async (context) => {
      const upTo = { index: 12, term: 2 };
      await crashAtEveryStep(
        context,
        factory,
        [{ entries: [...entries(1, 10, 1), ...entries(11, 20, 2)], hardState: hard(2, 'n1', 15) }],
        (store) => store.purge(upTo),
        (before) => modelPurged(before, upTo),
      );
    });

    it('matches a simple model over random sequences of writes, purges and reopens', async () => {
      const seed = options.seed ?? Math.floor(Math.random() * 2 ** 31);
      const random = seededRandom(seed);
      for (let run = 0; run < (options.modelRuns ?? 20); run++) {
        await using fixture = await factory();
        let store = fixture.store;
        let model: ReadLog = { state: await store.load(), entries: [] };
        for (let step = 0; step < 30; step++) {
          const context = `seed ${seed} (replay: pass { seed: ${seed} }), run ${run}, step ${step}`;
          const action = randomAction(model, random);
          if (fixture.crashAfter !== undefined && action.kind !== 'reopen' && random(5) === 0) {
            const steps = random(10);
            fixture.crashAfter(steps);
            const crashed = `${context}: ${describeAction(action)} with a crash after ${steps} steps`;
            const after =
              action.kind === 'persist'
                ? modelAfter(model, action.write)
                : modelPurged(model, action.upTo);
            const settled = await (action.kind === 'persist'
              ? store.persist(action.write)
              : store.purge(action.upTo)
            ).then(
              () => 'resolved' as const,
              () => 'rejected' as const,
            );
            store = await fixture.reopen();
            const survived = await readLog(store);
            if (settled === 'resolved') expect(survived, crashed).toEqual(after);
            else expectOneOf(survived, [model, after], `${crashed}: the state before or after it`);
            model = survived;
            continue;
          }
          switch (action.kind) {
            case 'persist':
              await store.persist(action.write);
              model = modelAfter(model, action.write);
              break;
            case 'purge':
              await store.purge(action.upTo);
              model = modelPurged(model, action.upTo);
              break;
            case 'reopen':
              store = await fixture.reopen();
              break;
            default:
              action satisfies never;
          }
          expect(await readLog(store), `${context}: after ${describeAction(action)}`).toEqual(
            model,
          );
          const { first, last } = bounds(model);
          if (last >= first) {
            const from = first + random(last - first + 1);
            const to = from + 1 + random(last - from + 1);
            const maxBytes = random(200);
            const read = await store.entries(from, to, { maxBytes });
            expect(
              read.length,
              `${context}: entries(${from}, ${to}, { maxBytes: ${maxBytes} })`,
            ).toBe(expectedCount(model.entries.slice(from - first, to - first), maxBytes));
          }
        }
      }
    });
  });
}

/** Options of {@link describeSnapshotStoreConformance}. */
export interface SnapshotStoreConformanceOptions {
  /** Bytes of the large snapshot test. Default 8 MiB. */
  readonly largeBytes?: number;
}

/**
 * Declares vitest tests that check a {@link SnapshotStore} against every rule of its contract.
 * Call it at the top level of a test file; `factory` makes a fresh, empty store for each test.
 */
export function describeSnapshotStoreConformance(
  name: string,
  factory: () => Promise<SnapshotStoreFixture>,
  options: SnapshotStoreConformanceOptions = {},
): void {
  // A joint configuration with every optional part: a store keeps a snapshot's configuration whole.
  const config: ClusterConfig = {
    voters: ['a', 'b', 'c'],
    outgoingVoters: ['a', 'b', 'e'],
    learners: ['d', 'e'],
    autoPromote: ['d'],
    addresses: { d: 'http://10.0.0.4:4000' },
  };

  describe(`SnapshotStore conformance: ${name}`, () => {
    it('has no snapshot when empty', async () => {
      await using fixture = await factory();
      expect(await fixture.store.latest()).toBeUndefined();
    });

    it('saves a snapshot durably and streams back exactly its bytes', async () => {
      await using fixture = await factory();
      const { store } = fixture;
      const chunks = [bytes(1000, 1), new Uint8Array(0), allByteValues(), bytes(70_000, 2)];
      const meta: SnapshotMeta = { index: 42, term: 3, config };
      const saved = await store.save(meta, streamOf(chunks));
      const data = concatBytes(chunks);
      expect(saved).toEqual({ ...meta, size: data.byteLength, sha256: await sha256(data) });
      expect(await store.latest()).toEqual(saved);
      const reopened = await fixture.reopen();
      expect(await reopened.latest()).toEqual(saved);
      expectBytes(concatBytes(await collectChunks(reopened.read(saved))), data);
    });

    it('saves an empty snapshot', async () => {
      await using fixture = await factory();
      const meta: SnapshotMeta = { index: 1, term: 1, config: { voters: ['a'] } };
      const saved = await fixture.store.save(meta, streamOf([]));
      expect(saved).toEqual({
        ...meta,
        size: 0,
        sha256: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
      });
      expect(concatBytes(await collectChunks(fixture.store.read(saved))).byteLength).toBe(0);
    });

    it('round-trips a large snapshot', async () => {
      await using fixture = await factory();
      const total = options.largeBytes ?? 8 * 1024 * 1024;
      const data = bytes(total, 5);
      const chunks: Uint8Array[] = [];
      for (let offset = 0; offset < total; offset += 65_536) {
        chunks.push(data.subarray(offset, offset + 65_536));
      }
      const saved = await fixture.store.save({ index: 1_000, term: 2, config }, streamOf(chunks));
      expect(saved.size).toBe(total);
      expectBytes(concatBytes(await collectChunks((await fixture.reopen()).read(saved))), data);
    });

    it('keeps the bytes of each chunk as they were when it was handed over', async () => {
      await using fixture = await factory();
      // A producer that reuses one buffer for every chunk, as streaming readers do.
      const buffer = new Uint8Array(16);
      async function* reusing(): AsyncIterable<Uint8Array> {
        for (let i = 0; i < 4; i++) {
          buffer.fill(i + 1);
          yield buffer;
        }
      }
      const saved = await fixture.store.save({ index: 5, term: 1, config }, reusing());
      const expected = concatBytes([1, 2, 3, 4].map((value) => new Uint8Array(16).fill(value)));
      expect(saved.sha256).toBe(await sha256(expected));
      expectBytes(concatBytes(await collectChunks(fixture.store.read(saved))), expected);
    });

    it('reads chunks the consumer may keep: reading the next one never overwrites them', async () => {
      await using fixture = await factory();
      // Larger than a store's chunk (stores read back in pieces of their own size), of bytes that
      // differ from chunk to chunk.
      const data = bytes(600_000, 7);
      const pieces: Uint8Array[] = [];
      for (let offset = 0; offset < data.byteLength; offset += 65_536) {
        pieces.push(data.subarray(offset, offset + 65_536));
      }
      const saved = await fixture.store.save({ index: 6, term: 1, config }, streamOf(pieces));
      const kept: { chunk: Uint8Array; copy: Uint8Array }[] = [];
      for await (const chunk of (await fixture.reopen()).read(saved)) {
        kept.push({ chunk, copy: chunk.slice() });
      }
      for (const [i, { chunk, copy }] of kept.entries()) {
        expect(chunk.byteLength, `chunk ${i} of ${kept.length}`).toBe(copy.byteLength);
        expectBytes(chunk, copy);
      }
      expectBytes(concatBytes(kept.map(({ chunk }) => chunk)), data);
    });

    it('makes a newer snapshot the latest', async () => {
      await using fixture = await factory();
      const { store } = fixture;
      await store.save({ index: 10, term: 1, config }, streamOf([bytes(100, 1)]));
      const newer = await store.save({ index: 20, term: 2, config }, streamOf([bytes(200, 2)]));
      expect(await store.latest()).toEqual(newer);
      const reopened = await fixture.reopen();
      expect(await reopened.latest()).toEqual(newer);
      expectBytes(concatBytes(await collectChunks(reopened.read(newer))), bytes(200, 2));
    });

    it('never shows a snapshot whose save failed or was aborted', async () => {
      await using fixture = await factory();
      const { store } = fixture;
      const kept = await store.save({ index: 10, term: 1, config }, streamOf([bytes(100, 1)]));
      async function* failing(): AsyncIterable<Uint8Array> {
        yield bytes(1000, 3);
        throw new Error('the leader went away');
      }
      await expect(store.save({ index: 20, term: 2, config }, failing())).rejects.toThrow();
      const controller = new AbortController();
      async function* aborting(): AsyncIterable<Uint8Array> {
        yield bytes(1000, 4);
        controller.abort(new Error('deadline passed'));
        yield bytes(1000, 5);
      }
      await expect(
        store.save({ index: 30, term: 2, config }, aborting(), { signal: controller.signal }),
      ).rejects.toThrow();
      expect(await store.latest()).toEqual(kept);
      const reopened = await fixture.reopen();
      expect(await reopened.latest()).toEqual(kept);
      expectBytes(concatBytes(await collectChunks(reopened.read(kept))), bytes(100, 1));
    });

    it('rejects reading a snapshot whose bytes no longer match its checksum', async (context) => {
      await using fixture = await factory();
      if (fixture.corrupt === undefined) {
        context.skip('the fixture cannot corrupt a snapshot');
        return;
      }
      const saved = await fixture.store.save(
        { index: 7, term: 1, config },
        streamOf([bytes(5000, 6), bytes(5000, 7)]),
      );
      await fixture.corrupt(saved);
      await expect(collectChunks((await fixture.reopen()).read(saved))).rejects.toBeInstanceOf(
        CorruptSnapshotError,
      );
    });

    it('receives a snapshot in pieces, across a restart, invisible until completed', async () => {
      await using fixture = await factory();
      const kept = await fixture.store.save(
        { index: 3, term: 1, config },
        streamOf([bytes(10, 1)]),
      );
      const data = concatBytes([bytes(3000, 2), bytes(2000, 3), bytes(1, 4)]);
      const announced: StoredSnapshot = {
        index: 9,
        term: 2,
        config,
        size: data.byteLength,
        sha256: await sha256(data),
      };
      expect(await fixture.store.partial()).toBeUndefined();
      expect(await fixture.store.beginPartial(announced)).toEqual({ ...announced, received: 0 });
      expect(await fixture.store.appendPartial(0, data.subarray(0, 3000))).toEqual({
        ...announced,
        received: 3000,
      });
      expect(await fixture.store.latest()).toEqual(kept);
      const reopened = await fixture.reopen();
      expect(await reopened.partial()).toEqual({ ...announced, received: 3000 });
      await reopened.appendPartial(3000, data.subarray(3000, 5000));
      await expect(reopened.completePartial()).rejects.toBeInstanceOf(RangeError);
      await reopened.appendPartial(5000, data.subarray(5000));
      const completed = await reopened.completePartial();
      expect(completed).toEqual(announced);
      expect(await reopened.latest()).toEqual(announced);
      expect(await reopened.partial()).toBeUndefined();
      expectBytes(concatBytes(await collectChunks((await fixture.reopen()).read(completed))), data);
    });

    it('refuses a piece that does not continue the partial snapshot, changing nothing', async () => {
      await using fixture = await factory();
      const { store } = fixture;
      await expect(store.appendPartial(0, bytes(10, 1))).rejects.toBeInstanceOf(RangeError);
      const data = bytes(100, 5);
      const announced = { index: 4, term: 1, config, size: 100, sha256: await sha256(data) };
      await store.beginPartial(announced);
      await store.appendPartial(0, data.subarray(0, 40));
      await expect(store.appendPartial(0, data.subarray(0, 40))).rejects.toBeInstanceOf(RangeError);
      await expect(store.appendPartial(60, data.subarray(60))).rejects.toBeInstanceOf(RangeError);
      await expect(store.appendPartial(40, bytes(61, 6))).rejects.toBeInstanceOf(RangeError);
      expect(await (await fixture.reopen()).partial()).toEqual({ ...announced, received: 40 });
      await store.appendPartial(40, data.subarray(40));
      expectBytes(
        concatBytes(await collectChunks(store.read(await store.completePartial()))),
        data,
      );
    });

    it('discards a received snapshot whose whole does not have the announced checksum', async () => {
      await using fixture = await factory();
      const { store } = fixture;
      const kept = await store.save({ index: 2, term: 1, config }, streamOf([bytes(10, 1)]));
      const data = bytes(500, 7);
      await store.beginPartial({
        index: 8,
        term: 2,
        config,
        size: 500,
        sha256: await sha256(bytes(500, 8)),
      });
      await store.appendPartial(0, data);
      await expect(store.completePartial()).rejects.toBeInstanceOf(CorruptSnapshotError);
      expect(await store.partial()).toBeUndefined();
      expect(await store.latest()).toEqual(kept);
      expect(await (await fixture.reopen()).latest()).toEqual(kept);
    });

    it('keeps one partial snapshot: beginning another discards the first', async () => {
      await using fixture = await factory();
      const { store } = fixture;
      const first = bytes(50, 1);
      await store.beginPartial({
        index: 5,
        term: 1,
        config,
        size: 50,
        sha256: await sha256(first),
      });
      await store.appendPartial(0, first.subarray(0, 20));
      const second = bytes(30, 2);
      const announced = { index: 6, term: 2, config, size: 30, sha256: await sha256(second) };
      await store.beginPartial(announced);
      expect(await store.partial()).toEqual({ ...announced, received: 0 });
      await store.appendPartial(0, second);
      expect(await store.completePartial()).toEqual(announced);
      expect(await (await fixture.reopen()).partial()).toBeUndefined();
    });
  });
}

/** A store's whole content, as `load` and `entries` show it. */
interface ReadLog {
  readonly state: LogStoreState;
  readonly entries: readonly LogEntry[];
}

type Action =
  | { readonly kind: 'persist'; readonly write: LogWrite }
  | { readonly kind: 'purge'; readonly upTo: LogPosition }
  | { readonly kind: 'reopen' };

async function readLog(store: LogStore): Promise<ReadLog> {
  const state = await store.load();
  const read = await store.entries(state.snapshot.index + 1, state.lastIndex + 1);
  return { state, entries: read.map(plain) };
}

/** A node identity as a node first persists it: no cluster id known yet, no member known. */
const IDENTITY: NodeIdentity = { clusterId: null, incarnation: 'a1b2c3', members: {} };

/** The same node once it learned its cluster and its peers' incarnations. */
const LEARNED_IDENTITY: NodeIdentity = {
  clusterId: 'cluster-7',
  incarnation: 'a1b2c3',
  members: { n2: 'd4e5f6', n3: '0718293a' },
  retired: ['b1c2d3'],
};

/**
 * Writes whose crash the suite checks at every step, each after the writes that set it up: the
 * shapes a follower and a leader persist (Raft paper 5.3 and 7).
 */
const CRASHED_WRITES: readonly [string, readonly LogWrite[], LogWrite][] = [
  [
    'a persist of a snapshot, a truncation, entries and the hard state',
    [{ entries: entries(1, 20, 1), hardState: hard(1, 'n1', 3) }],
    {
      snapshot: { index: 5, term: 1 },
      truncateFrom: 10,
      entries: entries(10, 30, 2),
      hardState: hard(2, 'n2', 9),
    },
  ],
  [
    'a persist of entries, the hard state and a new node identity',
    [{ entries: entries(1, 5, 1), hardState: hard(1, 'n1', 3), identity: IDENTITY }],
    { entries: entries(6, 9, 1), hardState: hard(1, 'n1', 6), identity: LEARNED_IDENTITY },
  ],
  [
    "a persist that replaces a conflicting suffix with a new leader's entries",
    [{ entries: entries(1, 20, 1), hardState: hard(1, 'n1', 3) }],
    { truncateFrom: 4, entries: entries(4, 8, 3), hardState: hard(3, 'n3', 3) },
  ],
  [
    'a persist of a snapshot the log disagrees with',
    [{ entries: entries(1, 20, 1), hardState: hard(1, 'n1', 3) }],
    { snapshot: { index: 12, term: 3 }, hardState: hard(3, null, 12) },
  ],
  [
    'a persist of 2,500 entries and the hard state',
    [{ entries: entries(1, 20, 1), hardState: hard(1, 'n1', 3) }],
    { entries: entries(21, 2520, 2), hardState: hard(2, 'n2', 20) },
  ],
];

/** Crash points past which a write still has not completed: the write never ends. */
const MAX_CRASH_STEPS = 200;

/**
 * Runs `write` on a fresh store set up by `setup`, crashing it after 0, 1, 2, ... steps, until
 * the write completes before the crash. After each crash a reopened store must hold the state
 * before the write or the state after it, and after a write that resolved, the state after it.
 */
async function crashAtEveryStep(
  context: TestContext,
  factory: () => Promise<LogStoreFixture>,
  setup: readonly LogWrite[],
  write: (store: LogStore) => Promise<void>,
  expectedAfter: (before: ReadLog) => ReadLog,
): Promise<void> {
  for (let steps = 0; steps <= MAX_CRASH_STEPS; steps++) {
    await using fixture = await factory();
    if (fixture.crashAfter === undefined) {
      context.skip('the fixture cannot crash the store');
      return;
    }
    const { store } = fixture;
    for (const earlier of setup) await store.persist(earlier);
    const before = await readLog(store);
    const after = expectedAfter(before);
    fixture.crashAfter(steps);
    const settled = await write(store).then(
      () => 'resolved' as const,
      () => 'rejected' as const,
    );
    const survived = await readLog(await fixture.reopen());
    if (settled === 'resolved') {
      expect(steps, 'a store crashed at once must reject the write').toBeGreaterThan(0);
      expect(survived, `the write resolved before a crash after ${steps} steps`).toEqual(after);
      return;
    }
    const outcome = `crashed after ${steps} steps, the write rejected; the store must hold the state before or after it`;
    if (steps === 0) expect(survived, outcome).toEqual(before);
    else expectOneOf(survived, [before, after], outcome);
  }
  throw new Error(`the write still crashed after ${MAX_CRASH_STEPS} steps: it never completes`);
}

/** Expects `actual` to equal one of `allowed` (before, after); a failure outlines all of them. */
function expectOneOf(actual: ReadLog, allowed: readonly ReadLog[], message: string): void {
  const outlines = allowed.map(outline);
  const found = outline(actual);
  const detail = `${message}\n  found:   ${found}\n${outlines.map((o, i) => `  ${i === 0 ? 'before' : 'after '}:  ${o}`).join('\n')}\n`;
  expect(outlines, detail).toContain(found);
  expect(allowed, message).toContainEqual(actual);
}

/** A log in one line: the state, and the entries as runs of `first..last/term`. */
function outline(log: ReadLog): string {
  const runs: string[] = [];
  let first: LogEntry | undefined;
  let last: LogEntry | undefined;
  for (const next of [...log.entries, undefined]) {
    if (first !== undefined && last !== undefined && next?.term !== first.term) {
      runs.push(`${first.index}..${last.index}/${first.term}`);
      first = undefined;
    }
    first ??= next;
    last = next;
  }
  return `${JSON.stringify(log.state)} entries ${runs.join(' ') || 'none'}`;
}

function bounds(log: ReadLog): { first: number; last: number } {
  return { first: log.state.snapshot.index + 1, last: log.state.lastIndex };
}

/** What a store holds after `write`, per the steps of {@link LogWrite}: the reference model. */
function modelAfter(log: ReadLog, write: LogWrite): ReadLog {
  let snapshot = log.state.snapshot;
  let kept = [...log.entries];
  if (write.snapshot !== undefined) {
    const { index, term } = write.snapshot;
    const at = kept.find((entry) => entry.index === index);
    kept = at?.term === term ? kept.filter((entry) => entry.index > index) : [];
    snapshot = { index, term };
  }
  const truncateFrom = write.truncateFrom;
  if (truncateFrom !== undefined) kept = kept.filter((entry) => entry.index < truncateFrom);
  kept.push(...(write.entries ?? []).map(plain));
  const identity = write.identity ?? log.state.identity;
  return {
    state: {
      hardState: write.hardState ?? log.state.hardState,
      snapshot,
      lastIndex: kept.at(-1)?.index ?? snapshot.index,
      ...(identity === undefined ? {} : { identity }),
    },
    entries: kept,
  };
}

function modelPurged(log: ReadLog, upTo: LogPosition): ReadLog {
  if (upTo.index <= log.state.snapshot.index) return log;
  return {
    state: { ...log.state, snapshot: { index: upTo.index, term: upTo.term } },
    entries: log.entries.filter((entry) => entry.index > upTo.index),
  };
}

/** A random action that keeps the log valid (contiguous, terms never going back). */
function randomAction(log: ReadLog, random: (bound: number) => number): Action {
  const { first, last } = bounds(log);
  const termAt = (index: number): number =>
    log.entries.find((entry) => entry.index === index)?.term ?? log.state.snapshot.term;
  const hardState = log.state.hardState;
  const appendAfter = (index: number, fromTerm: number): { entries: LogEntry[]; term: number } => {
    const term = Math.max(fromTerm, hardState.term) + random(2);
    const count = random(5);
    const appended: LogEntry[] = [];
    for (let i = 1; i <= count; i++)
      appended.push(entry(index + i, term, bytes(random(40), random(1000))));
    return { entries: appended, term };
  };
  // At most one vote per term: a vote once cast stays until the term changes.
  const nextHardState = (term: number): HardState => ({
    term,
    votedFor:
      term === hardState.term && hardState.votedFor !== null
        ? hardState.votedFor
        : random(3) === 0
          ? null
          : `n${random(3)}`,
    commitIndex: random(last + 1),
  });
  switch (random(8)) {
    case 0:
    case 1:
    case 2: {
      const { entries: appended, term } = appendAfter(last, termAt(last));
      return { kind: 'persist', write: { entries: appended, hardState: nextHardState(term) } };
    }
    case 3: {
      if (last < first) return { kind: 'reopen' };
      const from = first + random(last - first + 1);
      const { entries: appended, term } = appendAfter(from - 1, termAt(last) + 1);
      return {
        kind: 'persist',
        write: { truncateFrom: from, entries: appended, hardState: nextHardState(term) },
      };
    }
    case 4: {
      const index = first + random(last - first + 4);
      const term =
        index <= last && random(2) === 0 ? termAt(index) : termAt(Math.min(index, last)) + 1;
      const { entries: appended, term: nextTerm } = appendAfter(
        Math.max(index, last),
        Math.max(term, termAt(last)),
      );
      const write: LogWrite = { snapshot: { index, term }, hardState: nextHardState(nextTerm) };
      // Entries after a snapshot must follow what the snapshot keeps.
      const after = modelAfter(log, write);
      return {
        kind: 'persist',
        write: {
          ...write,
          entries: appended.map((e, i) => entry(after.state.lastIndex + 1 + i, e.term, e.data)),
        },
      };
    }
    case 5: {
      if (last < first) return { kind: 'reopen' };
      const index = first - 1 + random(last - first + 2);
      return { kind: 'purge', upTo: { index, term: termAt(index) } };
    }
    case 6:
      return { kind: 'persist', write: { hardState: nextHardState(hardState.term + random(2)) } };
    default:
      return { kind: 'reopen' };
  }
}

function describeAction(action: Action): string {
  switch (action.kind) {
    case 'persist': {
      const { snapshot, truncateFrom, entries: appended, hardState } = action.write;
      return `persist(${JSON.stringify({
        snapshot,
        truncateFrom,
        entries: appended?.map((e) => `${e.index}/${e.term}`),
        hardState,
      })})`;
    }
    case 'purge':
      return `purge(${action.upTo.index}/${action.upTo.term})`;
    case 'reopen':
      return 'reopen()';
    default:
      return action satisfies never;
  }
}

function expectedCount(range: readonly LogEntry[], maxBytes: number): number {
  let bytesSoFar = 0;
  let count = 0;
  for (const entry of range) {
    bytesSoFar += entrySize(entry);
    if (count > 0 && bytesSoFar > maxBytes) break;
    count++;
  }
  return count;
}

function entry(
  index: number,
  term: number,
  data: Uint8Array = bytes(index % 13, index),
  type: EntryType = 'command',
): LogEntry {
  return { index, term, type, data };
}

/** Entries `from..to` (inclusive) of one term. */
function entries(from: number, to: number, term: number): LogEntry[] {
  const result: LogEntry[] = [];
  for (let index = from; index <= to; index++) result.push(entry(index, term));
  return result;
}

function hard(term: number, votedFor: string | null = null, commitIndex = 0): HardState {
  return { term, votedFor, commitIndex };
}

/** An entry as plain data, its bytes copied into a plain `Uint8Array` (not a subclass or view). */
function plain(entry: LogEntry): LogEntry {
  return {
    index: entry.index,
    term: entry.term,
    type: entry.type,
    data: Uint8Array.from(entry.data),
  };
}

function expectEntries(actual: readonly LogEntry[], expected: readonly LogEntry[]): void {
  expect(actual.map(plain)).toEqual(expected.map(plain));
}

function expectBytes(actual: Uint8Array, expected: Uint8Array): void {
  expect(actual.byteLength).toBe(expected.byteLength);
  const differs = actual.findIndex((value, i) => value !== expected[i]);
  expect(differs, `first differing byte at ${differs}`).toBe(-1);
}

/** `size` deterministic pseudo-random bytes; `salt` varies them. */
function bytes(size: number, salt: number): Uint8Array {
  const result = new Uint8Array(size);
  let state = (salt * 2_654_435_761 + 1) >>> 0;
  for (let i = 0; i < size; i++) {
    state = (state * 1_664_525 + 1_013_904_223) >>> 0;
    result[i] = state >>> 24;
  }
  return result;
}

function allByteValues(): Uint8Array {
  return Uint8Array.from({ length: 256 }, (_, i) => i);
}

/** A seeded generator of integers in `[0, bound)` (mulberry32). */
function seededRandom(seed: number): (bound: number) => number {
  let state = seed >>> 0;
  return (bound) => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4_294_967_296) * bound);
  };
}

async function sha256(data: Uint8Array): Promise<string> {
  const digest = new Uint8Array(
    await crypto.subtle.digest('SHA-256', data as Uint8Array<ArrayBuffer>),
  );
  return Array.from(digest, (byte) => byte.toString(16).padStart(2, '0')).join('');
}

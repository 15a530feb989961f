import { describe, expect, it } from 'vitest';
import { CorruptSnapshotError } from '../errors.ts';
import { MemorySnapshotStore } from './memory-snapshot-store.ts';
import { describeSnapshotStoreConformance } from './storage-conformance.ts';

describeSnapshotStoreConformance('MemorySnapshotStore', async () => {
  const store = new MemorySnapshotStore();
  return {
    store,
    reopen: async () => new MemorySnapshotStore({ durable: store.durable }),
    corrupt: async () => {
      const first = store.durable.latest?.chunks[0];
      if (first === undefined) throw new Error('nothing to corrupt');
      first[0] = (first[0] ?? 0) ^ 0xff;
    },
    [Symbol.asyncDispose]: async () => {},
  };
});

async function* stream(...chunks: Uint8Array[]): AsyncIterable<Uint8Array> {
  yield* chunks;
}

async function drain(chunks: AsyncIterable<Uint8Array>): Promise<number> {
  let size = 0;
  for await (const chunk of chunks) size += chunk.byteLength;
  return size;
}

describe('MemorySnapshotStore', () => {
  const config = { voters: ['a'] };

  it('keeps only the latest snapshot, and refuses to read a replaced one', async () => {
    const store = new MemorySnapshotStore();
    const older = await store.save({ index: 1, term: 1, config }, stream(new Uint8Array([1])));
    await store.save({ index: 2, term: 1, config }, stream(new Uint8Array([2, 2])));
    expect(store.durable.latest?.snapshot.index).toBe(2);
    await expect(drain(store.read(older))).rejects.toThrow(/not stored/);
  });

  it('says which snapshot is corrupt and what it found, as a CorruptSnapshotError', async () => {
    const store = new MemorySnapshotStore();
    const saved = await store.save(
      { index: 9, term: 2, config },
      stream(new Uint8Array([1, 2, 3])),
    );
    const chunk = store.durable.latest?.chunks[0] as Uint8Array;
    chunk[1] = 7;
    const reading = drain(store.read(saved));
    await expect(reading).rejects.toThrow(CorruptSnapshotError);
    await expect(reading).rejects.toThrow(
      new RegExp(`snapshot 9/2 is corrupt: .* but ${saved.sha256} and 3 were recorded`),
    );
  });

  it('hands out copies: a reader that mutates a chunk does not damage the store', async () => {
    const store = new MemorySnapshotStore();
    const saved = await store.save({ index: 1, term: 1, config }, stream(new Uint8Array([5, 6])));
    for await (const chunk of store.read(saved)) chunk.fill(0);
    expect(await drain(store.read(saved))).toBe(2);
  });

  it('stops reading when the signal aborts', async () => {
    const store = new MemorySnapshotStore();
    const saved = await store.save(
      { index: 1, term: 1, config },
      stream(new Uint8Array(1), new Uint8Array(1)),
    );
    const controller = new AbortController();
    const reading = (async () => {
      for await (const _ of store.read(saved, { signal: controller.signal })) controller.abort();
    })();
    await expect(reading).rejects.toThrow();
  });
});

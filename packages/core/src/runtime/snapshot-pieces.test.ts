import { describe, expect, it } from 'vitest';
import { chunked, concatBytes } from '../testing/byte-streams.ts';
import { piecesFrom } from './snapshot-pieces.ts';

/** 1000 bytes that differ from their neighbours. */
const bytes = Uint8Array.from({ length: 1000 }, (_, i) => (i * 31 + 7) % 251);

async function pieces(chunkBytes: number, offset: number, pieceBytes: number) {
  const out: Uint8Array[] = [];
  for await (const piece of piecesFrom(chunked(bytes, chunkBytes), offset, pieceBytes)) {
    out.push(piece.slice()); // an assembled piece's buffer is used again two pieces later
  }
  return out;
}

describe('piecesFrom', () => {
  it.each([
    [100, 0, 100],
    [100, 300, 100],
    [100, 250, 100],
    [64, 0, 100],
    [300, 0, 100],
    [300, 150, 100],
    [7, 13, 100],
    [1000, 999, 100],
  ])(
    'cuts chunks of %i bytes from offset %i into pieces of %i exactly',
    async (chunkBytes, offset, pieceBytes) => {
      const out = await pieces(chunkBytes, offset, pieceBytes);
      expect(concatBytes(out)).toEqual(bytes.subarray(offset));
      expect(out.slice(0, -1).every((piece) => piece.byteLength === pieceBytes)).toBe(true);
      expect(out.at(-1)?.byteLength).toBeGreaterThan(0);
      expect(out.at(-1)?.byteLength).toBeLessThanOrEqual(pieceBytes);
    },
  );

  it('yields a piece that lies inside one chunk as a view of it, and assembles the others', async () => {
    const source = [bytes.slice(0, 250), bytes.slice(250, 1000)];
    const out: Uint8Array[] = [];
    const whereFrom: string[] = [];
    for await (const piece of piecesFrom(
      (async function* () {
        yield* source;
      })(),
      0,
      100,
    )) {
      out.push(piece.slice());
      whereFrom.push(
        piece.buffer === source[0]?.buffer
          ? 'first'
          : piece.buffer === source[1]?.buffer
            ? 'second'
            : 'copy',
      );
    }
    expect(concatBytes(out)).toEqual(bytes);
    // 0-100 and 100-200 lie in the first chunk, 200-300 spans both, the rest lie in the second.
    expect(whereFrom).toEqual(['first', 'first', 'copy', ...Array(7).fill('second')]);
  });

  it('assembles pieces in two buffers that take turns, each intact until the piece after next is asked for', async () => {
    // Chunks of 30 bytes never hold a piece of 100 whole: every piece is assembled.
    const pieces = piecesFrom(chunked(bytes, 30), 0, 100)[Symbol.asyncIterator]();
    const buffers = new Set<ArrayBufferLike>();
    let previous: { piece: Uint8Array; copy: Uint8Array } | undefined;
    const out: Uint8Array[] = [];
    for (let next = await pieces.next(); next.done !== true; next = await pieces.next()) {
      const piece = next.value;
      buffers.add(piece.buffer);
      // The piece before this one was not written while this one was assembled.
      if (previous !== undefined) expect(previous.piece).toEqual(previous.copy);
      previous = { piece, copy: piece.slice() };
      out.push(previous.copy);
    }
    expect(concatBytes(out)).toEqual(bytes);
    expect(buffers.size).toBe(2);
  });
});

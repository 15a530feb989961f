import { describe, expect, it } from 'vitest';
import { chunked, concatBytes } from '../testing/byte-streams.ts';
import { piecesFrom } from './snapshot-pieces.ts';

/** 1000 bytes that differ from their neighbours. */
const bytes = Uint8Array.from({ length: 1000 }, (_, i) => (i * 31 + 7) % 251);

async function pieces(chunkBytes: number, offset: number, pieceBytes: number) {
  const out: Uint8Array[] = [];
  for await (const piece of piecesFrom(chunked(bytes, chunkBytes), offset, pieceBytes)) {
    out.push(piece);
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
    for await (const piece of piecesFrom(
      (async function* () {
        yield* source;
      })(),
      0,
      100,
    )) {
      out.push(piece);
    }
    expect(concatBytes(out)).toEqual(bytes);
    // 0-100 and 100-200 lie in the first chunk, 200-300 spans both, the rest lie in the second.
    const whereFrom = out.map((piece) =>
      piece.buffer === source[0]?.buffer
        ? 'first'
        : piece.buffer === source[1]?.buffer
          ? 'second'
          : 'copy',
    );
    expect(whereFrom).toEqual(['first', 'first', 'copy', ...Array(7).fill('second')]);
  });
});

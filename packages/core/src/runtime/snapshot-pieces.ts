/**
 * The bytes of `chunks` from `offset` on, in pieces of exactly `pieceBytes` (the last one may be
 * shorter). The bytes before `offset` are read and dropped, so that a source which checks its
 * whole (a snapshot store's `read`) still does. A piece that lies whole inside one source chunk
 * is a view of that chunk, not a copy (a snapshot store's chunks are the reader's to keep, see
 * `SnapshotStore.read`); the others are assembled in a new buffer. Holds about one piece and
 * one source chunk.
 */
export async function* piecesFrom(
  chunks: AsyncIterable<Uint8Array>,
  offset: number,
  pieceBytes: number,
): AsyncGenerator<Uint8Array> {
  let skip = offset;
  let piece = new Uint8Array(pieceBytes);
  let filled = 0;
  for await (const chunk of chunks) {
    let from = 0;
    if (skip > 0) {
      from = Math.min(skip, chunk.byteLength);
      skip -= from;
    }
    while (from < chunk.byteLength) {
      if (filled === 0 && chunk.byteLength - from >= pieceBytes) {
        yield chunk.subarray(from, from + pieceBytes);
        from += pieceBytes;
        continue;
      }
      const take = Math.min(pieceBytes - filled, chunk.byteLength - from);
      piece.set(chunk.subarray(from, from + take), filled);
      filled += take;
      from += take;
      if (filled === pieceBytes) {
        yield piece;
        piece = new Uint8Array(pieceBytes);
        filled = 0;
      }
    }
  }
  if (filled > 0) yield piece.subarray(0, filled);
}

/**
 * The bytes of `chunks` from `offset` on, in pieces of exactly `pieceBytes` (the last one may be
 * shorter). The bytes before `offset` are read and dropped, so that a source which checks its
 * whole (a snapshot store's `read`) still does. A piece that lies whole inside one source chunk
 * is a view of that chunk, not a copy (a snapshot store's chunks are the reader's to keep, see
 * `SnapshotStore.read`); the others are assembled in one of two buffers that take turns, so that
 * a transfer allocates no new piece-sized buffer per piece.
 *
 * The consumer must be done with a piece before it asks for the piece after the next one: that
 * one may be assembled in the same buffer. (It may ask for the next one while it still uses a
 * piece, as `SnapshotSender` does to read ahead while a piece is sent.) Holds about two pieces
 * and one source chunk.
 */
export async function* piecesFrom(
  chunks: AsyncIterable<Uint8Array>,
  offset: number,
  pieceBytes: number,
): AsyncGenerator<Uint8Array> {
  let skip = offset;
  const buffers: [Uint8Array | undefined, Uint8Array | undefined] = [undefined, undefined];
  /** The buffer the next assembled piece goes into: 0 or 1, taking turns. */
  let turn = 0;
  let piece: Uint8Array | undefined;
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
      if (piece === undefined) {
        piece = buffers[turn] ?? new Uint8Array(pieceBytes);
        buffers[turn] = piece;
        turn = 1 - turn;
      }
      const take = Math.min(pieceBytes - filled, chunk.byteLength - from);
      piece.set(chunk.subarray(from, from + take), filled);
      filled += take;
      from += take;
      if (filled === pieceBytes) {
        const whole = piece;
        piece = undefined;
        filled = 0;
        yield whole;
      }
    }
  }
  if (piece !== undefined && filled > 0) yield piece.subarray(0, filled);
}

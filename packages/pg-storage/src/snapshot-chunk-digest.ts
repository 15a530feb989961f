import { createHash } from 'node:crypto';

/** Bytes of a {@link chunkDigest}. */
export const CHUNK_DIGEST_BYTES = 32;

/**
 * The digest a snapshot chunk row is stored with (`snapshot_chunk.sha256`): SHA-256 of its `seq`
 * (4 bytes, big-endian: Postgres' `int4send`) followed by its bytes. Binding the position makes
 * a chunk row moved to another `seq` fail the check as surely as changed bytes. In SQL:
 * `sha256(int4send(seq) || data)`.
 */
export function chunkDigest(seq: number, data: Uint8Array): Uint8Array {
  const position = new Uint8Array(4);
  new DataView(position.buffer).setInt32(0, seq);
  return createHash('sha256').update(position).update(data).digest();
}

/**
 * The digests of the rows `data` is stored as, `rowBytes` each from `seq` on, one after the
 * other ({@link CHUNK_DIGEST_BYTES} each).
 */
export function chunkDigests(seq: number, data: Uint8Array, rowBytes: number): Uint8Array {
  const rows = Math.max(1, Math.ceil(data.byteLength / rowBytes));
  const digests = new Uint8Array(rows * CHUNK_DIGEST_BYTES);
  for (let row = 0; row < rows; row++) {
    const slice = data.subarray(row * rowBytes, (row + 1) * rowBytes);
    digests.set(chunkDigest(seq + row, slice), row * CHUNK_DIGEST_BYTES);
  }
  return digests;
}

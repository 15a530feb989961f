import { Buffer } from 'node:buffer';
import type { PeerRequest } from '@tsraft/core';

/**
 * The body of a `snapshot` request (one piece of a snapshot, the core's chunked InstallSnapshot)
 * on the peer wire. It is binary, so that a piece's bytes travel as they are instead of as
 * base64 inside JSON (a third more bytes, and an encoding and a decoding of every byte):
 *
 * ```text
 * u32, big-endian   bytes of the head
 * head              UTF-8 JSON: { "message": <InstallSnapshot>, "chunk": { size, sha256, offset, crc32 },
 *                   "identity"?: <PeerIdentity> }
 * data              the piece's bytes, to the end of the body
 * ```
 *
 * It is sent as {@link SNAPSHOT_PIECE_CONTENT_TYPE} and signed like every peer request: the
 * signature covers the SHA-256 of the whole body. Every other request is JSON (`peer-wire.ts`).
 */
export const SNAPSHOT_PIECE_CONTENT_TYPE = 'application/octet-stream';

/** Bytes of the head's length prefix. */
const PREFIX_BYTES = 4;

/**
 * The body of `request`, in parts to send one after the other: the length prefix and head, then
 * the piece's bytes as they are (not copied).
 */
export function encodeSnapshotPiece(
  request: PeerRequest & { type: 'snapshot' },
): readonly Uint8Array[] {
  const { data, ...chunk } = request.chunk;
  const { message, identity } = request;
  const head = Buffer.from(
    JSON.stringify({ message, chunk, ...(identity === undefined ? {} : { identity }) }),
    'utf8',
  );
  const prefixed = Buffer.allocUnsafe(PREFIX_BYTES + head.byteLength);
  prefixed.writeUInt32BE(head.byteLength, 0);
  head.copy(prefixed, PREFIX_BYTES);
  return [prefixed, data];
}

/**
 * The `snapshot` procedure's input in `body`: the head's JSON with the piece's bytes as
 * `chunk.data` (a view of `body`, not a copy). The procedure's schema validates the rest.
 *
 * @throws SyntaxError when the body is shorter than its head says, or the head is not JSON.
 */
export function decodeSnapshotPiece(body: Buffer): unknown {
  if (body.byteLength < PREFIX_BYTES) {
    throw new SyntaxError('a snapshot piece must start with the 4-byte length of its head');
  }
  const headBytes = body.readUInt32BE(0);
  const dataAt = PREFIX_BYTES + headBytes;
  if (dataAt > body.byteLength) {
    throw new SyntaxError(
      `a snapshot piece announces a head of ${headBytes} bytes, but its body holds ${body.byteLength}`,
    );
  }
  const head: unknown = JSON.parse(body.toString('utf8', PREFIX_BYTES, dataAt));
  if (typeof head !== 'object' || head === null) return head;
  const { chunk } = head as { chunk?: unknown };
  if (typeof chunk !== 'object' || chunk === null) return head;
  const data = new Uint8Array(body.buffer, body.byteOffset + dataAt, body.byteLength - dataAt);
  return { ...head, chunk: { ...chunk, data } };
}

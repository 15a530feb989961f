import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import {
  DEFAULT_FRAME_BYTES,
  FRAME_KIND,
  FRAME_PREFIX_BYTES,
  MAX_FRAME_BYTES,
  SNAPSHOT_FILE_MAGIC,
  type SnapshotFileEnd,
  SnapshotFileError,
  type SnapshotFileHeader,
} from './snapshot-file-format.ts';

/** Options of {@link writeSnapshotFile}. */
export interface WriteSnapshotFileOptions {
  /** What the file holds; `format` is filled in. */
  readonly header: Omit<SnapshotFileHeader, 'format'>;
  /** The snapshot's bytes, in order. */
  readonly chunks: AsyncIterable<Uint8Array>;
  /** Bytes per data frame. Default 1 MiB. */
  readonly frameBytes?: number;
  /** Called after each data frame with the snapshot bytes written so far. */
  readonly onProgress?: (bytes: number) => void;
  readonly signal?: AbortSignal;
}

/**
 * The bytes of a snapshot file holding `chunks` (format `tsraft-snapshot/1`), as a stream.
 * Memory stays at about one frame whatever the snapshot's size. When the header names a size or
 * SHA-256 and the chunks do not match them, the stream fails before its end frame (so the file
 * is never complete).
 *
 * @throws SnapshotFileError `corrupt` when the chunks disagree with the header's size or SHA-256.
 */
export async function* writeSnapshotFile(
  options: WriteSnapshotFileOptions,
): AsyncGenerator<Uint8Array, SnapshotFileEnd> {
  const { header, signal } = options;
  const frameBytes = options.frameBytes ?? DEFAULT_FRAME_BYTES;
  if (!Number.isSafeInteger(frameBytes) || frameBytes < 1 || frameBytes > MAX_FRAME_BYTES) {
    throw new RangeError(`frameBytes must be an integer from 1 to ${MAX_FRAME_BYTES}`);
  }
  signal?.throwIfAborted();
  yield SNAPSHOT_FILE_MAGIC.slice();
  yield frame(FRAME_KIND.header, json({ format: 'tsraft-snapshot/1', ...header }));
  const hash = createHash('sha256');
  let size = 0;
  let frames = 0;
  const buffer = new Uint8Array(frameBytes);
  let filled = 0;
  for await (const chunk of options.chunks) {
    signal?.throwIfAborted();
    hash.update(chunk);
    for (let offset = 0; offset < chunk.byteLength; ) {
      const take = Math.min(frameBytes - filled, chunk.byteLength - offset);
      buffer.set(chunk.subarray(offset, offset + take), filled);
      filled += take;
      offset += take;
      if (filled === frameBytes) {
        yield frame(FRAME_KIND.data, buffer); // a copy: the buffer is reused
        size += filled;
        filled = 0;
        frames++;
        options.onProgress?.(size);
      }
    }
  }
  if (filled > 0) {
    yield frame(FRAME_KIND.data, buffer.subarray(0, filled));
    size += filled;
    frames++;
    options.onProgress?.(size);
  }
  const end: SnapshotFileEnd = { size, sha256: hash.digest('hex'), frames };
  if (header.size !== undefined && header.size !== end.size) {
    throw new SnapshotFileError(
      'corrupt',
      `the snapshot has ${end.size} bytes, not the ${header.size} its metadata records`,
    );
  }
  if (header.sha256 !== undefined && header.sha256 !== end.sha256) {
    throw new SnapshotFileError(
      'corrupt',
      `the snapshot's SHA-256 is ${end.sha256}, not the ${header.sha256} its metadata records`,
    );
  }
  yield frame(FRAME_KIND.end, json(end));
  return end;
}

/** One frame: kind, length, CRC-32 of the payload, payload. */
function frame(kind: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(FRAME_PREFIX_BYTES + payload.byteLength);
  const view = new DataView(out.buffer);
  view.setUint8(0, kind);
  view.setUint32(1, payload.byteLength);
  view.setUint32(5, crc32(payload));
  out.set(payload, FRAME_PREFIX_BYTES);
  return out;
}

function json(value: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(value));
}

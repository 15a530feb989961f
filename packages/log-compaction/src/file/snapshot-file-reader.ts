import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { ByteReader } from './byte-reader.ts';
import {
  FRAME_KIND,
  FRAME_PREFIX_BYTES,
  MAX_FRAME_BYTES,
  parseEnd,
  parseHeader,
  SNAPSHOT_FILE_MAGIC,
  type SnapshotFileEnd,
  SnapshotFileError,
  type SnapshotFileHeader,
} from './snapshot-file-format.ts';

/** An open snapshot file: its header, and its data as a checked stream. */
export interface SnapshotFileReader extends AsyncDisposable {
  readonly header: SnapshotFileHeader;
  /**
   * The snapshot's bytes, frame by frame, each checked against its CRC-32. After the last frame,
   * and before the stream ends, the end frame is checked against the data (size, SHA-256, frame
   * count) and the header, and the file must end there: a consumer that reads the stream to its
   * end without an error has seen exactly the snapshot the file recorded. Can be read once.
   *
   * @throws SnapshotFileError `corrupt` at the first check that fails.
   */
  readonly data: AsyncIterable<Uint8Array>;
  /** The end frame, once `data` was read to its end without an error; `undefined` before. */
  end(): SnapshotFileEnd | undefined;
}

/** Options of {@link openSnapshotFile}. */
export interface OpenSnapshotFileOptions {
  /** Called after each data frame with the snapshot bytes read so far. */
  readonly onProgress?: (bytes: number) => void;
  readonly signal?: AbortSignal;
}

/**
 * Opens a snapshot file from its bytes (a file stream, stdin): reads and checks the magic and
 * the header. Memory stays at about one frame whatever the file's size.
 *
 * @throws SnapshotFileError `corrupt` when the bytes are not a snapshot file or its header is
 * damaged, `unsupported` when it is of another version.
 */
export async function openSnapshotFile(
  bytes: AsyncIterable<Uint8Array>,
  options: OpenSnapshotFileOptions = {},
): Promise<SnapshotFileReader> {
  const { signal } = options;
  const reader = new ByteReader(bytes);
  try {
    signal?.throwIfAborted();
    const magic = await reader.read(SNAPSHOT_FILE_MAGIC.byteLength);
    if (!equalBytes(magic, SNAPSHOT_FILE_MAGIC)) {
      throw new SnapshotFileError(
        'corrupt',
        `not a tsraft snapshot file: it does not start with "TSRAFT-SNAPSHOT" (it starts with ${JSON.stringify(
          new TextDecoder().decode(magic.subarray(0, 16)),
        )})`,
      );
    }
    const first = await readFrame(reader);
    if (first === undefined || first.kind !== FRAME_KIND.header) {
      throw new SnapshotFileError('corrupt', 'the file has no header frame after its magic');
    }
    const header = parseHeader(parseJson(first.payload, 'header'));
    const seen: { end?: SnapshotFileEnd } = {};
    return {
      header,
      data: checkedData(reader, header, options, seen),
      end: () => seen.end,
      [Symbol.asyncDispose]: () => reader.close(),
    };
  } catch (error) {
    await reader.close();
    throw error;
  }
}

async function* checkedData(
  reader: ByteReader,
  header: SnapshotFileHeader,
  options: OpenSnapshotFileOptions,
  seen: { end?: SnapshotFileEnd },
): AsyncGenerator<Uint8Array> {
  const hash = createHash('sha256');
  let size = 0;
  let frames = 0;
  try {
    for (;;) {
      options.signal?.throwIfAborted();
      const next = await readFrame(reader);
      if (next === undefined) {
        throw new SnapshotFileError(
          'corrupt',
          `the file is truncated: it ends after ${size} bytes of data without its end frame`,
        );
      }
      if (next.kind === FRAME_KIND.data) {
        hash.update(next.payload);
        size += next.payload.byteLength;
        frames++;
        options.onProgress?.(size);
        yield next.payload;
        continue;
      }
      if (next.kind === FRAME_KIND.header) {
        throw new SnapshotFileError('corrupt', 'the file has a second header frame');
      }
      const end = parseEnd(parseJson(next.payload, 'end frame'));
      checkEnd(end, { size, sha256: hash.digest('hex'), frames }, header);
      if (!(await reader.atEnd())) {
        throw new SnapshotFileError('corrupt', 'the file has data after its end frame');
      }
      seen.end = end;
      return;
    }
  } finally {
    await reader.close();
  }
}

function checkEnd(end: SnapshotFileEnd, read: SnapshotFileEnd, header: SnapshotFileHeader): void {
  if (end.frames !== read.frames || end.size !== read.size) {
    throw new SnapshotFileError(
      'corrupt',
      `the end frame records ${end.size} bytes in ${end.frames} frames, but the file holds ${read.size} bytes in ${read.frames} frames`,
    );
  }
  if (end.sha256 !== read.sha256) {
    throw new SnapshotFileError(
      'corrupt',
      `the data's SHA-256 is ${read.sha256}, not the ${end.sha256} its end frame records`,
    );
  }
  if (header.size !== undefined && header.size !== end.size) {
    throw new SnapshotFileError(
      'corrupt',
      `the header records ${header.size} bytes, the end frame ${end.size}`,
    );
  }
  if (header.sha256 !== undefined && header.sha256 !== end.sha256) {
    throw new SnapshotFileError(
      'corrupt',
      `the header records SHA-256 ${header.sha256}, the end frame ${end.sha256}`,
    );
  }
}

/** The next frame, checked; `undefined` at the end of the file (between frames). */
async function readFrame(
  reader: ByteReader,
): Promise<{ kind: number; payload: Uint8Array } | undefined> {
  const prefix = await reader.read(FRAME_PREFIX_BYTES);
  if (prefix.byteLength === 0) return undefined;
  if (prefix.byteLength < FRAME_PREFIX_BYTES) {
    throw new SnapshotFileError('corrupt', 'the file is truncated in the middle of a frame');
  }
  const view = new DataView(prefix.buffer, prefix.byteOffset, prefix.byteLength);
  const kind = view.getUint8(0);
  const length = view.getUint32(1);
  const expectedCrc = view.getUint32(5);
  if (kind !== FRAME_KIND.header && kind !== FRAME_KIND.data && kind !== FRAME_KIND.end) {
    throw new SnapshotFileError('corrupt', `unknown frame kind 0x${kind.toString(16)}`);
  }
  if (length > MAX_FRAME_BYTES) {
    throw new SnapshotFileError(
      'corrupt',
      `a frame claims ${length} bytes (at most ${MAX_FRAME_BYTES})`,
    );
  }
  const payload = await reader.read(length);
  if (payload.byteLength < length) {
    throw new SnapshotFileError('corrupt', 'the file is truncated in the middle of a frame');
  }
  const actual = crc32(payload);
  if (actual !== expectedCrc) {
    throw new SnapshotFileError(
      'corrupt',
      `a ${String.fromCharCode(kind)} frame of ${length} bytes fails its CRC-32 (0x${actual.toString(16)}, recorded 0x${expectedCrc.toString(16)})`,
    );
  }
  return { kind, payload };
}

function parseJson(bytes: Uint8Array, what: string): unknown {
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (error) {
    throw new SnapshotFileError('corrupt', `the ${what} is not UTF-8 JSON`, { cause: error });
  }
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && a.every((byte, i) => byte === b[i]);
}

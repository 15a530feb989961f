import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { chunked, readBytes } from '@tsraft/core/testing';
import { describe, expect, it } from 'vitest';
import {
  FRAME_PREFIX_BYTES,
  SNAPSHOT_FILE_MAGIC,
  SnapshotFileError,
} from './snapshot-file-format.ts';
import { openSnapshotFile } from './snapshot-file-reader.ts';
import { writeSnapshotFile } from './snapshot-file-writer.ts';

const HEADER = {
  index: 42,
  term: 3,
  config: { voters: ['n1', 'n2', 'n3'] },
  createdAt: '2025-01-01T00:00:00.000Z',
  source: { kind: 'export' as const, snapshotId: 7, schema: 'raft' },
};

function pseudoRandomBytes(size: number, seed: number): Uint8Array {
  const out = new Uint8Array(size);
  let x = seed;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

async function fileOf(
  data: Uint8Array,
  options: { frameBytes?: number; withChecksum?: boolean } = {},
): Promise<Uint8Array> {
  const sha256 = createHash('sha256').update(data).digest('hex');
  return readBytes(
    writeSnapshotFile({
      header:
        options.withChecksum === false ? HEADER : { ...HEADER, size: data.byteLength, sha256 },
      chunks: chunked(data, 1000),
      frameBytes: options.frameBytes ?? 4096,
    }),
  );
}

async function readAll(file: Uint8Array, sourceChunk = 777): Promise<Uint8Array> {
  await using reader = await openSnapshotFile(chunked(file, sourceChunk));
  return await readBytes(reader.data);
}

describe('the snapshot file format tsraft-snapshot/1', () => {
  it('round-trips a snapshot whatever the source and frame sizes', async () => {
    const data = pseudoRandomBytes(20_000, 1);
    for (const frameBytes of [7, 999, 65_536]) {
      for (const withChecksum of [true, false]) {
        const file = await fileOf(data, { frameBytes, withChecksum });
        for (const sourceChunk of [1, 13, 100_000]) {
          expect(Buffer.compare(await readAll(file, sourceChunk), data)).toBe(0);
        }
      }
    }
  });

  it('round-trips an empty snapshot', async () => {
    const file = await fileOf(new Uint8Array(0));
    expect((await readAll(file)).byteLength).toBe(0);
  });

  it('hands back the header', async () => {
    const file = await fileOf(pseudoRandomBytes(10, 2));
    await using reader = await openSnapshotFile(chunked(file, 64));
    expect(reader.header).toMatchObject({ format: 'tsraft-snapshot/1', ...HEADER, size: 10 });
  });

  it('starts with the magic and frames each 1 MiB of data by default', async () => {
    const data = pseudoRandomBytes(2.5 * 1024 * 1024, 3);
    const file = await readBytes(
      writeSnapshotFile({ header: HEADER, chunks: chunked(data, 65_536) }),
    );
    expect(Buffer.from(file.subarray(0, 16)).toString()).toBe('TSRAFT-SNAPSHOT\n');
    const headerLength = new DataView(file.buffer, file.byteOffset + 17).getUint32(0);
    const firstData = 16 + FRAME_PREFIX_BYTES + headerLength;
    expect(String.fromCharCode(file[firstData] ?? 0)).toBe('D');
    expect(new DataView(file.buffer, file.byteOffset + firstData + 1).getUint32(0)).toBe(
      1024 * 1024,
    );
  });

  it('refuses a file truncated at any point, before its data ends', async () => {
    const data = pseudoRandomBytes(3000, 4);
    const file = await fileOf(data, { frameBytes: 1000 });
    for (let length = 0; length < file.byteLength; length += 7) {
      await expect(readAll(file.subarray(0, length)), `cut at ${length}`).rejects.toBeInstanceOf(
        SnapshotFileError,
      );
    }
  });

  it('refuses a file with any single byte flipped', async () => {
    const data = pseudoRandomBytes(2000, 5);
    const file = await fileOf(data, { frameBytes: 500 });
    for (let at = 0; at < file.byteLength; at += 5) {
      const damaged = file.slice();
      damaged[at] = (damaged[at] ?? 0) ^ 0x10;
      const error = await readAll(damaged).catch((e: unknown) => e);
      expect(error, `byte ${at} flipped`).toBeInstanceOf(SnapshotFileError);
      expect((error as SnapshotFileError).problem).toBe('corrupt');
    }
  });

  it('refuses data after the end frame', async () => {
    const file = await fileOf(pseudoRandomBytes(100, 6));
    await expect(readAll(Buffer.concat([file, Buffer.from([0])]))).rejects.toThrow(
      /data after its end frame/,
    );
  });

  it('refuses a file that is not a snapshot file, naming what it starts with', async () => {
    await expect(readAll(Buffer.from('PGDMP custom dump\n'))).rejects.toThrow(
      /not a tsraft snapshot file.*PGDMP/,
    );
  });

  it('refuses another format version as unsupported, saying what to do', async () => {
    const header = Buffer.from(JSON.stringify({ ...HEADER, format: 'tsraft-snapshot/2' }));
    const prefix = Buffer.alloc(FRAME_PREFIX_BYTES);
    prefix.writeUInt8(0x48, 0);
    prefix.writeUInt32BE(header.byteLength, 1);
    prefix.writeUInt32BE(crc32(header), 5);
    const file = Buffer.concat([SNAPSHOT_FILE_MAGIC, prefix, header]);
    const error = await readAll(file).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SnapshotFileError);
    expect((error as SnapshotFileError).problem).toBe('unsupported');
    expect((error as Error).message).toMatch(/tsraft-snapshot\/2.*newer tsraft-snapshot/);
  });

  it('refuses to finish a file whose data disagrees with the size or checksum it was given', async () => {
    const data = pseudoRandomBytes(100, 7);
    const wrong = writeSnapshotFile({
      header: { ...HEADER, size: 100, sha256: 'a'.repeat(64) },
      chunks: chunked(data, 10),
    });
    await expect(readBytes(wrong)).rejects.toThrow(/SHA-256/);
    const short = writeSnapshotFile({
      header: { ...HEADER, size: 101 },
      chunks: chunked(data, 10),
    });
    await expect(readBytes(short)).rejects.toThrow(/100 bytes, not the 101/);
  });
});

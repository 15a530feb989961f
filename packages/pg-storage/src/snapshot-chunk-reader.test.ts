import { PGlite } from '@electric-sql/pglite';
import { collectChunks, streamOf } from '@tsraft/core/testing';
import { Kysely, PGliteDialect, PostgresDialect } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  startThrowawayPostgres,
  type ThrowawayPostgres,
} from './embedded-postgres.test-helpers.ts';
import { guardPoolErrors } from './pool-errors.ts';
import { PostgresSnapshotStore } from './postgres-snapshot-store.ts';
import { raftTables } from './raft-tables.ts';
import { ChunkReader } from './snapshot-chunk-reader.ts';

// A real Postgres server (embedded-postgres): chunks of UTF-8 text are read as text there, and
// the others as bytea, byte for byte either way.

let postgres: ThrowawayPostgres | undefined;
let db: Kysely<unknown>;
/** The SQL of every query `db` ran since the last reset. */
let queries: string[] = [];

beforeAll(async () => {
  postgres = await startThrowawayPostgres('chunkread');
  const pool = new pg.Pool({ connectionString: postgres.url, max: 2 });
  guardPoolErrors(pool); // connections ended by the server's shutdown in afterAll
  db = new Kysely<unknown>({
    dialect: new PostgresDialect({ pool }),
    log: (event) => {
      queries.push(event.query.sql);
    },
  });
}, 120_000);

afterAll(async () => {
  await db?.destroy();
  await postgres?.stop();
});

const config = { voters: ['a'] };
const encoder = new TextEncoder();

/** Saves `bytes` in chunk rows of `chunkBytes`, reads them back, and returns what was read. */
async function roundTrip(bytes: Uint8Array, chunkBytes: number, index: number) {
  const store = await PostgresSnapshotStore.open({ db, schema: `read${index}`, chunkBytes });
  const saved = await store.save({ index, term: 1, config }, streamOf([bytes]));
  queries = [];
  const read = Buffer.concat(await collectChunks(store.read(saved)));
  const textReads = queries.filter((q) => q.includes('convert_from')).length;
  const byteaReads = queries.filter(
    (q) => q.includes('snapshot_chunk') && !q.includes('convert_from'),
  ).length;
  return { read, textReads, byteaReads };
}

describe('PostgresSnapshotStore reads chunks as text when they are UTF-8', () => {
  it('reads ASCII and multi-byte text as text only, exactly', async () => {
    const line = encoder.encode(`{"name":"Zoë","city":"Tōkyō","note":"naïve café ✓ 𝄞"}\n`);
    const bytes = new Uint8Array(line.byteLength * 40);
    for (let i = 0; i < 40; i++) bytes.set(line, i * line.byteLength);
    // Chunks of eight whole lines: no character is cut.
    const chunkBytes = line.byteLength * 8;
    const { read, textReads, byteaReads } = await roundTrip(bytes, chunkBytes, 1);
    expect(Buffer.compare(read, Buffer.from(bytes))).toBe(0);
    expect(textReads).toBe(5 + 1); // five chunks, and the query that finds no more
    expect(byteaReads).toBe(0);
  });

  it('reads a chunk that ends inside a character, or holds a NUL, as bytea, exactly', async () => {
    const text = 'ab€cdefgh\u0000ijklmnop'; // € is three bytes; chunks of 3 cut it
    const bytes = encoder.encode(text);
    const { read, byteaReads } = await roundTrip(bytes, 3, 2);
    expect(Buffer.compare(read, Buffer.from(bytes))).toBe(0);
    expect(byteaReads).toBeGreaterThan(0);
  });

  it('stops asking for text after a few chunks that are not, and reads binary data exactly', async () => {
    const bytes = new Uint8Array(64 * 256);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7919) % 256;
    const { read, textReads, byteaReads } = await roundTrip(bytes, 256, 3);
    expect(Buffer.compare(read, Buffer.from(bytes))).toBe(0);
    expect(textReads).toBe(3);
    expect(byteaReads).toBe(64 + 1);
  });
});

describe('PostgresSnapshotStore reads a chunk that starts with a byte order mark exactly', () => {
  const BOM = [0xef, 0xbb, 0xbf];
  const cases: [string, number[]][] = [
    ['the first chunk', [...BOM, 0x61, 0x62, 0x63]],
    ['a later chunk', [0x61, 0x62, 0x63, ...BOM, 0x64]],
  ];

  // PGlite decodes text with a default TextDecoder, which drops a leading U+FEFF.
  it.each(cases)('on PGlite: %s', async (_, bytes) => {
    const lite = new Kysely<unknown>({ dialect: new PGliteDialect({ pglite: new PGlite() }) });
    try {
      const store = await PostgresSnapshotStore.open({ db: lite, schema: 'bom', chunkBytes: 3 });
      const saved = await store.save(
        { index: 1, term: 1, config },
        streamOf([new Uint8Array(bytes)]),
      );
      const read = Buffer.concat(await collectChunks(store.read(saved)));
      expect([...read]).toEqual(bytes);
    } finally {
      await lite.destroy();
    }
  });

  it.each(cases)('on a server: %s', async (_, bytes) => {
    const index = 10 + cases.findIndex(([, b]) => b === bytes);
    const { read } = await roundTrip(new Uint8Array(bytes), 3, index);
    expect([...read]).toEqual(bytes);
  });
});

describe('ChunkReader reads a chunk of text in slices', () => {
  /** Saves `bytes` in one chunk row and reads it back through a reader of `sliceBytes`. */
  async function readInSlices(
    on: Kysely<unknown>,
    schema: string,
    bytes: Uint8Array,
    sliceBytes: number,
  ) {
    const store = await PostgresSnapshotStore.open({
      db: on,
      schema,
      chunkBytes: bytes.byteLength,
    });
    await store.save({ index: 1, term: 1, config }, streamOf([bytes]));
    const [record] = await store.list();
    const reader = new ChunkReader(on, raftTables(schema), record?.id ?? -1, sliceBytes);
    queries = [];
    const rows = await reader.read(0);
    const after = await reader.read(1);
    return { rows, after };
  }

  // Characters of one to four bytes, so that every slice size cuts some of them.
  const text = encoder.encode('aë€𝄞'.repeat(20));

  it.each([4, 5, 6, 7, 64])(
    'cuts slices of %i bytes where no character is: exact, as text only',
    async (sliceBytes) => {
      const { rows, after } = await readInSlices(db, `slices${sliceBytes}`, text, sliceBytes);
      expect(rows.map((row) => row.seq)).toEqual([0]);
      expect(Buffer.compare(Buffer.from(rows[0]?.data ?? []), Buffer.from(text))).toBe(0);
      expect(after).toEqual([]);
      expect(
        queries.filter((q) => q.includes('snapshot_chunk') && !q.includes('convert_from')),
      ).toEqual([]);
    },
  );

  it('refuses a slice size under 4 bytes', () => {
    expect(() => new ChunkReader(db, raftTables('public'), 1, 3)).toThrow(RangeError);
  });

  // PGlite decodes text with a default TextDecoder, which drops a U+FEFF at a slice's start.
  it('on PGlite: reads a chunk with a byte order mark at a slice start exactly', async () => {
    const lite = new Kysely<unknown>({ dialect: new PGliteDialect({ pglite: new PGlite() }) });
    try {
      const bytes = new Uint8Array([0x61, 0x62, 0x63, 0x64, 0xef, 0xbb, 0xbf, 0x65, 0x66]);
      const { rows } = await readInSlices(lite, 'bomslice', bytes, 4);
      expect([...(rows[0]?.data ?? [])]).toEqual([...bytes]);
    } finally {
      await lite.destroy();
    }
  });
});

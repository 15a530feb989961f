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

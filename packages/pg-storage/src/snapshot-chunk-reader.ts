import { Buffer } from 'node:buffer';
import { sql } from 'kysely';
import type { AnyKysely } from './any-kysely.ts';
import { fromBytea } from './bytea.ts';
import { toSafeInteger } from './int8.ts';
import type { RaftTables } from './raft-tables.ts';

/** One chunk row of a stored snapshot. */
export interface ChunkRow {
  readonly seq: number;
  readonly data: Uint8Array;
}

/**
 * Chunks that could not be read as text before a {@link ChunkReader} stops trying: the bytes are
 * not UTF-8 text (a state machine with a binary format) rather than text with a character cut
 * at a chunk's end.
 */
const MAX_TEXT_MISSES = 3;

/** `convert_from` raises this for bytes that are not valid UTF-8 (or hold a NUL). */
const INVALID_TEXT = '22021';

/** Bytes of chunk row in each slice of text a {@link ChunkReader} asks for (at most). */
const DEFAULT_SLICE_BYTES = 64 * 1024;

/**
 * Room past a chunk's size when its slices of text are written back as bytes: any text that
 * encodes to more bytes than the chunk then shows as more bytes written, never as a write cut
 * short exactly at the chunk's size (a character is at most four bytes).
 */
const SLACK_BYTES = 4;

/**
 * Reads the chunk rows of one stored snapshot in order, one row per query.
 *
 * A chunk is asked for as text first, in slices of at most {@link DEFAULT_SLICE_BYTES} (each
 * a result row of its own, cut where no character is: before a UTF-8 continuation byte), and
 * the slices are written back as UTF-8 into one buffer of the chunk's size. `bytea` otherwise
 * arrives as hex, twice its size, which Postgres prints and Node parses back (about three
 * times slower); and one text of the whole chunk costs the driver a receive buffer grown by
 * doubling to twice the chunk and a string of its size, per chunk: garbage that makes V8
 * run a full collection every few chunks, where slices stay small and short-lived.
 * Text round-trips byte for byte only when the server and the connection both use UTF-8 (the
 * query checks, and sends the `bytea` otherwise) and the bytes are valid UTF-8 without NUL: a
 * chunk that is not (binary data, or a character cut at the chunk's end) is read again as
 * `bytea`, and after {@link MAX_TEXT_MISSES} such chunks every later one is. A chunk whose
 * slices do not write back to exactly its size (a driver that decodes text with a default
 * `TextDecoder`, as PGlite does, drops a byte order mark at a slice's start) is read again as
 * `bytea` too. The snapshot store checks the size and SHA-256 of what it read either way.
 */
export class ChunkReader {
  readonly #db: AnyKysely;
  readonly #tables: RaftTables;
  readonly #snapshotId: number;
  readonly #sliceBytes: number;
  #textMisses = 0;

  /**
   * `sliceBytes` (at least 4, so that a boundary moved past a character's continuation bytes
   * stays before the next one): for tests, which cut small chunks in several slices.
   */
  constructor(
    db: AnyKysely,
    tables: RaftTables,
    snapshotId: number,
    sliceBytes: number = DEFAULT_SLICE_BYTES,
  ) {
    if (!Number.isSafeInteger(sliceBytes) || sliceBytes < 4) {
      throw new RangeError(`sliceBytes must be an integer of at least 4, got ${sliceBytes}`);
    }
    this.#db = db;
    this.#tables = tables;
    this.#snapshotId = snapshotId;
    this.#sliceBytes = sliceBytes;
  }

  /** The first chunk row from `seq` on (none after the last). */
  async read(seq: number): Promise<ChunkRow[]> {
    if (this.#textMisses < MAX_TEXT_MISSES) {
      try {
        const rows = await this.#readAsText(seq);
        if (rows !== undefined) return rows;
      } catch (error) {
        if ((error as { code?: unknown } | null)?.code !== INVALID_TEXT) throw error;
      }
      this.#textMisses++;
    }
    const { rows } = await sql<{ seq: unknown; data: unknown }>`
      select seq, data from ${this.#tables.snapshotChunk}
      where snapshot_id = ${this.#snapshotId} and seq >= ${seq}
      order by seq limit 1
    `.execute(this.#db);
    return rows.map((row) => ({
      seq: toSafeInteger(row.seq, 'snapshot_chunk.seq'),
      data: fromBytea(row.data, 'snapshot_chunk.data'),
    }));
  }

  /**
   * The chunk row from `seq` on, read in slices of text (or whole as `bytea` when the server or
   * the connection does not use UTF-8); `undefined` when the slices do not write back to the
   * chunk's size.
   */
  async #readAsText(seq: number): Promise<ChunkRow[] | undefined> {
    const t = this.#tables;
    const slice = this.#sliceBytes;
    // A slice boundary at byte b (0-based) moves past the continuation bytes (10xxxxxx) that
    // start there, at most three: a character of valid UTF-8 is never cut. Each boundary reads
    // three bytes of the row (`substring` of a bytea stored out of line without compression
    // fetches only those; `get_byte` would detoast the whole row).
    const boundary = sql`case
      when g = 0 then 0
      when not m.as_text or g * ${slice}::int8 >= m.n then m.n
      else g * ${slice}::int8 + (
        select case
          when get_byte(x, 0) & 192 <> 128 then 0
          when octet_length(x) < 2 then 1
          when get_byte(x, 1) & 192 <> 128 then 1
          when octet_length(x) < 3 then 2
          when get_byte(x, 2) & 192 <> 128 then 2
          else 3 end
        from (select substring(c.data from (g * ${slice}::int8 + 1)::int4 for 3) as x) three)
      end`;
    const { rows } = await sql<{ seq: unknown; size: unknown; text: unknown; data: unknown }>`
      select c.seq, m.n as size,
        case when m.as_text then convert_from(s.piece, 'UTF8') end as text,
        case when m.as_text then null else s.piece end as data
      from (
        select seq, data from ${t.snapshotChunk}
        where snapshot_id = ${this.#snapshotId} and seq >= ${seq}
        order by seq limit 1
      ) c
      cross join lateral (
        select octet_length(c.data) as n,
          current_setting('server_encoding') = 'UTF8'
            and current_setting('client_encoding') = 'UTF8' as as_text
      ) m
      cross join lateral (
        select g, substring(c.data from (at + 1)::int4 for (next - at)::int4) as piece
        from (
          select g, at, lead(at) over (order by g) as next
          from (
            select g, ${boundary} as at
            from generate_series(0,
              case when m.as_text then greatest((m.n + ${slice} - 1) / ${slice}, 1) else 1 end) g
          ) bounds
        ) spans
        where next is not null
      ) s
      order by s.g
    `.execute(this.#db);
    const first = rows[0];
    if (first === undefined) return [];
    const chunkSeq = toSafeInteger(first.seq, 'snapshot_chunk.seq');
    if (typeof first.text !== 'string') {
      return [{ seq: chunkSeq, data: fromBytea(first.data, 'snapshot_chunk.data') }];
    }
    const size = toSafeInteger(first.size, 'snapshot_chunk size');
    const bytes = Buffer.allocUnsafe(size + SLACK_BYTES);
    let written = 0;
    for (const row of rows) {
      if (typeof row.text !== 'string' || written > size) return undefined;
      written += bytes.write(row.text, written, 'utf8');
    }
    if (written !== size) return undefined;
    return [{ seq: chunkSeq, data: fromBytea(bytes.subarray(0, size), 'snapshot_chunk.data') }];
  }
}

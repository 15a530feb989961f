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

/**
 * Reads the chunk rows of one stored snapshot in order, one row per query.
 *
 * A chunk is asked for as text first (`convert_from(data, 'UTF8')`): `bytea` otherwise arrives
 * as hex, twice its size, which Postgres prints and Node parses back (the slowest part of
 * reading a snapshot of UTF-8 text, such as the Postgres state machine's: about three times
 * slower). Text round-trips byte for byte only when the server and the connection both use
 * UTF-8 (the query checks, and sends the `bytea` otherwise), the bytes are valid UTF-8
 * without NUL, and the chunk does not start with a byte order mark (sent as `bytea`): a chunk that is not (binary data, or a character cut at the chunk's end) is read
 * again as `bytea`, and after {@link MAX_TEXT_MISSES} such chunks every later one is. The
 * snapshot store checks the size and SHA-256 of what it read either way.
 */
export class ChunkReader {
  readonly #db: AnyKysely;
  readonly #tables: RaftTables;
  readonly #snapshotId: number;
  #textMisses = 0;

  constructor(db: AnyKysely, tables: RaftTables, snapshotId: number) {
    this.#db = db;
    this.#tables = tables;
    this.#snapshotId = snapshotId;
  }

  /** The first chunk row from `seq` on (none after the last). */
  async read(seq: number): Promise<ChunkRow[]> {
    if (this.#textMisses < MAX_TEXT_MISSES) {
      try {
        return await this.#readAsText(seq);
      } catch (error) {
        if ((error as { code?: unknown } | null)?.code !== INVALID_TEXT) throw error;
        this.#textMisses++;
      }
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

  async #readAsText(seq: number): Promise<ChunkRow[]> {
    // A chunk that starts with a byte order mark (U+FEFF) goes as bytea too: a driver that
    // decodes text with a default TextDecoder (PGlite's) drops it, and the bytes would differ.
    const asText = sql`current_setting('server_encoding') = 'UTF8'
      and current_setting('client_encoding') = 'UTF8'
      and substring(data from 1 for 3) <> decode('efbbbf', 'hex')`;
    const { rows } = await sql<{ seq: unknown; text: unknown; data: unknown }>`
      select seq,
        case when ${asText} then convert_from(data, 'UTF8') end as text,
        case when ${asText} then null else data end as data
      from ${this.#tables.snapshotChunk}
      where snapshot_id = ${this.#snapshotId} and seq >= ${seq}
      order by seq limit 1
    `.execute(this.#db);
    return rows.map((row) => ({
      seq: toSafeInteger(row.seq, 'snapshot_chunk.seq'),
      data:
        typeof row.text === 'string'
          ? fromBytea(Buffer.from(row.text, 'utf8'), 'snapshot_chunk.data')
          : fromBytea(row.data, 'snapshot_chunk.data'),
    }));
  }
}

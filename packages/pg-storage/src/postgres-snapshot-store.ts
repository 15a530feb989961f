import { createHash, type Hash } from 'node:crypto';
import {
  type ClusterConfig,
  CorruptSnapshotError,
  type PartialSnapshot,
  type SnapshotMeta,
  type SnapshotStore,
  StorageError,
  type StoredSnapshot,
} from '@tsraft/core';
import { type RawBuilder, sql } from 'kysely';
import type { AnyKysely } from './any-kysely.ts';
import { assertPosition, toSafeInteger } from './int8.ts';
import { migrateRaftSchema } from './migrations.ts';
import { type RaftTables, raftTables } from './raft-tables.ts';
import { DEFAULT_SCHEMA, validateSchemaName } from './schema-name.ts';
import { CHUNK_DIGEST_BYTES, chunkDigest, chunkDigests } from './snapshot-chunk-digest.ts';
import { ChunkReader } from './snapshot-chunk-reader.ts';
import { runStorageOperation } from './storage-failure.ts';
import { withStoredSource } from './stored-snapshot-source.ts';
import { assertSynchronousCommit } from './synchronous-commit.ts';

/** Options of {@link PostgresSnapshotStore.open}. */
export interface PostgresSnapshotStoreOptions {
  /** Any Kysely instance on Postgres (`pg` Pool or PGlite). The store never closes it. */
  readonly db: AnyKysely;
  /** Schema of the Raft tables, created and migrated by `open`. Default `raft`. */
  readonly schema?: string;
  /**
   * Bytes per stored chunk row. `save` holds about this much of a snapshot in memory at a time,
   * `read` about four times this (two rows in flight, as text and bytes; a chunk that is not
   * UTF-8 text arrives as hex, twice its size). Default 1 MiB.
   */
  readonly chunkBytes?: number;
  /** Accept a database with `synchronous_commit = off` (see `PostgresLogStore`). Default `false`. */
  readonly allowSynchronousCommitOff?: boolean;
  /** Aborts `open` (checked before the migration and the durability check). Default: none. */
  readonly signal?: AbortSignal;
}

/**
 * A snapshot row as operators see it ({@link PostgresSnapshotStore.list}): complete, or still
 * being saved (or left behind by a save that crashed; the next successful save deletes it).
 */
export interface SnapshotRecord {
  /** The row's id: increasing, never reused. */
  readonly id: number;
  readonly index: number;
  readonly term: number;
  readonly config: ClusterConfig;
  /** When its save started. */
  readonly createdAt: Date;
  readonly complete: boolean;
  /** Whether it is being received from a leader (its size and SHA-256 are the announced ones). */
  readonly receiving: boolean;
  /** Size and SHA-256 (hex); `undefined` while a save is still writing it. */
  readonly size: number | undefined;
  readonly sha256: string | undefined;
  /** Bytes of its chunk rows (equal to `size` for a complete snapshot that is intact). */
  readonly storedBytes: number;
}

const DEFAULT_CHUNK_BYTES = 1024 * 1024;
/**
 * A {@link SnapshotStore} in Postgres: metadata in `<schema>.snapshot`, the bytes in
 * `<schema>.snapshot_chunk` rows of `chunkBytes` each.
 *
 * Contract (beyond {@link SnapshotStore}'s):
 * - `save` writes the snapshot's row marked incomplete, then each chunk as it arrives (memory
 *   stays at about `chunkBytes` whatever the snapshot's size, and the database is never held in
 *   one long transaction, so the log store keeps working meanwhile), computing the SHA-256 as it
 *   goes. One final transaction records the size and checksum, marks it complete and deletes
 *   every older snapshot: the new one is durable before the old ones go, and there is never a
 *   moment without a complete snapshot. Incomplete rows are invisible; a failed or aborted save
 *   deletes its row, and one left by a crash is deleted by the next successful save.
 * - A piece received from a leader (`appendPartial`) is stored in one statement, as rows of at
 *   most `chunkBytes`, whatever the leader's piece size.
 * - `read` streams the chunks in order, one row per query (as text when it is UTF-8, see
 *   `ChunkReader`), and verifies the size and the SHA-256 as it goes; bytes that do not match
 *   reject with a `StorageError` saying the snapshot is corrupt (after the last chunk, or as
 *   soon as there are too many bytes). The stream says where the snapshot is stored
 *   (`storedSnapshotSource`), so that a state machine on the same database may restore it there.
 * - Every chunk row is written with its digest (`chunkDigest`: SHA-256 of its `seq` and bytes,
 *   computed here from the bytes sent), which lets the snapshot be checked inside Postgres.
 * - Every database failure rejects with a `StorageError` whose `cause` is the driver's error.
 */
export class PostgresSnapshotStore implements SnapshotStore {
  readonly #db: AnyKysely;
  readonly #tables: RaftTables;
  readonly #chunkBytes: number;
  /**
   * The partial snapshot as this instance last wrote it: its row, chunk rows and bytes held, so
   * that the next piece is one statement instead of a transaction that reads them first; and the
   * SHA-256 of its bytes when they all went through this instance, so that completing it need not
   * read them back (after a restart it does).
   */
  #tail: PartialTail | undefined;

  private constructor(db: AnyKysely, tables: RaftTables, chunkBytes: number) {
    this.#db = db;
    this.#tables = tables;
    this.#chunkBytes = chunkBytes;
  }

  /**
   * Migrates `options.schema` to the current version (see `migrateRaftSchema`), checks the
   * durability setting, and returns a store over it.
   *
   * @throws TypeError for an invalid schema name or chunk size; StorageError when Postgres fails
   * or runs with `synchronous_commit = off` (unless allowed).
   */
  static async open(options: PostgresSnapshotStoreOptions): Promise<PostgresSnapshotStore> {
    const schema = validateSchemaName(options.schema ?? DEFAULT_SCHEMA);
    const chunkBytes = options.chunkBytes ?? DEFAULT_CHUNK_BYTES;
    if (!Number.isSafeInteger(chunkBytes) || chunkBytes < 1 || chunkBytes > 64 * 1024 * 1024) {
      throw new TypeError(`chunkBytes must be an integer from 1 to 64 MiB, got ${chunkBytes}`);
    }
    const { db, signal } = options;
    await migrateRaftSchema({ db, schema, ...(signal ? { signal } : {}) });
    await runStorageOperation('checking synchronous_commit', signal, () =>
      assertSynchronousCommit(db, options.allowSynchronousCommitOff ?? false),
    );
    return new PostgresSnapshotStore(db, raftTables(schema), chunkBytes);
  }

  async latest(options?: { signal?: AbortSignal }): Promise<StoredSnapshot | undefined> {
    return runStorageOperation('reading the latest snapshot', options?.signal, async () => {
      const { rows } = await sql<Record<string, unknown>>`
        select index, term, config, size, sha256 from ${this.#tables.snapshot}
        where complete order by id desc limit 1
      `.execute(this.#db);
      const row = rows[0];
      return row === undefined ? undefined : toStoredSnapshot(row);
    });
  }

  /** Every snapshot row, complete or not, newest first. */
  async list(options?: { signal?: AbortSignal }): Promise<SnapshotRecord[]> {
    return runStorageOperation('listing snapshots', options?.signal, async () => {
      const { rows } = await this.#records(sql`true`).execute(this.#db);
      return rows.map(toSnapshotRecord);
    });
  }

  /** The snapshot row `id`, or `undefined` when there is none. */
  async get(id: number, options?: { signal?: AbortSignal }): Promise<SnapshotRecord | undefined> {
    return runStorageOperation(`reading snapshot ${id}`, options?.signal, async () => {
      const { rows } = await this.#records(sql`s.id = ${id}`).execute(this.#db);
      const row = rows[0];
      return row === undefined ? undefined : toSnapshotRecord(row);
    });
  }

  #records(where: RawBuilder<unknown>): RawBuilder<Record<string, unknown>> {
    const t = this.#tables;
    return sql<Record<string, unknown>>`
      select s.id, s.index, s.term, s.config, s.size, s.sha256, s.created_at, s.complete, s.receiving,
        (select coalesce(sum(octet_length(c.data)), 0) from ${t.snapshotChunk} c
          where c.snapshot_id = s.id) as stored_bytes
      from ${t.snapshot} s where ${where} order by s.id desc
    `;
  }

  async save(
    meta: SnapshotMeta,
    chunks: AsyncIterable<Uint8Array>,
    options?: { signal?: AbortSignal },
  ): Promise<StoredSnapshot> {
    const signal = options?.signal;
    assertPosition(meta.index, 'snapshot index');
    assertPosition(meta.term, 'snapshot term');
    const t = this.#tables;
    const id = await runStorageOperation('starting a snapshot', signal, async () => {
      const { rows } = await sql<{ id: unknown }>`
        insert into ${t.snapshot} (index, term, config)
        values (${meta.index}, ${meta.term}, cast(${JSON.stringify(meta.config)} as jsonb))
        returning id
      `.execute(this.#db);
      return toSafeInteger(rows[0]?.id, 'snapshot.id');
    });
    try {
      const hash = createHash('sha256');
      const buffer = new Uint8Array(this.#chunkBytes);
      let filled = 0;
      let size = 0;
      let seq = 0;
      const flush = async (): Promise<void> => {
        const data = buffer.subarray(0, filled);
        await runStorageOperation('writing a snapshot chunk', signal, () =>
          this.#writeChunk(this.#db, id, seq, data),
        );
        seq++;
        filled = 0;
      };
      for await (const chunk of chunks) {
        signal?.throwIfAborted();
        // Hashed and copied before the producer gets control back: it may reuse its buffer.
        hash.update(chunk);
        size += chunk.byteLength;
        for (let offset = 0; offset < chunk.byteLength; ) {
          const take = Math.min(buffer.byteLength - filled, chunk.byteLength - offset);
          buffer.set(chunk.subarray(offset, offset + take), filled);
          filled += take;
          offset += take;
          if (filled === buffer.byteLength) await flush();
        }
      }
      if (filled > 0) await flush();
      const sha256 = hash.digest('hex');
      await runStorageOperation('completing a snapshot', signal, async () => {
        await this.#db.transaction().execute(async (trx) => {
          await sql`
            update ${t.snapshot} set size = ${size}, sha256 = ${sha256}, complete = true
            where id = ${id}
          `.execute(trx);
          signal?.throwIfAborted();
          // Older snapshots, and rows of saves that failed or crashed; chunks go by cascade.
          // A snapshot being received stays: its transfer resumes where it stopped.
          await sql`delete from ${t.snapshot} where id < ${id} and not receiving`.execute(trx);
          signal?.throwIfAborted();
        });
      });
      return { index: meta.index, term: meta.term, config: meta.config, size, sha256 };
    } catch (error) {
      await sql`delete from ${t.snapshot} where id = ${id} and not complete`
        .execute(this.#db)
        .catch(() => {
          // The database is gone too; the next successful save deletes the row.
        });
      throw error;
    }
  }

  /**
   * See {@link SnapshotStore.read}. The stream also says where the snapshot is stored
   * (`storedSnapshotSource`): a state machine in the same database may restore it from there.
   */
  read(snapshot: StoredSnapshot, options?: { signal?: AbortSignal }): AsyncIterable<Uint8Array> {
    return withStoredSource(this.#read(snapshot, options), {
      db: this.#db,
      tables: this.#tables,
      snapshot,
    });
  }

  async *#read(
    snapshot: StoredSnapshot,
    options?: { signal?: AbortSignal },
  ): AsyncIterable<Uint8Array> {
    const signal = options?.signal;
    const t = this.#tables;
    const name = `snapshot ${snapshot.index}/${snapshot.term}`;
    const found = await runStorageOperation(`reading ${name}`, signal, async () => {
      const { rows } = await sql<Record<string, unknown>>`
        select id, size from ${t.snapshot}
        where complete and index = ${snapshot.index} and term = ${snapshot.term}
          and sha256 = ${snapshot.sha256}
        order by id desc limit 1
      `.execute(this.#db);
      const row = rows[0];
      return row === undefined
        ? undefined
        : {
            id: toSafeInteger(row.id, 'snapshot.id'),
            size: toSafeInteger(row.size, 'snapshot.size'),
          };
    });
    if (found === undefined) {
      throw new StorageError(`${name} is not stored (a newer snapshot replaced it?)`);
    }
    if (found.size !== snapshot.size) {
      throw new StorageError(
        `${name} is recorded with ${found.size} bytes, not the ${snapshot.size} expected`,
      );
    }
    const hash = createHash('sha256');
    const reader = new ChunkReader(this.#db, this.#tables, found.id);
    let size = 0;
    let seq = 0;
    const page = (from: number) => {
      const rows = runStorageOperation(`reading ${name}`, signal, () => reader.read(from));
      rows.catch(() => {}); // awaited below, unless the reader stops first
      return rows;
    };
    for (let next = page(0); ; ) {
      const rows = await next;
      if (rows.length === 0) break;
      // The next page is read while the caller consumes this one.
      next = page(seq + rows.length);
      for (const row of rows) {
        if (row.seq !== seq) {
          throw new CorruptSnapshotError(`${name} is corrupt: chunk ${seq} is missing`);
        }
        const data = row.data;
        size += data.byteLength;
        if (size > found.size) {
          throw new CorruptSnapshotError(
            `${name} is corrupt: more than its recorded ${found.size} bytes are stored`,
          );
        }
        hash.update(data);
        seq++;
        yield data;
      }
    }
    if (size !== found.size) {
      const stillThere = await runStorageOperation(`reading ${name}`, signal, async () => {
        const { rows } = await sql`select 1 from ${t.snapshot} where id = ${found.id}`.execute(
          this.#db,
        );
        return rows.length > 0;
      });
      if (!stillThere) {
        throw new StorageError(
          `${name} was deleted while it was read (a newer snapshot replaced it)`,
        );
      }
      throw new CorruptSnapshotError(
        `${name} is corrupt: ${size} bytes are stored, not the recorded ${found.size}`,
      );
    }
    const sha256 = hash.digest('hex');
    if (sha256 !== snapshot.sha256) {
      throw new CorruptSnapshotError(
        `${name} is corrupt: its bytes have SHA-256 ${sha256}, not the recorded checksum ${snapshot.sha256}`,
      );
    }
  }

  async partial(options?: { signal?: AbortSignal }): Promise<PartialSnapshot | undefined> {
    return runStorageOperation('reading the partial snapshot', options?.signal, async () => {
      const row = await this.#partialRow(this.#db, false);
      return row?.partial;
    });
  }

  async beginPartial(
    snapshot: StoredSnapshot,
    options?: { signal?: AbortSignal },
  ): Promise<PartialSnapshot> {
    assertPosition(snapshot.index, 'snapshot index');
    assertPosition(snapshot.term, 'snapshot term');
    assertPosition(snapshot.size, 'snapshot size');
    const t = this.#tables;
    const id = await runStorageOperation('starting to receive a snapshot', options?.signal, () =>
      this.#db.transaction().execute(async (trx) => {
        await sql`delete from ${t.snapshot} where receiving`.execute(trx);
        const { rows } = await sql<{ id: unknown }>`
          insert into ${t.snapshot} (index, term, config, size, sha256, receiving)
          values (${snapshot.index}, ${snapshot.term}, cast(${JSON.stringify(snapshot.config)} as jsonb),
            ${snapshot.size}, ${snapshot.sha256}, true)
          returning id
        `.execute(trx);
        return toSafeInteger(rows[0]?.id, 'snapshot.id');
      }),
    );
    const { index, term, config, size, sha256 } = snapshot;
    const partial = { index, term, config, size, sha256, received: 0 };
    this.#tail = { id, chunks: 0, partial, hash: createHash('sha256') };
    return partial;
  }

  async appendPartial(
    offset: number,
    data: Uint8Array,
    options?: { signal?: AbortSignal },
  ): Promise<PartialSnapshot> {
    const signal = options?.signal;
    const tail = this.#tail;
    if (tail !== undefined && offset + data.byteLength > tail.partial.size) {
      throw new RangeError(
        `${offset + data.byteLength} bytes exceed the snapshot's ${tail.partial.size}`,
      );
    }
    this.#tail = undefined;
    if (tail !== undefined && tail.partial.received === offset) {
      const appended = await this.#appendToTail(tail, data, signal);
      if (appended !== undefined) {
        this.#tail = appended;
        return appended.partial;
      }
    }
    const t = this.#tables;
    const appended = await runStorageOperation(
      'writing a piece of a received snapshot',
      signal,
      () =>
        this.#db.transaction().execute(async (trx) => {
          const row = await this.#partialRow(trx, true);
          if (row === undefined) throw new RangeError('no partial snapshot to append to');
          const { received, size } = row.partial;
          if (offset !== received) {
            throw new RangeError(`the partial snapshot holds ${received} bytes, not ${offset}`);
          }
          if (offset + data.byteLength > size) {
            throw new RangeError(`${offset + data.byteLength} bytes exceed the snapshot's ${size}`);
          }
          await sql`set local synchronous_commit = off`.execute(trx);
          const { rows, slices, digests } = this.#rowsOf(data, row.chunks);
          await sql`
            insert into ${t.snapshotChunk} (snapshot_id, seq, data, sha256)
            select ${row.id}, ${row.chunks} + g, ${slices}, ${digests}
            from generate_series(0, ${rows - 1}) g
          `.execute(trx);
          return { ...row, rows };
        }),
    );
    const hash =
      tail?.id === appended.id && tail.partial.received === offset ? tail.hash : undefined;
    hash?.update(data);
    this.#tail = {
      id: appended.id,
      chunks: appended.chunks + appended.rows,
      partial: { ...appended.partial, received: offset + data.byteLength },
      hash,
    };
    return this.#tail.partial;
  }

  /**
   * Appends `data` to the partial snapshot this instance wrote last, in ONE statement that
   * commits without waiting for the disk (`set_config(..., true)` lasts until the end of the
   * statement's own transaction). Resolves with the new tail, or `undefined` when the partial
   * snapshot's row or its last chunk is no longer there (the caller then takes the checked path).
   */
  async #appendToTail(
    tail: PartialTail,
    data: Uint8Array,
    signal: AbortSignal | undefined,
  ): Promise<PartialTail | undefined> {
    const { partial } = tail;
    const t = this.#tables;
    // The chunk before is still there: a crash of Postgres loses the last chunks written, never
    // one in the middle, so that this row continues what is held.
    const previous =
      tail.chunks === 0
        ? sql`true`
        : sql`exists (select 1 from ${t.snapshotChunk} c where c.snapshot_id = s.id and c.seq = ${tail.chunks - 1})`;
    const { rows, slices, digests } = this.#rowsOf(data, tail.chunks);
    const result = await runStorageOperation('writing a piece of a received snapshot', signal, () =>
      sql`
        insert into ${t.snapshotChunk} (snapshot_id, seq, data, sha256)
        select s.id, ${tail.chunks} + g, ${slices}, ${digests}
        from ${t.snapshot} s, generate_series(0, ${rows - 1}) g,
          (select set_config('synchronous_commit', 'off', true)) as unflushed
        where s.id = ${tail.id} and s.receiving and ${previous}
      `.execute(this.#db),
    );
    // All the piece's rows or none: they come from one statement.
    if (Number(result.numAffectedRows ?? 0) !== rows) return undefined;
    tail.hash?.update(data);
    return {
      id: tail.id,
      chunks: tail.chunks + rows,
      partial: { ...partial, received: partial.received + data.byteLength },
      hash: tail.hash,
    };
  }

  /**
   * The chunk rows a received piece becomes: one per `chunkBytes` of it (at least one), so that
   * reading them back (the install) holds rows of this store's size whatever the leader's piece
   * size. `slices` is the SQL of row `g`'s bytes, for `generate_series(0, rows - 1) g`, and
   * `digests` of its digest (`chunkDigest`), the first row being chunk `seq`.
   */
  #rowsOf(
    data: Uint8Array,
    seq: number,
  ): { rows: number; slices: RawBuilder<unknown>; digests: RawBuilder<unknown> } {
    const rowBytes = this.#chunkBytes;
    if (data.byteLength <= rowBytes) {
      return { rows: 1, slices: sql`${data}`, digests: sql`${chunkDigest(seq, data)}` };
    }
    const digests = chunkDigests(seq, data, rowBytes);
    return {
      rows: Math.ceil(data.byteLength / rowBytes),
      slices: sql`substring(${data}::bytea from (g * ${rowBytes} + 1)::int4 for ${rowBytes})`,
      digests: sql`substring(${digests}::bytea from (g * ${CHUNK_DIGEST_BYTES} + 1)::int4 for ${CHUNK_DIGEST_BYTES})`,
    };
  }

  async completePartial(options?: { signal?: AbortSignal }): Promise<StoredSnapshot> {
    const signal = options?.signal;
    const t = this.#tables;
    const row = await runStorageOperation('reading the partial snapshot', signal, () =>
      this.#partialRow(this.#db, false),
    );
    if (row === undefined) throw new RangeError('no partial snapshot to complete');
    const { index, term, config, size, sha256, received } = row.partial;
    if (received !== size) {
      throw new RangeError(`the partial snapshot holds ${received} of ${size} bytes`);
    }
    const tail = this.#tail;
    this.#tail = undefined;
    const actual =
      tail?.hash !== undefined && tail.id === row.id && tail.partial.received === size
        ? tail.hash.digest('hex')
        : await this.#hashPartial(row.id, signal);
    if (actual !== sha256) {
      await runStorageOperation('discarding a corrupt received snapshot', signal, () =>
        sql`delete from ${t.snapshot} where id = ${row.id}`.execute(this.#db),
      );
      throw new CorruptSnapshotError(
        `the received snapshot ${index}/${term} has SHA-256 ${actual}, not the announced ${sha256}`,
      );
    }
    await runStorageOperation('completing a received snapshot', signal, () =>
      this.#db.transaction().execute(async (trx) => {
        await sql`
          update ${t.snapshot} set complete = true, receiving = false where id = ${row.id}
        `.execute(trx);
        await sql`delete from ${t.snapshot} where id <> ${row.id} and not receiving`.execute(trx);
      }),
    );
    return { index, term, config, size, sha256 };
  }

  /** SHA-256 of the chunks of partial snapshot `id`, read back (after a restart of this store). */
  async #hashPartial(id: number, signal: AbortSignal | undefined): Promise<string> {
    const hash = createHash('sha256');
    const reader = new ChunkReader(this.#db, this.#tables, id);
    for (let seq = 0; ; ) {
      const rows = await runStorageOperation('reading the partial snapshot', signal, () =>
        reader.read(seq),
      );
      if (rows.length === 0) return hash.digest('hex');
      for (const chunk of rows) hash.update(chunk.data);
      seq += rows.length;
    }
  }

  /**
   * Writes one chunk row. Its commit need not wait for the disk: the transaction that completes
   * the snapshot does, and a commit flushes every earlier one with it; a crash before loses only
   * chunks of a snapshot that is not complete (and a prefix of a partial one survives).
   */
  async #writeChunk(db: AnyKysely, id: number, seq: number, data: Uint8Array): Promise<void> {
    await db.transaction().execute(async (trx) => {
      await sql`set local synchronous_commit = off`.execute(trx);
      await sql`
        insert into ${this.#tables.snapshotChunk} (snapshot_id, seq, data, sha256)
        values (${id}, ${seq}, ${data}, ${chunkDigest(seq, data)})
      `.execute(trx);
    });
  }

  /** The partial snapshot's row (locked with `forUpdate`), the bytes and chunk rows it holds. */
  async #partialRow(
    db: AnyKysely,
    forUpdate: boolean,
  ): Promise<{ id: number; chunks: number; partial: PartialSnapshot } | undefined> {
    const t = this.#tables;
    const found = await sql<Record<string, unknown>>`
      select id, index, term, config, size, sha256 from ${t.snapshot}
      where receiving ${forUpdate ? sql`for update` : sql``}
    `.execute(db);
    const row = found.rows[0];
    if (row === undefined) return undefined;
    const id = toSafeInteger(row.id, 'snapshot.id');
    const held = await sql<{ bytes: unknown; chunks: unknown }>`
      select coalesce(sum(octet_length(data)), 0) as bytes, count(*) as chunks
      from ${t.snapshotChunk} where snapshot_id = ${id}
    `.execute(db);
    return {
      id,
      chunks: toSafeInteger(held.rows[0]?.chunks, 'snapshot chunk count'),
      partial: {
        index: toSafeInteger(row.index, 'snapshot.index'),
        term: toSafeInteger(row.term, 'snapshot.term'),
        config: parseConfig(row.config),
        size: toSafeInteger(row.size, 'snapshot.size'),
        sha256: String(row.sha256),
        received: toSafeInteger(held.rows[0]?.bytes, 'snapshot received bytes'),
      },
    };
  }
}

/** What {@link PostgresSnapshotStore} knows of the partial snapshot it wrote last. */
interface PartialTail {
  readonly id: number;
  /** Chunk rows it holds: the next one's `seq`. */
  readonly chunks: number;
  readonly partial: PartialSnapshot;
  /** SHA-256 of all its bytes, when they were all appended through this instance. */
  readonly hash: Hash | undefined;
}

function toStoredSnapshot(row: Record<string, unknown>): StoredSnapshot {
  return {
    index: toSafeInteger(row.index, 'snapshot.index'),
    term: toSafeInteger(row.term, 'snapshot.term'),
    config: parseConfig(row.config),
    size: toSafeInteger(row.size, 'snapshot.size'),
    sha256: String(row.sha256),
  };
}

function toSnapshotRecord(row: Record<string, unknown>): SnapshotRecord {
  const complete = row.complete === true;
  const createdAt =
    row.created_at instanceof Date ? row.created_at : new Date(String(row.created_at));
  return {
    id: toSafeInteger(row.id, 'snapshot.id'),
    index: toSafeInteger(row.index, 'snapshot.index'),
    term: toSafeInteger(row.term, 'snapshot.term'),
    config: parseConfig(row.config),
    createdAt,
    complete,
    receiving: row.receiving === true,
    size: row.size === null ? undefined : toSafeInteger(row.size, 'snapshot.size'),
    sha256: row.sha256 === null ? undefined : String(row.sha256),
    storedBytes: toSafeInteger(row.stored_bytes, 'snapshot stored bytes'),
  };
}

/** `jsonb` comes back parsed from `pg` and PGlite, or as text when a type parser says so. */
function parseConfig(value: unknown): ClusterConfig {
  const parsed: unknown = typeof value === 'string' ? JSON.parse(value) : value;
  if (
    typeof parsed !== 'object' ||
    parsed === null ||
    !Array.isArray((parsed as { voters?: unknown }).voters)
  ) {
    throw new StorageError(`snapshot.config is not a cluster configuration: ${String(value)}`);
  }
  return parsed as ClusterConfig;
}

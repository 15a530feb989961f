import { createHash } from 'node:crypto';
import type { LogPosition, SnapshotMeta, StoredSnapshot } from '@tsraft/core';
import { sql } from 'kysely';
import type { AnyKysely } from './any-kysely.ts';
import { toSafeInteger } from './int8.ts';
import { migrateRaftSchema } from './migrations.ts';
import { type RaftTables, raftTables } from './raft-tables.ts';
import { assertReplicable, replicatedTables } from './replicated-tables.ts';
import { DEFAULT_SCHEMA, validateSchemaName } from './schema-name.ts';
import { exportStateSnapshot } from './state-snapshot-export.ts';
import { CorruptSnapshotError } from './state-snapshot-format.ts';
import { type RestoreScope, restoreStateIn } from './state-snapshot-restore.ts';
import { runStorageOperation } from './storage-failure.ts';

/**
 * The position of the first snapshot of a cluster seeded from existing tables: index 1, term 1.
 * Every node of the new cluster starts from it, so their first election is of term 2 and the log
 * goes on at index 2.
 */
export const SEED_POSITION: LogPosition = { index: 1, term: 1 };

/** Bytes per stored chunk row of a restored snapshot. */
const CHUNK_BYTES = 1024 * 1024;

/** What a node's database holds of a Raft node, as {@link readNodeState} tells it. */
export interface NodeState {
  /** Term and vote of its hard state; its commit index. */
  readonly term: number;
  readonly votedFor: string | null;
  readonly commitIndex: number;
  /** The position its log starts after, and its last index. */
  readonly logStart: LogPosition;
  readonly lastIndex: number;
  /** The state machine's applied position. */
  readonly applied: LogPosition;
  /** Complete snapshots stored. */
  readonly snapshots: number;
  /** Whether it holds nothing of a Raft node (a new node). */
  readonly empty: boolean;
}

/**
 * A node's database holds Raft state that a restore or a seed would overwrite or contradict
 * (`state` says what). Nothing was changed.
 */
export class NodeNotEmptyError extends Error {
  override name = 'NodeNotEmptyError';
  readonly state: NodeState;

  constructor(message: string, state: NodeState) {
    super(message);
    this.state = state;
  }
}

/** Options of {@link restoreNode}. */
export interface RestoreNodeOptions {
  /** The node's database (a `pg` Pool or PGlite). The node must be stopped. */
  readonly db: AnyKysely;
  /** The Raft schema. Default `raft`. */
  readonly schema?: string;
  /** The replicated tables, as the node's state machine declares them (`tables`). */
  readonly tables: readonly string[];
  /** Index, term and configuration of the snapshot. */
  readonly snapshot: SnapshotMeta;
  /** The snapshot's bytes (`tsraft-pg-state/1`), as a snapshot store keeps them. */
  readonly chunks: AsyncIterable<Uint8Array>;
  /**
   * Replace the state of a node that holds some (a log, a vote, applied entries, snapshots).
   * Default false: such a node is refused with {@link NodeNotEmptyError}.
   */
  readonly replace?: boolean;
  /** Rows per insert statement. Default 1,000. */
  readonly pageRows?: number;
  readonly signal?: AbortSignal;
}

/**
 * Makes a stopped node's database start from a snapshot, all or nothing, in ONE transaction: the
 * replicated tables, the client sessions and the applied position become the snapshot's; the
 * snapshot becomes the node's only stored snapshot; the log is emptied and starts after the
 * snapshot; the hard state keeps its term (raised to the snapshot's if lower; the vote goes with
 * a raised term) and commits the snapshot's index. A failure at any point (a damaged snapshot, a
 * row that does not fit its table, the database going away) changes nothing, except that the
 * Raft schema is created first if it was missing. Used to seed a new cluster and to restore a
 * whole cluster from a backup (`tsraft-snapshot restore`).
 *
 * @throws NodeNotEmptyError when the node holds Raft state and `replace` is not set;
 * CorruptSnapshotError for a damaged or foreign snapshot; StorageError when Postgres fails.
 */
export async function restoreNode(options: RestoreNodeOptions): Promise<StoredSnapshot> {
  const schema = validateSchemaName(options.schema ?? DEFAULT_SCHEMA);
  const { db, signal, snapshot } = options;
  await migrateRaftSchema({ db, schema, ...(signal === undefined ? {} : { signal }) });
  const t = raftTables(schema);
  const scope: RestoreScope = {
    db,
    tables: t,
    appTables: replicatedTables(options.tables),
    pageRows: options.pageRows ?? 1000,
  };
  const position = { index: snapshot.index, term: snapshot.term };
  try {
    return await runStorageOperation('restoring a node from a snapshot', signal, () =>
      db.transaction().execute(async (trx) => {
        await assertReplicable(trx, scope.appTables);
        const state = await nodeStateIn(trx, t, true);
        if (!state.empty && options.replace !== true) {
          throw new NodeNotEmptyError(
            `the node holds Raft state (${describeState(state)}): restoring would replace it`,
            state,
          );
        }
        const { rows } = await sql<{ id: unknown }>`
          insert into ${t.snapshot} (index, term, config)
          values (${snapshot.index}, ${snapshot.term}, cast(${JSON.stringify(snapshot.config)} as jsonb))
          returning id
        `.execute(trx);
        const id = toSafeInteger(rows[0]?.id, 'snapshot.id');
        const recorder = new ChunkRecorder(trx, t, id);
        await restoreStateIn(trx, scope, position, recorder.record(options.chunks), signal);
        const { size, sha256 } = await recorder.finish();
        await sql`
          update ${t.snapshot} set size = ${size}, sha256 = ${sha256}, complete = true
          where id = ${id}
        `.execute(trx);
        await sql`delete from ${t.snapshot} where id <> ${id}`.execute(trx);
        await sql`delete from ${t.logEntry}`.execute(trx);
        await sql`
          update ${t.logMeta} set snapshot_index = ${snapshot.index}, snapshot_term = ${snapshot.term}
        `.execute(trx);
        await sql`
          update ${t.hardState} set
            voted_for = case when term < ${snapshot.term} then null else voted_for end,
            term = greatest(term, ${snapshot.term}),
            commit_index = ${snapshot.index}
        `.execute(trx);
        return { ...snapshot, size, sha256 };
      }),
    );
  } catch (error) {
    const cause = (error as { cause?: unknown } | null)?.cause;
    if (cause instanceof CorruptSnapshotError || cause instanceof NodeNotEmptyError) throw cause;
    throw error;
  }
}

/** Options of {@link seedSnapshot}. */
export interface SeedSnapshotOptions {
  /** The database of the node whose tables are the truth. */
  readonly db: AnyKysely;
  /** The Raft schema. Default `raft`. */
  readonly schema?: string;
  /** The replicated tables, as the state machine declares them. */
  readonly tables: readonly string[];
  /** Connections that read the tables on a server (see `exportConnections`). Default 1. */
  readonly exportConnections?: number;
  readonly signal?: AbortSignal;
}

/**
 * The first snapshot of a new cluster, made from a node's existing tables as they are, at
 * {@link SEED_POSITION}, with no client sessions: one consistent read of the tables, streamed.
 * Nothing is changed; restore the result into this node and every other with
 * {@link restoreNode} (`tsraft-snapshot seed` does both for this node).
 *
 * @throws NodeNotEmptyError when the node holds Raft state (it is not a new node: seeding it
 * would contradict its log); StorageError when Postgres fails or a table is missing.
 */
export async function seedSnapshot(
  options: SeedSnapshotOptions,
): Promise<{ position: LogPosition; chunks: AsyncIterable<Uint8Array> }> {
  const schema = validateSchemaName(options.schema ?? DEFAULT_SCHEMA);
  const { db, signal } = options;
  await migrateRaftSchema({ db, schema, ...(signal === undefined ? {} : { signal }) });
  const t = raftTables(schema);
  const appTables = replicatedTables(options.tables);
  const state = await runStorageOperation('checking the node before seeding', signal, async () => {
    await assertReplicable(db, appTables);
    return nodeStateIn(db, t, false);
  });
  if (!state.empty) {
    throw new NodeNotEmptyError(
      `the node holds Raft state (${describeState(state)}): it is not a new node, and seeding would contradict its log`,
      state,
    );
  }
  return exportStateSnapshot(
    {
      db,
      tables: t,
      schema,
      appTables,
      pageRows: 1000,
      exportConnections: options.exportConnections ?? 1,
    },
    { seedPosition: SEED_POSITION, ...(signal === undefined ? {} : { signal }) },
  );
}

/**
 * What the node's database holds of a Raft node, read without changing anything (the Raft schema
 * must exist: see `raftSchemaStatus`).
 */
export function readNodeState(options: {
  db: AnyKysely;
  schema?: string;
  signal?: AbortSignal;
}): Promise<NodeState> {
  const schema = validateSchemaName(options.schema ?? DEFAULT_SCHEMA);
  return runStorageOperation('reading the node state', options.signal, () =>
    nodeStateIn(options.db, raftTables(schema), false),
  );
}

async function nodeStateIn(db: AnyKysely, t: RaftTables, lock: boolean): Promise<NodeState> {
  const { rows } = await sql<Record<string, unknown>>`
    select h.term, h.voted_for, h.commit_index, m.snapshot_index, m.snapshot_term,
      a.index as applied_index, a.term as applied_term,
      (select max(index) from ${t.logEntry}) as last_index,
      (select count(*) from ${t.snapshot} where complete) as snapshots
    from ${t.hardState} h, ${t.logMeta} m, ${t.appliedState} a
    ${lock ? sql`for update of h, m, a` : sql``}
  `.execute(db);
  const row = rows[0];
  if (row === undefined)
    throw new Error('the Raft schema lacks its hard state, log or applied rows');
  const logStart = {
    index: toSafeInteger(row.snapshot_index, 'log_meta.snapshot_index'),
    term: toSafeInteger(row.snapshot_term, 'log_meta.snapshot_term'),
  };
  const state = {
    term: toSafeInteger(row.term, 'hard_state.term'),
    votedFor: row.voted_for === null ? null : String(row.voted_for),
    commitIndex: toSafeInteger(row.commit_index, 'hard_state.commit_index'),
    logStart,
    lastIndex:
      row.last_index === null ? logStart.index : toSafeInteger(row.last_index, 'log_entry.index'),
    applied: {
      index: toSafeInteger(row.applied_index, 'applied_state.index'),
      term: toSafeInteger(row.applied_term, 'applied_state.term'),
    },
    snapshots: toSafeInteger(row.snapshots, 'snapshot count'),
  };
  return {
    ...state,
    empty:
      state.term === 0 &&
      state.votedFor === null &&
      state.lastIndex === 0 &&
      state.applied.index === 0 &&
      state.snapshots === 0,
  };
}

function describeState(state: NodeState): string {
  return `term ${state.term}, log up to ${state.lastIndex}, applied ${state.applied.index}, ${state.snapshots} snapshot(s)`;
}

/**
 * Writes the bytes passing through {@link record} as the chunk rows of snapshot `id` (1 MiB each)
 * inside the caller's transaction, and computes their size and SHA-256.
 */
class ChunkRecorder {
  readonly #trx: AnyKysely;
  readonly #tables: RaftTables;
  readonly #id: number;
  readonly #hash = createHash('sha256');
  readonly #buffer = new Uint8Array(CHUNK_BYTES);
  #filled = 0;
  #size = 0;
  #seq = 0;

  constructor(trx: AnyKysely, tables: RaftTables, id: number) {
    this.#trx = trx;
    this.#tables = tables;
    this.#id = id;
  }

  async *record(chunks: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
    for await (const chunk of chunks) {
      this.#hash.update(chunk);
      this.#size += chunk.byteLength;
      for (let offset = 0; offset < chunk.byteLength; ) {
        const take = Math.min(CHUNK_BYTES - this.#filled, chunk.byteLength - offset);
        this.#buffer.set(chunk.subarray(offset, offset + take), this.#filled);
        this.#filled += take;
        offset += take;
        if (this.#filled === CHUNK_BYTES) await this.#flush();
      }
      yield chunk;
    }
  }

  async finish(): Promise<{ size: number; sha256: string }> {
    if (this.#filled > 0) await this.#flush();
    return { size: this.#size, sha256: this.#hash.digest('hex') };
  }

  async #flush(): Promise<void> {
    const data = this.#buffer.slice(0, this.#filled);
    this.#filled = 0;
    await sql`
      insert into ${this.#tables.snapshotChunk} (snapshot_id, seq, data)
      values (${this.#id}, ${this.#seq++}, ${data})
    `.execute(this.#trx);
  }
}

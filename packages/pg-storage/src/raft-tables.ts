import { type RawBuilder, sql } from 'kysely';

/** Names of the tables the migrations create in the store's schema. */
export const TABLE_NAMES = {
  logEntry: 'log_entry',
  logMeta: 'log_meta',
  hardState: 'hard_state',
  snapshot: 'snapshot',
  snapshotChunk: 'snapshot_chunk',
  appliedState: 'applied_state',
  clientSession: 'client_session',
  clientResult: 'client_result',
  restoreStaging: 'restore_staging',
  migration: 'tsraft_migration',
  migrationLock: 'tsraft_migration_lock',
} as const;

/** The store's tables as schema-qualified SQL identifiers, for raw `sql` queries. */
export type RaftTables = { readonly [K in keyof typeof TABLE_NAMES]: RawBuilder<unknown> };

/** The tables of `schema` (already validated by `validateSchemaName`). */
export function raftTables(schema: string): RaftTables {
  const qualified = (table: string): RawBuilder<unknown> => sql.id(schema, table);
  return {
    logEntry: qualified(TABLE_NAMES.logEntry),
    logMeta: qualified(TABLE_NAMES.logMeta),
    hardState: qualified(TABLE_NAMES.hardState),
    snapshot: qualified(TABLE_NAMES.snapshot),
    snapshotChunk: qualified(TABLE_NAMES.snapshotChunk),
    appliedState: qualified(TABLE_NAMES.appliedState),
    clientSession: qualified(TABLE_NAMES.clientSession),
    clientResult: qualified(TABLE_NAMES.clientResult),
    restoreStaging: qualified(TABLE_NAMES.restoreStaging),
    migration: qualified(TABLE_NAMES.migration),
    migrationLock: qualified(TABLE_NAMES.migrationLock),
  };
}

/** Names of the functions the migrations create in the store's schema (its common writes). */
const FUNCTION_NAMES = {
  append: 'tsraft_append',
  finishBatch: 'tsraft_finish_batch',
} as const;

/** The store's functions as schema-qualified SQL identifiers. */
export type RaftFunctions = {
  readonly [K in keyof typeof FUNCTION_NAMES]: RawBuilder<unknown>;
};

/** The functions of `schema` (already validated by `validateSchemaName`). */
export function raftFunctions(schema: string): RaftFunctions {
  return {
    append: sql.id(schema, FUNCTION_NAMES.append),
    finishBatch: sql.id(schema, FUNCTION_NAMES.finishBatch),
  };
}

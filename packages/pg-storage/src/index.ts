/**
 * @packageDocumentation
 * tsraft's storage in Postgres, through Kysely: the Raft log and hard state
 * ({@link PostgresLogStore}) and snapshots ({@link PostgresSnapshotStore}) in a schema of their
 * own (default `raft`), migrated by {@link migrateRaftSchema}. Works on a `pg` Pool
 * (`PostgresDialect`) and on PGlite (`PGliteDialect`).
 */
export { type MigrateRaftSchemaOptions, migrateRaftSchema } from './migrations.ts';
export { PostgresLogStore, type PostgresLogStoreOptions } from './postgres-log-store.ts';
export {
  PostgresSnapshotStore,
  type PostgresSnapshotStoreOptions,
} from './postgres-snapshot-store.ts';
export { DEFAULT_SCHEMA } from './schema-name.ts';

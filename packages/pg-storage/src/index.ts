/**
 * @packageDocumentation
 * tsraft's storage in Postgres, through Kysely: the Raft log and hard state
 * ({@link PostgresLogStore}) and snapshots ({@link PostgresSnapshotStore}) in a schema of their
 * own (default `raft`), migrated by {@link migrateRaftSchema}; and the typed state machine whose
 * state is the application's tables ({@link createPostgresStateMachine}, {@link defineCommand}).
 * Works on a `pg` Pool (`PostgresDialect`) and on PGlite (`PGliteDialect`).
 */
export type { SessionRetention } from './batch-sessions.ts';
export {
  type AnyCommandDefinition,
  type BatchedCommand,
  type CommandContext,
  type CommandDefinition,
  type CommandInput,
  type CommandMap,
  type CommandName,
  type CommandOf,
  type CommandResultFor,
  defineCommand,
  type ResultMap,
  type ResultOf,
} from './command-definition.ts';
export { CommandRejection, domainError } from './command-rejection.ts';
export { commandSchema } from './command-schema.ts';
export { CommandValidationError } from './command-validation-error.ts';
export {
  type MigrateRaftSchemaOptions,
  migrateRaftSchema,
  type RaftSchemaStatus,
  raftSchemaStatus,
} from './migrations.ts';
export {
  NodeNotEmptyError,
  type NodeState,
  type RestoreNodeOptions,
  readNodeState,
  restoreNode,
  SEED_POSITION,
  type SeedSnapshotOptions,
  seedSnapshot,
} from './node-snapshots.ts';
export { type ErrorEmitter, guardPoolErrors, type PoolWithClientEvents } from './pool-errors.ts';
export { PostgresLogStore, type PostgresLogStoreOptions } from './postgres-log-store.ts';
export {
  PostgresSnapshotStore,
  type PostgresSnapshotStoreOptions,
  type SnapshotRecord,
} from './postgres-snapshot-store.ts';
export {
  createPostgresStateMachine,
  ExistingRowsError,
  PostgresStateMachine,
  type PostgresStateMachineOptions,
  type SavepointMode,
} from './postgres-state-machine.ts';
export { DEFAULT_SCHEMA } from './schema-name.ts';
export {
  CorruptSnapshotError,
  STATE_SNAPSHOT_FORMAT,
  type StateSnapshotHeader,
} from './state-snapshot-format.ts';
export {
  isStateSnapshot,
  readStateSnapshotHeader,
  type StateSnapshotSummary,
  summarizeStateSnapshot,
} from './state-snapshot-summary.ts';

/**
 * @packageDocumentation
 * The Raft log, hard state, snapshots and a typed Kysely state machine in Postgres. Its first code comes with the pg-storage issue.
 */
export {};

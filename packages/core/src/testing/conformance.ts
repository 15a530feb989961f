/**
 * The conformance suites of tsraft (they declare Vitest tests, so they need Vitest): every log
 * store and snapshot store runs the storage suites; every state machine with client sessions
 * runs the client session suite.
 */
export {
  type ClientSessionFixture,
  describeClientSessionConformance,
  type SessionAnswer,
  type SessionCommand,
} from './client-session-conformance.ts';
export {
  describeLogStoreConformance,
  describeSnapshotStoreConformance,
  type LogStoreConformanceOptions,
  type LogStoreFixture,
  type SnapshotStoreConformanceOptions,
  type SnapshotStoreFixture,
} from './storage-conformance.ts';

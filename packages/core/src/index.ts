/**
 * @packageDocumentation
 * The consensus core of tsraft: the pure Raft engine, the node runtime that drives it, and the
 * contracts that storage, transport and state machine plug-ins fulfil. No runtime dependencies.
 * The test kit lives in `@tsraft/core/testing`.
 */
export {
  ClientSessions,
  type ClientSessionsJson,
  type ClientSessionsOptions,
  type SessionCheck,
  type SessionKey,
  sessionConflictResult,
} from './client-sessions.ts';
export { commandDigest } from './command-digest.ts';
export {
  type ClusterConfig,
  decodeConfig,
  encodeConfig,
  isJoint,
  isVoter,
  members,
  validateConfig,
} from './configuration.ts';
export {
  DEFAULT_ENGINE_TUNING,
  type EngineOptions,
  type EngineTuning,
  type FollowerLostEntries,
} from './engine/engine-options.ts';
export type { ChangeMode, MembershipChange } from './engine/membership-change.ts';
export {
  type ConfigChangeResult,
  type EngineStatus,
  type PeerProgress,
  type ProposeResult,
  RaftEngine,
  type TransferResult,
} from './engine/raft-engine.ts';
export type { ReadResult, Ready, Role, SoftState } from './engine/ready.ts';
export {
  BackpressureError,
  CommandError,
  ConfigChangeInProgressError,
  CorruptSnapshotError,
  InvariantViolationError,
  LeadershipTransferError,
  MembershipChangeTimeoutError,
  NodeClosedError,
  NodeRecoveringError,
  NotLeaderError,
  PeerAuthenticationError,
  ProposalDroppedError,
  RaftError,
  ReadUnavailableError,
  SnapshotExportRefusedError,
  StorageError,
} from './errors.ts';
export { type HardState, INITIAL_HARD_STATE } from './hard-state.ts';
export {
  type EntryType,
  entrySize,
  type LogEntry,
  type LogPosition,
  type NodeId,
} from './log-entry.ts';
export type { LogStore, LogStoreState, LogWrite } from './log-store.ts';
export { type LogFn, type Logger, noopLogger } from './logger.ts';
export type * from './message.ts';
export { type NodeIdentity, validateNodeIdentity } from './node-identity.ts';
export { type RandomSource, randomInt, seededRandom } from './random.ts';
export * from './runtime/index.ts';
export type { PartialSnapshot, SnapshotStore, StoredSnapshot } from './snapshot-store.ts';
export type {
  AppliedEntry,
  ClientSession,
  CommandResult,
  StateMachine,
} from './state-machine.ts';
export type {
  PeerHandler,
  PeerIdentity,
  PeerRequest,
  PeerResponse,
  SnapshotChunk,
  Transport,
} from './transport.ts';

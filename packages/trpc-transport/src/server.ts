/**
 * @packageDocumentation
 * `@tsraft/trpc-transport/server`: the plugin for your tRPC app's server: replicated mutations
 * (exactly-once with the client's stamp), linearizable queries, an admin router, and the mapping
 * of a node's errors to tRPC errors.
 */
export {
  createRaftHttpServer,
  DEFAULT_APP_MAX_BODY_BYTES,
  type RaftHttpServer,
  type RaftHttpServerOptions,
} from './raft-http-server.ts';
export {
  createRaftProcedures,
  DEFAULT_PROPOSE_TIMEOUT_MS,
  type RaftAdminMembershipInput,
  type RaftAdminOptions,
  type RaftAdminRecord,
  type RaftAdminRouter,
  type RaftCommandMutation,
  type RaftErrorShape,
  type RaftLinearizableBuilder,
  type RaftMutation,
  type RaftMutationContext,
  type RaftNodeSource,
  type RaftProcedures,
  type RaftProceduresOptions,
  type RaftReplicatedBuilder,
  type RaftResultFor,
  type RaftResultMap,
} from './raft-procedures.ts';
export { RAFT_SESSION_FIELD, type RaftSessionInput } from './raft-session-field.ts';
export {
  type RaftErrorData,
  type RaftErrorKind,
  RaftTrpcError,
  toRaftTrpcError,
} from './raft-trpc-error.ts';

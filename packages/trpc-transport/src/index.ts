/**
 * @packageDocumentation
 * Raft over tRPC: the peer transport that carries Raft's requests between nodes over HTTP(S),
 * authenticated with the cluster secret; and the plugin that gives a tRPC app replicated
 * mutations (exactly-once with the client's session link), linearizable queries and an admin
 * router.
 */
export type { PeerFetch } from './peer-client.ts';
export {
  createTrpcPeerServer,
  DEFAULT_BASE_PATH,
  DEFAULT_MAX_BODY_BYTES,
  type ListenAddress,
  TrpcPeerServer,
  type TrpcPeerServerOptions,
} from './peer-server.ts';
export {
  isRetryable,
  type RaftCallFailure,
  raftCallFailure,
  raftErrorOf,
} from './raft-client-error.ts';
export { type RaftFailoverLinkOptions, raftFailoverLink } from './raft-failover-link.ts';
export {
  createRaftProcedures,
  DEFAULT_PROPOSE_TIMEOUT_MS,
  type RaftAdminOptions,
  type RaftAdminRecord,
  type RaftAdminRouter,
  type RaftCommandMutation,
  type RaftErrorShape,
  type RaftLinearizableBuilder,
  type RaftMutation,
  type RaftMutationContext,
  type RaftProcedures,
  type RaftProceduresOptions,
  type RaftReplicatedBuilder,
  type RaftResultFor,
  type RaftResultMap,
} from './raft-procedures.ts';
export { RAFT_SESSION_FIELD, type RaftSessionInput } from './raft-session-input.ts';
export { type RaftSessionLinkOptions, raftSessionLink } from './raft-session-link.ts';
export {
  type RaftErrorData,
  type RaftErrorKind,
  RaftTrpcError,
  toRaftTrpcError,
} from './raft-trpc-error.ts';
export { createTrpcTransport, TrpcTransport, type TrpcTransportOptions } from './trpc-transport.ts';

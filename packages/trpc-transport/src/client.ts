/**
 * @packageDocumentation
 * `@tsraft/trpc-transport/client`: the links of a tRPC client of a tsraft cluster (exactly-once
 * retries with a client session, failover between nodes) and the reading of `error.data.raft`.
 * Imports nothing of Node.js: a browser bundle can use it.
 */
export {
  isRetryable,
  type RaftCallFailure,
  raftCallFailure,
  raftErrorOf,
} from './raft-client-error.ts';
export { type RaftFailoverLinkOptions, raftFailoverLink } from './raft-failover-link.ts';
export { RAFT_SESSION_FIELD, type RaftSessionInput } from './raft-session-field.ts';
export { type RaftSessionLinkOptions, raftSessionLink } from './raft-session-link.ts';
export type { RaftErrorData, RaftErrorKind } from './raft-trpc-error.ts';

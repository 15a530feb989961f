export { type CancelTimer, type Clock, realClock } from './clock.ts';
export { type CommandCodec, type CommandEnvelope, jsonCodec } from './command-codec.ts';
export type { IdentityRefusal } from './identity-gate.ts';
export type { TransferLeadershipOptions } from './leadership-transfers.ts';
export type {
  AddLearnerOptions,
  ChangeMembershipOptions,
  MembershipCallOptions,
} from './membership-changes.ts';
export {
  type CloseOptions,
  type ProposedCommand,
  type ProposeOptions,
  RaftNode,
  type ReadConsistency,
  type ReadOptions,
} from './raft-node.ts';
export type { RaftNodeEventName, RaftNodeEvents } from './raft-node-events.ts';
export type { RaftNodeOptions } from './raft-node-options.ts';
export type { RaftNodeStatus, RefusedProgress } from './raft-node-status.ts';
export { RaftSupervisor } from './raft-supervisor.ts';
export type { RaftSupervisorEventName, RaftSupervisorEvents } from './raft-supervisor-events.ts';
export type {
  RaftSupervisorOpenContext,
  RaftSupervisorOptions,
  SupervisedNodeOptions,
} from './raft-supervisor-options.ts';
export type { RaftSupervisorStatus } from './raft-supervisor-status.ts';

export { type CommandCodec, type CommandEnvelope, jsonCodec } from './command-codec.ts';
export {
  type ProposeOptions,
  RaftNode,
  type ReadConsistency,
  type ReadOptions,
} from './raft-node.ts';
export type { RaftNodeEventName, RaftNodeEvents } from './raft-node-events.ts';
export type { RaftNodeOptions } from './raft-node-options.ts';
export type { RaftNodeStatus } from './raft-node-status.ts';

import type { NodeId } from '../log-entry.ts';
import type { RaftNodeStatus } from './raft-node-status.ts';

/**
 * What {@link RaftSupervisor.status} reports:
 * - `running`: a node runs; the rest is its {@link RaftNodeStatus};
 * - `recovering`: incarnation `incarnation`'s node stopped on `fatal`, and restart try `attempt`
 *   is waiting or under way (`lastError`: the latest failure, the fatal error or a failed
 *   restart's);
 * - `closed`: the supervisor is closed.
 */
export type RaftSupervisorStatus =
  | (RaftNodeStatus & { readonly state: 'running'; readonly incarnation: number })
  | {
      readonly state: 'recovering';
      readonly id: NodeId;
      readonly incarnation: number;
      readonly attempt: number;
      readonly fatal: Error;
      readonly lastError: Error;
      /** Wall time (`Date.now()` unless the supervisor was given a clock) when the node stopped. */
      readonly since: number;
    }
  | { readonly state: 'closed'; readonly id: NodeId };

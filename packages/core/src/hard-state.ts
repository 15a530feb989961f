import type { NodeId } from './log-entry.ts';

/**
 * The state Raft requires to be durable before a node answers any RPC (Raft paper, Figure 2,
 * "persistent state on all servers"): the current term and the vote cast in it. The commit index
 * is persisted too, as a hint that lets a restarted node apply sooner; it is never trusted beyond
 * what the log holds.
 */
export interface HardState {
  /** Latest term this node has seen; only ever increases. */
  readonly term: number;
  /** Candidate that received this node's vote in `term`, or `null`. At most one per term. */
  readonly votedFor: NodeId | null;
  /** Highest index known committed when this state was saved. */
  readonly commitIndex: number;
}

export const INITIAL_HARD_STATE: HardState = Object.freeze({
  term: 0,
  votedFor: null,
  commitIndex: 0,
});

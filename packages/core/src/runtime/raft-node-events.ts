import type { Role } from '../engine/ready.ts';
import type { NodeId } from '../log-entry.ts';

/** The events a {@link RaftNode} emits, with their arguments. */
export interface RaftNodeEvents {
  /** The leader this node knows of changed (`null`: none known, e.g. during an election). */
  'leader-change': [event: { readonly leaderId: NodeId | null; readonly term: number }];
  /** This node's role changed. */
  'role-change': [event: { readonly role: Role; readonly previous: Role; readonly term: number }];
  /** This node learned of a higher commit index. */
  commit: [event: { readonly commitIndex: number }];
  /** The state machine applied entries up to `appliedIndex`. */
  apply: [event: { readonly appliedIndex: number }];
  /** The node stopped on a fatal error (storage failure, broken invariant). Emitted once. */
  fatal: [event: { readonly error: Error }];
}

export type RaftNodeEventName = keyof RaftNodeEvents;

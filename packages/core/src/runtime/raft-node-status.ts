import type { ClusterConfig } from '../configuration.ts';
import type { ProgressState } from '../engine/progress.ts';
import type { Role } from '../engine/ready.ts';
import type { NodeId } from '../log-entry.ts';

/** What {@link RaftNode.status} reports: the engine's view plus the apply loop's. */
export interface RaftNodeStatus {
  readonly id: NodeId;
  readonly role: Role;
  readonly term: number;
  readonly leaderId: NodeId | null;
  readonly commitIndex: number;
  /** Highest index the state machine has applied. */
  readonly appliedIndex: number;
  /** Index of the latest snapshot this node took or installed (where its log started, at start). */
  readonly snapshotIndex: number;
  /**
   * Bytes (`entrySize`) of the entries applied since that snapshot (entries applied while it was
   * being taken are not counted): what a snapshot now would let the log drop. The compaction
   * policy of `@tsraft/log-compaction` reads it.
   */
  readonly bytesSinceSnapshot: number;
  readonly lastIndex: number;
  /** First index still in the log (entries before it are compacted into a snapshot). */
  readonly firstIndex: number;
  readonly config: ClusterConfig;
  /** The leader's view of each follower; empty when not leader. */
  readonly progress: Readonly<
    Record<NodeId, { readonly match: number; readonly next: number; readonly state: ProgressState }>
  >;
  /** Whether the node is closed (by `close()` or a fatal error). */
  readonly closed: boolean;
}

import type { ClusterConfig } from '../configuration.ts';
import type { PeerProgress } from '../engine/raft-engine.ts';
import type { Role } from '../engine/ready.ts';
import type { NodeId } from '../log-entry.ts';
import type { IdentityRefusal } from './identity-gate.ts';

/**
 * A member whose requests and answers the leader refuses (its identity: it came back under
 * another incarnation, or it belongs to another cluster; `identity.refusedPeers` says which).
 * Nothing it acknowledges counts, so what it holds is unknown: no match or next index, instead of
 * what it acknowledged before it was refused.
 */
export interface RefusedProgress {
  readonly state: 'refused';
  readonly refusal: IdentityRefusal;
  readonly match: null;
  readonly next: null;
  readonly recentActive: false;
}

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
  /** The configuration in effect: the latest in this node's log, committed or not. */
  readonly config: ClusterConfig;
  /** Index of the entry carrying `config` (the snapshot's index when it came with one). */
  readonly configIndex: number;
  /** Whether `config` is a joint configuration C_old,new (Raft paper 6). */
  readonly joint: boolean;
  /**
   * The leader's view of each member it replicates to, a refused member's as such; empty when
   * not leader.
   */
  readonly progress: Readonly<Record<NodeId, PeerProgress | RefusedProgress>>;
  /** The target of the leadership transfer under way (leader only), or null. */
  readonly leadTransferee: NodeId | null;
  /** Whether the node is closed (by `close()` or a fatal error). */
  readonly closed: boolean;
  /** This node's durable identity and the refusals in force (core README, "Node identity"). */
  readonly identity: {
    readonly clusterId: string | null;
    readonly incarnation: string;
    /** A peer said this node lost its durable state; it grants no vote until accepted again. */
    readonly lostState: boolean;
    /** Peers whose requests or answers this node refuses, with why. */
    readonly refusedPeers: Readonly<Record<NodeId, IdentityRefusal>>;
  };
}

/** The engine's `progress`, with each peer the identity gate refuses shown as refused. */
export function memberProgress(
  progress: Readonly<Record<NodeId, PeerProgress>>,
  refused: Readonly<Record<NodeId, IdentityRefusal>>,
): Record<NodeId, PeerProgress | RefusedProgress> {
  return Object.fromEntries(
    Object.entries(progress).map(([id, peer]) => {
      const refusal = refused[id];
      return [
        id,
        refusal === undefined
          ? peer
          : { state: 'refused', refusal, match: null, next: null, recentActive: false },
      ];
    }),
  );
}

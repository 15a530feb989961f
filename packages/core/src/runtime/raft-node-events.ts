import type { ClusterConfig } from '../configuration.ts';
import type { FollowerLostEntries } from '../engine/engine-options.ts';
import type { Role } from '../engine/ready.ts';
import type { NodeId } from '../log-entry.ts';
import type { IdentityRefusal } from './identity-gate.ts';

/** The events a {@link RaftNode} emits, with their arguments. */
export interface RaftNodeEvents {
  /** The leader this node knows of changed (`null`: none known, e.g. during an election). */
  'leader-change': [event: { readonly leaderId: NodeId | null; readonly term: number }];
  /** This node's role changed. */
  'role-change': [event: { readonly role: Role; readonly previous: Role; readonly term: number }];
  /**
   * The configuration in effect on this node changed: an entry carrying one was appended or
   * truncated, or a snapshot brought one (Raft paper 6: it acts before it commits).
   */
  'config-change': [event: { readonly config: ClusterConfig; readonly index: number }];
  /**
   * The `config` option this node was started with differs from the configuration it stored
   * (in its log or latest snapshot), which it uses: the option only bootstraps a new cluster.
   * Logged at `warn` when the node starts, and emitted once at its first tick, so that listeners
   * attached right after `start()` resolves hear it. To change the membership, use
   * `changeMembership()`, `addLearner()` or `removeNode()`; to silence it, start the node with
   * `config` equal to `stored`.
   */
  'config-option-ignored': [
    event: { readonly given: ClusterConfig; readonly stored: ClusterConfig },
  ];
  /** This node learned of a higher commit index. */
  commit: [event: { readonly commitIndex: number }];
  /**
   * The state machine applied a batch of `entries` committed entries, up to `appliedIndex`, in
   * `durationMs` (the state machine's `apply` call); 0 entries when an installed snapshot moved
   * the applied index (its restore is timed by the `snapshot` event).
   */
  apply: [
    event: { readonly appliedIndex: number; readonly entries: number; readonly durationMs: number },
  ];
  /**
   * The log store made a write durable (`LogStore.persist`): `entries` new entries (0 for a
   * change of the hard state alone), in `durationMs`.
   */
  persist: [event: { readonly entries: number; readonly durationMs: number }];
  /**
   * A `propose()` call on this node settled: `applied` (the command's result came back),
   * `rejected` (the command's handler refused it: a `CommandError`) or `failed` (any other
   * error: not the leader, dropped, timed out, closed), after `durationMs`.
   */
  proposal: [
    event: { readonly outcome: 'applied' | 'rejected' | 'failed'; readonly durationMs: number },
  ];
  /** A `read()` call on this node settled, `ok` or not, after `durationMs`. */
  read: [
    event: {
      readonly consistency: 'linearizable' | 'lease' | 'local';
      readonly ok: boolean;
      readonly durationMs: number;
    },
  ];
  /**
   * This node took a snapshot of its state machine and compacted its log (`taken`), or installed
   * a snapshot its leader sent (`installed`).
   */
  snapshot: [
    event: {
      readonly index: number;
      readonly term: number;
      readonly cause: 'taken' | 'installed';
      /** The snapshot's size in bytes, as stored. */
      readonly bytes: number;
      /** Taking it (export, save, log purge) or installing it (restore into the state machine). */
      readonly durationMs: number;
    },
  ];
  /**
   * This node refused a snapshot a leader sent (a piece or the whole failed its checksum); it
   * changed nothing, logged it at `error`, and the leader sends it again.
   */
  'snapshot-refused': [
    event: {
      readonly from: NodeId;
      readonly index: number;
      readonly term: number;
      readonly reason: string;
    },
  ];
  /**
   * A snapshot this node holds is damaged (its bytes no longer match their checksum); logged at
   * `error`, and a fresh snapshot is being taken to replace it.
   */
  'snapshot-corrupt': [
    event: { readonly index: number; readonly term: number; readonly error: Error },
  ];
  /**
   * A peer refused this node's credentials (`PeerAuthenticationError`: for the tRPC transport, a
   * 401): the nodes were given different cluster secrets, or the peer does not list this node.
   * Logged at `warn`; emitted at most once per peer per 30 s while it lasts.
   */
  'peer-unauthorized': [event: { readonly peer: NodeId; readonly error: Error }];
  /**
   * As leader, this node found a follower whose log is behind what the follower had acknowledged
   * (it lost entries it said were durable: storage that does not keep what it acknowledges, or a
   * database restored from an older backup). Logged at `error` with what to do; once per follower
   * and term.
   */
  'follower-lost-entries': [event: FollowerLostEntries];
  /**
   * A peer's identity was refused (core README, "Node identity"), by this node (`reason`:
   * `other-cluster`, `peer-lost-state` when the peer came back with a new incarnation,
   * `lost-state` when the peer knows this node under an old one) or by the peer
   * (`refused-by-peer`). `message` says what to do (remove the node that lost its state and add
   * it again). Logged at `error`; once per peer, reason and pair of incarnations.
   */
  'identity-refused': [
    event: {
      readonly peer: NodeId;
      readonly reason: IdentityRefusal | 'refused-by-peer';
      readonly message: string;
    },
  ];
  /** The node stopped on a fatal error (storage failure, broken invariant). Emitted once. */
  fatal: [event: { readonly error: Error }];
}

export type RaftNodeEventName = keyof RaftNodeEvents;

import type { ClusterConfig } from './configuration.ts';
import type { LogEntry, NodeId } from './log-entry.ts';

/**
 * The messages Raft nodes exchange. Every message carries the sender's term; a receiver that sees
 * a higher term adopts it and becomes a follower, and rejects messages of a lower term (Raft
 * paper, Figure 2, "rules for all servers"). Protocol rejections are values in responses, never
 * exceptions.
 */
export type Message =
  | AppendEntries
  | AppendEntriesResponse
  | RequestVote
  | RequestVoteResponse
  | Heartbeat
  | HeartbeatResponse
  | InstallSnapshot
  | InstallSnapshotResponse
  | ReadIndexRequest
  | ReadIndexResponse
  | TimeoutNow;

export type MessageType = Message['type'];

interface MessageBase {
  readonly from: NodeId;
  readonly to: NodeId;
  readonly term: number;
}

/** Leader to follower: entries after (prevIndex, prevTerm), and the leader's commit index. */
export interface AppendEntries extends MessageBase {
  readonly type: 'append';
  readonly prevIndex: number;
  readonly prevTerm: number;
  readonly entries: readonly LogEntry[];
  readonly commit: number;
}

/**
 * Follower to leader. On success `index` is the last index the follower now holds in agreement
 * with the leader. On rejection `index` is the rejected `prevIndex`, and `hint` lets the leader
 * skip a whole conflicting term in one round trip: the follower's last index when its log is
 * shorter, otherwise the first index the follower holds of the conflicting term.
 */
export interface AppendEntriesResponse extends MessageBase {
  readonly type: 'append-response';
  readonly success: boolean;
  readonly index: number;
  readonly hint?: { readonly index: number; readonly term: number };
}

/**
 * A vote request (Raft paper 5.2), or a pre-vote (thesis 9.6) when `prevote` is set: a pre-vote
 * asks "would you vote for me in `term`?" without anyone changing term or vote.
 */
export interface RequestVote extends MessageBase {
  readonly type: 'vote';
  readonly prevote: boolean;
  readonly lastIndex: number;
  readonly lastTerm: number;
  /**
   * Set by a candidate that campaigns because the leader handed leadership over (TimeoutNow,
   * thesis 3.10): voters grant it even though they heard from that leader recently (thesis 4.2.3).
   */
  readonly transfer?: boolean;
}

export interface RequestVoteResponse extends MessageBase {
  readonly type: 'vote-response';
  readonly prevote: boolean;
  readonly granted: boolean;
}

/**
 * Leader to follower, every heartbeat interval: asserts leadership and carries the commit index
 * (never beyond what the follower is known to hold). `round` numbers the leader's heartbeat
 * broadcasts, each its own: a ReadIndex waits for a quorum to answer a round sent after the read
 * arrived (thesis 6.4), and a lease runs from the departure of the latest round a quorum
 * answered (thesis 6.4.1).
 */
export interface Heartbeat extends MessageBase {
  readonly type: 'heartbeat';
  readonly commit: number;
  readonly round: number;
}

export interface HeartbeatResponse extends MessageBase {
  readonly type: 'heartbeat-response';
  readonly round: number;
  /** The follower's last log index, so a leader notices a follower that fell behind. */
  readonly lastIndex: number;
}

/** Metadata of a snapshot: the last entry it covers, and the configuration as of that entry. */
export interface SnapshotMeta {
  readonly index: number;
  readonly term: number;
  readonly config: ClusterConfig;
}

/**
 * Leader to follower: replace your state with the snapshot `snapshot` (Raft paper 7). The bytes
 * travel beside this message through the transport; the engine only reasons about metadata.
 */
export interface InstallSnapshot extends MessageBase {
  readonly type: 'snapshot';
  readonly snapshot: SnapshotMeta;
}

/** `index` is the last index the follower holds after handling the snapshot. */
export interface InstallSnapshotResponse extends MessageBase {
  readonly type: 'snapshot-response';
  readonly index: number;
}

/** Follower to leader: "give me a read index for read `id`" (thesis 6.4). */
export interface ReadIndexRequest extends MessageBase {
  readonly type: 'read-index';
  readonly id: string;
}

/** `index` is the read index, or `null` when the receiver cannot serve it (not the leader). */
export interface ReadIndexResponse extends MessageBase {
  readonly type: 'read-index-response';
  readonly id: string;
  readonly index: number | null;
}

/**
 * Leader to the target of a leadership transfer whose log it has brought up to date (thesis
 * 3.10): start an election at once, without waiting for the election timeout and without a
 * pre-vote.
 */
export interface TimeoutNow extends MessageBase {
  readonly type: 'timeout-now';
}

import type { NodeId } from './log-entry.ts';
import type { Message } from './message.ts';

/**
 * One piece of a snapshot a leader sends (chunked InstallSnapshot, Raft paper 7): the bytes at
 * `offset`, their CRC-32, and what the whole is (`size` bytes with SHA-256 `sha256`), so that any
 * piece names its snapshot together with the InstallSnapshot message's index and term.
 */
export interface SnapshotChunk {
  readonly size: number;
  /** SHA-256 of the whole snapshot, hex. */
  readonly sha256: string;
  readonly offset: number;
  /** May be empty: a probe that asks how much of the snapshot the follower holds. */
  readonly data: Uint8Array;
  /** CRC-32 (ISO-HDLC, as zlib's) of `data`. */
  readonly crc32: number;
}

/**
 * Who sends a request or a `raft` response, checked by the receiver before anything else (core
 * README, "Node identity"). Absent from requests of a version before identities, which are then
 * not checked: messages are wire-compatible only within one version of tsraft.
 */
export interface PeerIdentity {
  /** The sender's cluster id, or null while it knows none. */
  readonly clusterId: string | null;
  /** The sender's incarnation: made when its storage was first initialized. */
  readonly incarnation: string;
  /** The incarnation the sender knows for the receiver, or null when it knows none. */
  readonly receiverIncarnation: string | null;
  /** From a leader: the incarnation it knows for each member, which followers learn from it. */
  readonly members?: Readonly<Record<NodeId, string>>;
  /** With `members`: the index of the latest configuration the leader applied to them. */
  readonly membersAsOf?: number;
}

/**
 * A request from one node to another; `identity` says who sends it (see {@link PeerIdentity}).
 * - `raft`: protocol messages. With `reply`, the peer answers with the messages it has for the
 *   sender once it has carried out its reaction to these (persisted first, as always), in a `raft`
 *   response; without, it answers `ack` at once and its answers travel later in requests of its own.
 * - `propose`: a follower forwards an encoded command envelope to the leader.
 * - `snapshot`: a leader sends one piece of a snapshot; the follower answers `snapshot-progress`.
 */
export type PeerRequest =
  | {
      readonly type: 'raft';
      readonly messages: readonly Message[];
      readonly reply?: boolean;
      readonly identity?: PeerIdentity;
    }
  | { readonly type: 'propose'; readonly envelope: Uint8Array; readonly identity?: PeerIdentity }
  | {
      readonly type: 'snapshot';
      readonly message: Message & { type: 'snapshot' };
      readonly chunk: SnapshotChunk;
      readonly identity?: PeerIdentity;
    };

/** The answer to a {@link PeerRequest}. */
export type PeerResponse =
  | { readonly type: 'ack' }
  /**
   * To a `raft` request with `reply`: the peer's messages for the sender, maybe none, and who
   * answers (checked as a request's identity is).
   */
  | {
      readonly type: 'raft';
      readonly messages: readonly Message[];
      readonly identity?: PeerIdentity;
    }
  /**
   * To a `snapshot` piece: how many of the snapshot's first bytes the follower holds (it
   * sends the next piece from there). `received === size` once the follower has the whole and has
   * handled it (installed it, or found it not needed).
   */
  | { readonly type: 'snapshot-progress'; readonly received: number }
  /**
   * `result` is the encoded `CommandResult` of a forwarded proposal, whose entry the leader
   * appended at (`index`, `term`).
   */
  | {
      readonly type: 'proposed';
      readonly result: Uint8Array;
      readonly index: number;
      readonly term: number;
    }
  /**
   * The peer refused: not the leader (with a hint), backpressure, or another typed reason;
   * `refused`: the sender's identity (another cluster, or a member that lost its durable state).
   */
  | {
      readonly type: 'rejected';
      readonly reason: 'not-leader' | 'backpressure' | 'dropped' | 'closed' | 'timeout' | 'refused';
      readonly leaderHint?: NodeId | null;
      readonly message: string;
    };

/** Serves requests that arrive from peers. Never throws for a protocol reason. */
export type PeerHandler = (
  from: NodeId,
  request: PeerRequest,
  options: { signal: AbortSignal },
) => Promise<PeerResponse>;

/**
 * Moves requests between nodes. Contract:
 * - `request` makes one attempt and never retries: Raft owns retries. It rejects when the peer is
 *   unreachable, the deadline passes (`signal`), or the peer's answer is malformed.
 * - Messages may be lost, delayed, duplicated or reordered; Raft tolerates all of it.
 * - `listen` installs the handler for incoming requests; requests from unknown nodes never reach it
 *   (nodes become known from the transport's own options and from `updatePeers`).
 */
export interface Transport {
  request(
    to: NodeId,
    request: PeerRequest,
    options: { signal: AbortSignal },
  ): Promise<PeerResponse>;
  listen(handler: PeerHandler): void | Promise<void>;
  /**
   * The configuration in effect changed (a membership change, Raft paper 6): `addresses` maps
   * members to the URLs the configuration carries for them (those a change gave, e.g.
   * `addLearner(id, { url })`). A transport that keeps a list of peers adds or updates them, so
   * that it sends to and accepts requests from a member it learns of from the log. Optional: a
   * transport that reaches every node without a list ignores it.
   */
  updatePeers?(addresses: Readonly<Record<NodeId, string>>): void;
  close?(): Promise<void>;
}

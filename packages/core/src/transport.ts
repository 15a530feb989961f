import type { NodeId } from './log-entry.ts';
import type { Message } from './message.ts';

/**
 * A request from one node to another.
 * - `raft`: protocol messages, one way; the answer comes later as messages of the peer's own.
 * - `propose`: a follower forwards an encoded command envelope to the leader.
 * - `snapshot`: a leader sends a whole snapshot (chunked transfer comes with log compaction).
 */
export type PeerRequest =
  | { readonly type: 'raft'; readonly messages: readonly Message[] }
  | { readonly type: 'propose'; readonly envelope: Uint8Array }
  | {
      readonly type: 'snapshot';
      readonly message: Message & { type: 'snapshot' };
      readonly data: Uint8Array;
    };

/** The answer to a {@link PeerRequest}. */
export type PeerResponse =
  | { readonly type: 'ack' }
  /** `result` is the encoded `CommandResult` of a forwarded proposal. */
  | { readonly type: 'proposed'; readonly result: Uint8Array }
  /** The peer refused: not the leader (with a hint), backpressure, or another typed reason. */
  | {
      readonly type: 'rejected';
      readonly reason: 'not-leader' | 'backpressure' | 'dropped' | 'closed' | 'timeout';
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
 * - `listen` installs the handler for incoming requests; requests from unknown nodes never reach it.
 */
export interface Transport {
  request(
    to: NodeId,
    request: PeerRequest,
    options: { signal: AbortSignal },
  ): Promise<PeerResponse>;
  listen(handler: PeerHandler): void | Promise<void>;
  close?(): Promise<void>;
}

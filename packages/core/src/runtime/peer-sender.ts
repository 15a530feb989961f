import type { RaftEngine } from '../engine/raft-engine.ts';
import { PeerAuthenticationError } from '../errors.ts';
import type { NodeId } from '../log-entry.ts';
import type { Logger } from '../logger.ts';
import type { Message } from '../message.ts';
import type { Transport } from '../transport.ts';
import type { Clock } from './clock.ts';
import { PeerOutbox } from './peer-outbox.ts';
import { describeResponse } from './peer-response.ts';
import { SharedDeadline } from './shared-deadline.ts';

/** What the sender needs from the node it serves. */
export interface PeerSenderOptions {
  readonly engine: RaftEngine;
  readonly transport: Transport;
  readonly logger: Logger;
  /** Aborted when the node stops: cuts requests short, and no more are started. */
  readonly lifetime: AbortSignal;
  /** Measures deadlines. */
  readonly clock: Clock;
  /** Deadline of one request carrying Raft messages. */
  readonly requestTimeoutMs: number;
  /** Requests in flight to one peer at a time. */
  readonly maxRequestsPerPeer: number;
  /** Makes sure the consensus loop runs (the engine learned of an unreachable peer). */
  readonly kick: () => void;
  /** Steps the messages a peer answered with (see `ReplySlots`) into the engine. */
  readonly receive: (from: NodeId, messages: readonly Message[]) => void;
  /** A peer refused this node's credentials (at most once per peer per 30 s). */
  readonly unauthorized: (peer: NodeId, error: PeerAuthenticationError) => void;
}

/** A peer's refusal of this node's credentials is reported at most this often. */
const REPORT_UNAUTHORIZED_EVERY_MS = 30_000;

/**
 * Sends Raft messages (all but snapshots, which travel with their data) through a per-peer
 * {@link PeerOutbox}: batched, with a bounded number of requests in flight per peer. Each request
 * asks the peer to answer with its own messages for this node (`reply`), which are stepped here
 * as if they had arrived on their own. A request that fails tells the engine the peer is
 * unreachable; Raft owns the retries.
 */
export class PeerSender {
  readonly #o: PeerSenderOptions;
  readonly #deadline: SharedDeadline;
  readonly #outbox: PeerOutbox;
  /** When each peer's refusal of this node's credentials was last reported. */
  readonly #unauthorizedAt = new Map<NodeId, number>();

  constructor(options: PeerSenderOptions) {
    this.#o = options;
    this.#deadline = new SharedDeadline(options.lifetime, options.requestTimeoutMs, options.clock);
    this.#outbox = new PeerOutbox({ maxRequests: options.maxRequestsPerPeer, maxQueued: 16_384 });
  }

  /** Queues `messages` for their peers and starts the requests the outbox allows. */
  send(messages: readonly Message[]): void {
    const byPeer = new Map<NodeId, Message[]>();
    for (const message of messages) {
      const batch = byPeer.get(message.to);
      if (batch === undefined) byPeer.set(message.to, [message]);
      else batch.push(message);
    }
    for (const [peer, batch] of byPeer) {
      this.#outbox.push(peer, batch);
      this.#flush(peer);
    }
  }

  #flush(peer: NodeId): void {
    for (;;) {
      const batch = this.#outbox.take(peer);
      if (batch === undefined) return;
      void this.#request(peer, batch).finally(() => {
        this.#outbox.done(peer);
        if (!this.#o.lifetime.aborted) this.#flush(peer);
      });
    }
  }

  async #request(peer: NodeId, messages: Message[]): Promise<void> {
    const o = this.#o;
    try {
      const response = await o.transport.request(
        peer,
        { type: 'raft', messages, reply: true },
        { signal: this.#deadline.signal() },
      );
      if (response.type === 'raft') {
        if (response.messages.length > 0 && !o.lifetime.aborted) o.receive(peer, response.messages);
      } else if (response.type !== 'ack') {
        throw new Error(`${peer} answered ${describeResponse(response)}`);
      }
    } catch (error) {
      if (o.lifetime.aborted) return;
      if (error instanceof PeerAuthenticationError) this.#unauthorized(peer, error);
      else o.logger.debug({ peer, err: error }, 'a peer is unreachable');
      o.engine.reportUnreachable(peer);
      o.kick();
    }
  }

  /**
   * Reports a peer that refuses this node's credentials at `warn`, with what to do: otherwise it
   * shows only as elections that never end.
   */
  #unauthorized(peer: NodeId, error: PeerAuthenticationError): void {
    const now = Date.now();
    if ((this.#unauthorizedAt.get(peer) ?? -Infinity) + REPORT_UNAUTHORIZED_EVERY_MS > now) return;
    this.#unauthorizedAt.set(peer, now);
    this.#o.logger.warn(
      { peer, err: error },
      `peer ${peer} refuses this node's credentials: give every node the same cluster secret, and list every member in each node's peers (${error.message})`,
    );
    this.#o.unauthorized(peer, error);
  }
}

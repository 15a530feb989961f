import {
  BackpressureError,
  NodeClosedError,
  NotLeaderError,
  ProposalDroppedError,
  RaftError,
} from '../errors.ts';
import type { NodeId } from '../log-entry.ts';
import type { ClientSession, CommandResult } from '../state-machine.ts';
import type { PeerResponse, Transport } from '../transport.ts';
import { abortable, linkedSignal } from './abortable.ts';
import type { Clock } from './clock.ts';
import type { CommandCodec, CommandEnvelope } from './command-codec.ts';

/** The outcome of proposing encoded envelope bytes on this node. */
export type LocalProposal<Result> =
  | {
      readonly kind: 'proposed';
      /** Where the leader (this node) appended the entry. */
      readonly index: number;
      readonly term: number;
      readonly result: Promise<CommandResult<Result>>;
    }
  | { readonly kind: 'not-leader'; readonly leaderHint: NodeId | null };

/** The outcome of a proposal: where its entry is in the log, and the state machine's answer. */
export interface ProposalOutcome<Result> {
  readonly index: number;
  readonly term: number;
  readonly result: CommandResult<Result>;
}

/** What proposal forwarding needs from the node it serves. */
export interface ProposalForwardingOptions<Command, Result> {
  readonly transport: Transport;
  readonly codec: CommandCodec<Command, Result>;
  /** Aborted when the node stops: cuts forwarded requests short. */
  readonly lifetime: AbortSignal;
  /** Measures deadlines. */
  readonly clock: Clock;
  /** Deadline of one forwarded proposal. */
  readonly forwardTimeoutMs: number;
  /** Throws the node's `NodeClosedError` once it stopped. */
  readonly throwIfStopped: () => void;
  /** Wraps a command in an envelope stamped with this node's time. */
  readonly envelope: (
    command: Command,
    session: ClientSession | undefined,
  ) => CommandEnvelope<Command>;
  /** Proposes the envelope bytes to this node's engine (throws `BackpressureError`). */
  readonly proposeLocally: (
    bytes: Uint8Array,
    signal: AbortSignal | undefined,
  ) => LocalProposal<Result>;
}

/**
 * Proposals a follower forwards to the leader, both ends: {@link forward} sends one and turns the
 * leader's answer into the result or a typed error; {@link serve} proposes one as leader and
 * answers. A forwarded proposal whose answer is lost, or whose leader appended it and then
 * could not see it through (it stopped), has an unknown outcome: the error says so, and a retry
 * with the same client session is safe (thesis 6.3). `NotLeaderError` means nothing was appended.
 */
export class ProposalForwarding<Command, Result> {
  readonly #o: ProposalForwardingOptions<Command, Result>;

  constructor(options: ProposalForwardingOptions<Command, Result>) {
    this.#o = options;
  }

  /** Forwards encoded envelope bytes to `leader`; resolves with its entry's position and result. */
  async forward(
    leader: NodeId,
    envelope: Uint8Array,
    signal: AbortSignal | undefined,
  ): Promise<ProposalOutcome<Result>> {
    const o = this.#o;
    let response: PeerResponse;
    using request = linkedSignal({
      parents: [signal, o.lifetime],
      clock: o.clock,
      timeoutMs: o.forwardTimeoutMs,
    });
    try {
      response = await abortable(
        o.transport.request(leader, { type: 'propose', envelope }, { signal: request.signal }),
        request.signal,
      );
    } catch (error) {
      signal?.throwIfAborted();
      o.throwIfStopped();
      throw new RaftError(
        `forwarding the proposal to the leader ${leader} failed; its outcome is unknown (a retry is safe with a client session)`,
        { retryable: true, cause: error },
      );
    }
    switch (response.type) {
      case 'proposed':
        return {
          index: response.index,
          term: response.term,
          result: o.codec.decodeResult(response.result),
        };
      case 'rejected':
        throw rejectionError(response, leader);
      case 'ack':
      case 'raft':
      case 'snapshot-progress':
        throw new RaftError(`the leader ${leader} answered a proposal with ${response.type}`, {
          retryable: true,
        });
    }
  }

  /** Serves a proposal a follower forwarded: proposes it here, as leader, and answers. */
  async serve(envelopeBytes: Uint8Array, signal: AbortSignal): Promise<PeerResponse> {
    const o = this.#o;
    let envelope: CommandEnvelope<Command>;
    try {
      envelope = o.codec.decode(envelopeBytes);
    } catch (error) {
      return {
        type: 'rejected',
        reason: 'dropped',
        message: `malformed command envelope: ${String(error)}`,
      };
    }
    let local: LocalProposal<Result>;
    try {
      // Re-stamped with this leader's clock: the time every replica will see.
      const bytes = o.codec.encode(o.envelope(envelope.command, envelope.session));
      local = o.proposeLocally(bytes, signal);
    } catch (error) {
      return unappendedRejectionResponse(error);
    }
    if (local.kind === 'not-leader') {
      return {
        type: 'rejected',
        reason: 'not-leader',
        leaderHint: local.leaderHint,
        message: new NotLeaderError(local.leaderHint).message,
      };
    }
    try {
      const result = await local.result;
      return {
        type: 'proposed',
        result: o.codec.encodeResult(result),
        index: local.index,
        term: local.term,
      };
    } catch (error) {
      return appendedRejectionResponse(error, local.index, signal);
    }
  }
}

/** The typed error for a leader's refusal of a forwarded proposal. */
function rejectionError(response: PeerResponse & { type: 'rejected' }, leader: NodeId): RaftError {
  switch (response.reason) {
    case 'not-leader':
      return new NotLeaderError(response.leaderHint ?? null);
    case 'backpressure':
      return new BackpressureError(response.message);
    case 'dropped':
      return new ProposalDroppedError(response.message);
    case 'closed':
      // Stopped before it handled the request: nothing was appended.
      return new NotLeaderError(null, {
        cause: new Error(`the leader ${leader} is closed: ${response.message}`),
      });
    case 'timeout':
      // The leader cannot tell whether the entry commits: it appended it and stopped, or proposing
      // it failed unexpectedly.
      return new RaftError(
        `the leader ${leader} could not see the proposal through: ${response.message}; its outcome is unknown (a retry is safe with a client session)`,
        { retryable: true },
      );
    case 'refused':
      // Never applied: the leader refused this node's identity before anything else.
      return new RaftError(`the leader ${leader} refused this node: ${response.message}`, {
        retryable: false,
      });
  }
}

/**
 * The answer a leader gives a follower for a forwarded proposal whose entry it appended at
 * `index`, when waiting for the entry's result failed with `error` (this node stopped, the
 * request ended). The entry is in the log and may still commit, under this leader or a later
 * one, so the outcome is unknown ('timeout'), unless the entry is known gone
 * (`ProposalDroppedError`: overwritten, or its fate lost with the log, as its message says).
 * Never 'not-leader' or 'closed': those tell the follower that nothing was appended, and its
 * caller may propose the command anew, without a client session too, and apply it twice.
 */
function appendedRejectionResponse(
  error: unknown,
  index: number,
  signal: AbortSignal,
): PeerResponse {
  if (error instanceof ProposalDroppedError) {
    return { type: 'rejected', reason: 'dropped', message: error.message };
  }
  const why =
    error instanceof NodeClosedError
      ? `it stopped (${error.message}) before the entry at index ${index} was known to commit`
      : signal.aborted
        ? `the request ended before the entry at index ${index} was known to commit`
        : `waiting for the entry at index ${index} failed: ${error instanceof Error ? error.message : String(error)}`;
  return { type: 'rejected', reason: 'timeout', message: why };
}

/**
 * The answer a leader gives a follower for a forwarded proposal it did not append: proposing it
 * threw `error`. Backpressure is a refusal; anything else is unexpected, and reported as an
 * unknown outcome rather than assumed harmless.
 */
function unappendedRejectionResponse(error: unknown): PeerResponse {
  const message = error instanceof Error ? error.message : String(error);
  if (error instanceof BackpressureError) {
    return { type: 'rejected', reason: 'backpressure', message };
  }
  return { type: 'rejected', reason: 'timeout', message: `proposing it failed: ${message}` };
}

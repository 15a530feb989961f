import type { NodeId } from '../log-entry.ts';
import type { Message } from '../message.ts';

interface Slot {
  readonly peer: NodeId;
  /** The slot closes once this many Readies are carried out. */
  readonly after: number;
  readonly messages: Message[];
  readonly resolve: (messages: Message[]) => void;
}

/**
 * Answers that travel back in the response of the request that caused them.
 *
 * A peer that sends Raft messages with `reply: true` waits for the answer of its request. The
 * receiver steps the messages, then opens a slot for that peer; the messages the node would send
 * to that peer while the slot is open (when the node would send them on their own: a Ready's
 * messages once its write is persisted, a leader's early AppendEntries before) are put into the
 * slot instead, in order, and the slot closes, answering the request, once the Ready that reacts
 * to the stepped messages is carried out.
 * This halves the requests of a round trip (an AppendEntries and its answer, a vote and its
 * grant) and takes the answer's own request off its latency.
 *
 * Nothing here is allowed to lose or delay a message for long: a slot whose request goes away
 * (its signal aborts) gives its messages back to be sent on their own, and when the node stops
 * every slot closes with what it holds.
 */
export class ReplySlots {
  /** Open slots, oldest first: a message goes into the oldest open slot of its peer. */
  #slots: Slot[] = [];

  /**
   * Opens a slot for `peer` that closes once `after` Readies are carried out ({@link readyDone}),
   * or when the engine has nothing to carry out ({@link settleAll}), resolving with the messages
   * it caught. When `signal` aborts first, resolves with no message and hands what the slot
   * caught to `sendOnTheirOwn`.
   */
  open(
    peer: NodeId,
    after: number,
    signal: AbortSignal,
    sendOnTheirOwn: (messages: readonly Message[]) => void,
  ): Promise<Message[]> {
    if (signal.aborted) return Promise.resolve([]);
    return new Promise<Message[]>((resolve) => {
      const onAbort = (): void => {
        if (!this.#close(slot)) return;
        resolve([]);
        if (slot.messages.length > 0) sendOnTheirOwn(slot.messages);
      };
      const slot: Slot = {
        peer,
        after,
        messages: [],
        resolve: (messages) => {
          signal.removeEventListener('abort', onAbort);
          resolve(messages);
        },
      };
      this.#slots.push(slot);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Whether a slot is open: {@link divert} has nothing to do otherwise. */
  get isEmpty(): boolean {
    return this.#slots.length === 0;
  }

  /**
   * Puts each message addressed to a peer with an open slot into its oldest slot, and returns
   * the others, to be sent on their own.
   */
  divert(messages: readonly Message[]): readonly Message[] {
    if (this.#slots.length === 0) return messages;
    const rest: Message[] = [];
    for (const message of messages) {
      const slot = this.#slots.find((s) => s.peer === message.to);
      if (slot === undefined) rest.push(message);
      else slot.messages.push(message);
    }
    return rest;
  }

  /** `done` Readies are carried out: closes the slots that waited for them. */
  readyDone(done: number): void {
    if (this.#slots.length === 0) return;
    const closing = this.#slots.filter((slot) => slot.after <= done);
    for (const slot of closing) {
      this.#close(slot);
      slot.resolve(slot.messages);
    }
  }

  /**
   * Closes every slot with what it holds: the engine has nothing more to carry out, so no more
   * answers are coming to what was stepped, or the node stopped.
   */
  settleAll(): void {
    const closing = this.#slots;
    this.#slots = [];
    for (const slot of closing) slot.resolve(slot.messages);
  }

  #close(slot: Slot): boolean {
    const i = this.#slots.indexOf(slot);
    if (i < 0) return false;
    this.#slots.splice(i, 1);
    return true;
  }
}

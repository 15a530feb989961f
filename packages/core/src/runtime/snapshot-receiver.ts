import { crc32 } from 'node:zlib';
import type { RaftEngine } from '../engine/raft-engine.ts';
import { CorruptSnapshotError } from '../errors.ts';
import type { NodeId } from '../log-entry.ts';
import type { Logger } from '../logger.ts';
import type { InstallSnapshot } from '../message.ts';
import type { PartialSnapshot, SnapshotStore, StoredSnapshot } from '../snapshot-store.ts';
import type { PeerResponse, SnapshotChunk } from '../transport.ts';
import { storage, storageFailure } from './recover-node-state.ts';
import { SerialQueue } from './serial-queue.ts';

/** What a {@link SnapshotReceiver} needs from its node. */
export interface SnapshotReceiverOptions {
  readonly engine: RaftEngine;
  readonly store: SnapshotStore;
  readonly logger: Logger;
  /**
   * The node's snapshot work queue: a received snapshot is completed (made the latest stored)
   * and handed to the engine there, never in the middle of taking or installing one.
   */
  readonly work: SerialQueue;
  /** Makes sure the consensus loop runs (the engine has new input). */
  readonly kick: () => void;
  /**
   * Resolves once every input stepped into the engine so far is carried out (persisted, sent,
   * advanced; a snapshot installed); rejects if the node stops first.
   */
  readonly whenCarriedOut: () => Promise<void>;
  /** A snapshot from `from` was refused (reported at `error` already). */
  readonly refused: (event: { from: NodeId; index: number; term: number; reason: string }) => void;
}

/**
 * The follower's side of the chunked InstallSnapshot (Raft paper 7). Pieces go into the snapshot
 * store's partial snapshot, each written before it is acknowledged, so a transfer resumes from
 * the last acknowledged piece after a cut connection or a new leader, and from the last piece
 * that reached the disk after a restart of this node (it then answers what it holds). A
 * piece is written only when it continues what is held and its CRC-32 matches. Once the whole is
 * held its size and SHA-256 are checked and it becomes the latest stored snapshot; only then is
 * the InstallSnapshot message handed to the engine, which installs it (or finds it not needed),
 * and the last piece is answered once that is durable.
 * A damaged piece or whole is refused and changes nothing but the discarded partial; the
 * refusal is logged at `error` and reported. Pieces are handled one at a time.
 */
export class SnapshotReceiver {
  readonly #o: SnapshotReceiverOptions;
  readonly #queue = new SerialQueue();
  /**
   * The partial snapshot as this receiver last wrote it: the next piece of the same transfer
   * goes straight to the store, without reading the latest and the partial snapshot first.
   */
  #held: PartialSnapshot | undefined;

  constructor(options: SnapshotReceiverOptions) {
    this.#o = options;
  }

  /**
   * Handles one piece; the answer tells the leader what this node holds. Rejects when the
   * snapshot store fails (fatal to the node).
   */
  receive(from: NodeId, message: InstallSnapshot, chunk: SnapshotChunk): Promise<PeerResponse> {
    return this.#queue.run(() => this.#receive(from, message, chunk));
  }

  async #receive(
    from: NodeId,
    message: InstallSnapshot,
    chunk: SnapshotChunk,
  ): Promise<PeerResponse> {
    const o = this.#o;
    const store = o.store;
    if (message.from !== from) {
      return { type: 'rejected', reason: 'dropped', message: "the sender is not the message's" };
    }
    const status = o.engine.status();
    if (message.term < status.term) {
      // The engine answers with its term, so that the stale leader steps down.
      o.engine.step(message);
      o.kick();
      return {
        type: 'rejected',
        reason: 'not-leader',
        leaderHint: status.leaderId,
        message: `a snapshot of term ${message.term}, but this node is in term ${status.term}`,
      };
    }
    const wanted: StoredSnapshot = {
      ...message.snapshot,
      size: chunk.size,
      sha256: chunk.sha256,
    };
    const held = this.#held;
    this.#held = undefined;
    let partial: PartialSnapshot;
    if (held !== undefined && sameSnapshot(held, wanted) && chunk.offset === held.received) {
      partial = held;
    } else {
      const latest = await storage('read the latest snapshot', () => store.latest());
      if (latest !== undefined && sameSnapshot(latest, wanted)) {
        // Held whole already: the answer to the last piece was lost, or this node restarted.
        o.engine.step(message);
        await o.whenCarriedOut();
        return progress(wanted.size);
      }
      const stored = await storage('read the partial snapshot', () => store.partial());
      if (stored !== undefined && sameSnapshot(stored, wanted)) {
        partial = stored;
      } else {
        o.logger.info(
          { from, index: wanted.index, term: wanted.term, size: wanted.size },
          'receiving a snapshot',
        );
        partial = await storage('start receiving a snapshot', () => store.beginPartial(wanted));
      }
    }
    if (chunk.data.byteLength > 0 && chunk.offset === partial.received) {
      if (crc32(chunk.data) !== chunk.crc32 || chunk.offset + chunk.data.byteLength > wanted.size) {
        this.#refuse(
          from,
          wanted,
          `the piece at byte ${chunk.offset} fails its CRC-32 or goes past the snapshot's size`,
        );
        this.#held = partial;
        return progress(partial.received);
      }
      const at = partial;
      try {
        partial = await store.appendPartial(at.received, chunk.data);
      } catch (error) {
        if (at === held && error instanceof RangeError) {
          // The store no longer holds what this receiver wrote (its database lost the last
          // pieces): ask it what it holds.
          return this.#receive(from, message, chunk);
        }
        throw storageFailure('write a piece of a received snapshot', error);
      }
    }
    if (partial.received < partial.size) {
      this.#held = partial;
      return progress(partial.received);
    }
    return this.#complete(from, message, partial, store);
  }

  /**
   * The whole is held: check it, make it the latest stored snapshot, hand it to the engine, and
   * answer once the engine has handled it durably (installed it, or found it not needed): a
   * crash before that fails the leader's request, and the leader asks again.
   */
  async #complete(
    from: NodeId,
    message: InstallSnapshot,
    partial: PartialSnapshot,
    store: SnapshotStore,
  ): Promise<PeerResponse> {
    const o = this.#o;
    const completed = await o.work.run(async () => {
      try {
        await store.completePartial();
      } catch (error) {
        if (!(error instanceof CorruptSnapshotError)) throw error;
        this.#refuse(from, partial, error.message);
        return false;
      }
      o.logger.info({ from, index: partial.index, term: partial.term }, 'received a snapshot');
      o.engine.step(message);
      return true;
    });
    if (!completed) return progress(0);
    await o.whenCarriedOut();
    return progress(partial.size);
  }

  #refuse(from: NodeId, snapshot: StoredSnapshot, reason: string): void {
    const { index, term } = snapshot;
    this.#o.logger.error(
      { from, index, term, reason },
      `refused a snapshot from ${from}: ${reason}; nothing was changed, the leader sends it again (if this repeats, check the network and the leader's storage)`,
    );
    this.#o.refused({ from, index, term, reason });
  }
}

function sameSnapshot(a: StoredSnapshot, b: StoredSnapshot): boolean {
  return a.index === b.index && a.term === b.term && a.size === b.size && a.sha256 === b.sha256;
}

function progress(received: number): PeerResponse {
  return { type: 'snapshot-progress', received };
}

import { crc32 } from 'node:zlib';
import { CorruptSnapshotError } from '../errors.ts';
import type { InstallSnapshot } from '../message.ts';
import type { SnapshotStore, StoredSnapshot } from '../snapshot-store.ts';
import type { Transport } from '../transport.ts';
import { linkedSignal } from './abortable.ts';
import type { Clock } from './clock.ts';
import { describeResponse } from './peer-response.ts';
import { piecesFrom } from './snapshot-pieces.ts';

/** Times a transfer starts again from what the follower says it holds before giving up. */
const MAX_RESTARTS = 3;

const EMPTY = new Uint8Array(0);

/** What a {@link SnapshotSender} needs. */
export interface SnapshotSenderOptions {
  readonly transport: Transport;
  readonly store: SnapshotStore;
  /** Bytes per piece. */
  readonly pieceBytes: number;
  /** Deadline of one piece's request. */
  readonly timeoutMs: number;
  /**
   * Deadline of the requests the follower answers only once it has handled the whole snapshot
   * (installed it): the last piece, and the probe (the follower may hold the whole already).
   */
  readonly installTimeoutMs: number;
  /** Aborted when the node stops. */
  readonly lifetime: AbortSignal;
  /** Measures deadlines. */
  readonly clock: Clock;
}

/**
 * The leader's side of the chunked InstallSnapshot (Raft paper 7): sends a stored snapshot to a
 * follower one piece per request, each with its CRC-32, every piece naming the whole (size and
 * SHA-256). It starts with an empty probe, and the follower's answer (the bytes it holds
 * durably) says where to go on from: a transfer cut by a timeout, a leader change or a follower
 * restart resumes from the last acknowledged piece. One request is in flight at a time while
 * the next piece is read from the store. The last piece leaves only after the store checked the
 * whole snapshot against its checksum, so a damaged snapshot never reaches a follower whole.
 * Memory: about three pieces (the two buffers `piecesFrom` assembles pieces in take turns: the
 * one a request carries is filled again only after that request settled).
 */
export class SnapshotSender {
  readonly #o: SnapshotSenderOptions;

  constructor(options: SnapshotSenderOptions) {
    this.#o = options;
  }

  /**
   * Sends `snapshot` (the one `message` names) to `message.to`. Resolves once the follower holds
   * it whole and has handed it to its engine. Rejects when a request fails or times out, when the
   * follower refuses or keeps answering unexpected progress, and with `CorruptSnapshotError`
   * when the stored snapshot is damaged.
   */
  async send(message: InstallSnapshot, snapshot: StoredSnapshot): Promise<void> {
    let received = await this.#piece(message, snapshot, 0, EMPTY);
    for (let restart = 0; received < snapshot.size; restart++) {
      if (restart > MAX_RESTARTS) {
        throw new Error(
          `${message.to} keeps answering unexpected progress (${received} of ${snapshot.size} bytes)`,
        );
      }
      received = await this.#stream(message, snapshot, received);
    }
  }

  /**
   * Streams the snapshot from `from` while the follower acknowledges each piece as expected.
   * Returns what the follower holds: the whole size, or where it wants the pieces from instead.
   */
  async #stream(message: InstallSnapshot, snapshot: StoredSnapshot, from: number): Promise<number> {
    const o = this.#o;
    const pieces = piecesFrom(o.store.read(snapshot, { signal: o.lifetime }), from, o.pieceBytes)[
      Symbol.asyncIterator
    ]();
    try {
      let offset = from;
      let current = await pieces.next();
      while (current.done !== true) {
        const piece = current.value;
        const next = pieces.next();
        next.catch(() => {}); // awaited below; a failure meanwhile must not go unhandled
        if (offset + piece.byteLength >= snapshot.size) {
          const end = await next;
          if (end.done !== true) {
            throw new CorruptSnapshotError(
              `snapshot ${snapshot.index}/${snapshot.term} holds more than its recorded ${snapshot.size} bytes`,
            );
          }
        }
        const answer = await this.#piece(message, snapshot, offset, piece);
        if (answer !== offset + piece.byteLength) return answer;
        offset = answer;
        current = await next;
      }
      return offset;
    } finally {
      await pieces.return?.(undefined);
    }
  }

  /** Sends one piece and returns the bytes the follower holds after it. */
  async #piece(
    message: InstallSnapshot,
    snapshot: StoredSnapshot,
    offset: number,
    data: Uint8Array,
  ): Promise<number> {
    const o = this.#o;
    const waitsForInstall = data.byteLength === 0 || offset + data.byteLength === snapshot.size;
    using deadline = linkedSignal({
      parents: [o.lifetime],
      clock: o.clock,
      timeoutMs: waitsForInstall ? o.installTimeoutMs : o.timeoutMs,
    });
    const response = await o.transport.request(
      message.to,
      {
        type: 'snapshot',
        message,
        chunk: { size: snapshot.size, sha256: snapshot.sha256, offset, data, crc32: crc32(data) },
      },
      { signal: deadline.signal },
    );
    if (response.type !== 'snapshot-progress') {
      throw new Error(`${message.to} answered ${describeResponse(response)}`);
    }
    const { received } = response;
    if (!Number.isSafeInteger(received) || received < 0 || received > snapshot.size) {
      throw new Error(`${message.to} answered an impossible progress: ${received} bytes`);
    }
    return received;
  }
}

import type { NodeId } from '@tsraft/core';

/** A nonce: `<stream>.<counter>`, a stream of 22 base64url characters (128 random bits). */
const NONCE = /^([A-Za-z0-9_-]{22})\.([1-9][0-9]{0,15})$/;

/**
 * Skipped counters remembered per stream at most (far more than requests in flight to one node);
 * older ones are refused if they ever come.
 */
const MAX_HOLES_PER_STREAM = 4096;

/** What the receiver remembers of one sender's stream of nonces. */
interface Stream {
  /** Highest counter accepted. */
  highest: number;
  /**
   * Counters below `highest` not seen yet (requests still on their way, or lost), each with the
   * time after which it could no longer pass the timestamp check: oldest first.
   */
  readonly holes: Map<number, number>;
  /** After this time (this node's clock) no request of the stream can pass the timestamp check. */
  expiresAt: number;
}

/**
 * Accepts each signed peer request once. A sender numbers its requests `<stream>.<counter>`
 * (a random stream per sender lifetime, the counter increasing by one per request); a receiver
 * accepts a counter above the highest it saw, or one it skipped (a request that overtook
 * another), and refuses every other: a replay.
 *
 * Memory stays bounded by the clock-skew window: a request whose signed timestamp is more than
 * `maxClockSkewMs` from this node's clock is refused before it gets here, so a stream (or a
 * skipped counter) is forgotten once no request of it could pass that check any more. A sender
 * signs its counters in increasing time order, so a skipped counter's timestamp is at most that of
 * the request that skipped it.
 *
 * What it does not cover: a node that restarts forgets what it saw, so a request captured before
 * the restart can be replayed to it within the window.
 */
export class ReplayGuard {
  readonly #maxClockSkewMs: number;
  readonly #streams = new Map<string, Stream>();
  #nextSweep = 0;

  constructor(maxClockSkewMs: number) {
    this.#maxClockSkewMs = maxClockSkewMs;
  }

  /**
   * Whether to accept the request `nonce` of `from`, signed at `time.signedAt` (already checked to
   * be within the window of `time.now`, this node's clock); remembers it if so. `malformed` for a
   * nonce that is not `<stream>.<counter>`.
   */
  accept(
    from: NodeId,
    nonce: string,
    time: { readonly signedAt: number; readonly now: number },
  ): 'ok' | 'replay' | 'malformed' {
    const { signedAt, now } = time;
    const match = NONCE.exec(nonce);
    if (match === null) return 'malformed';
    const counter = Number(match[2]);
    if (!Number.isSafeInteger(counter)) return 'malformed';
    this.#sweep(now);
    const key = `${from}\n${match[1]}`;
    const until = signedAt + this.#maxClockSkewMs;
    let stream = this.#streams.get(key);
    if (stream === undefined) {
      // The first request seen of a stream may have overtaken earlier ones.
      stream = { highest: 0, holes: new Map(), expiresAt: until };
      this.#streams.set(key, stream);
    }
    stream.expiresAt = Math.max(stream.expiresAt, until);
    if (counter > stream.highest) {
      const first = Math.max(stream.highest + 1, counter - MAX_HOLES_PER_STREAM);
      for (let skipped = first; skipped < counter; skipped++) stream.holes.set(skipped, until);
      stream.highest = counter;
      for (const [skipped] of stream.holes) {
        if (stream.holes.size <= MAX_HOLES_PER_STREAM) break;
        stream.holes.delete(skipped);
      }
      return 'ok';
    }
    const hole = stream.holes.get(counter);
    if (hole === undefined || hole < now) return 'replay';
    stream.holes.delete(counter);
    return 'ok';
  }

  /** Streams and holes remembered, for tests of the memory bound. */
  get size(): { streams: number; holes: number } {
    let holes = 0;
    for (const stream of this.#streams.values()) holes += stream.holes.size;
    return { streams: this.#streams.size, holes };
  }

  /** Forgets what can no longer pass the timestamp check; at most once per second. */
  #sweep(now: number): void {
    if (now < this.#nextSweep) return;
    this.#nextSweep = now + 1000;
    for (const [key, stream] of this.#streams) {
      if (stream.expiresAt < now) {
        this.#streams.delete(key);
        continue;
      }
      for (const [skipped, until] of stream.holes) {
        if (until >= now) break;
        stream.holes.delete(skipped);
      }
    }
  }
}

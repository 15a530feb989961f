import type { Inflights } from './inflights.ts';

/**
 * How a leader is replicating to one follower:
 * - `probe`: the leader does not know where the follower's log matches; it sends one
 *   AppendEntries at a time and waits for the answer (or the next heartbeat response).
 * - `replicate`: the follower's log matches up to `match`; AppendEntries are pipelined.
 * - `snapshot`: the follower needs entries the leader compacted away; a snapshot is on its way.
 */
export type ProgressState = 'probe' | 'replicate' | 'snapshot';

/** The leader's view of one follower's log (Raft paper, Figure 2: nextIndex and matchIndex). */
export class Progress {
  /** Highest index known to be replicated on the follower. */
  match = 0;
  /**
   * The latest heartbeat round the leader had broadcast when `match` last advanced: a heartbeat
   * of a later round reaches the follower after it acknowledged `match`.
   */
  matchRound = 0;
  /** Index of the next entry to send. */
  next: number;
  state: ProgressState = 'probe';
  /** In `probe`: an AppendEntries is out; wait before sending another. */
  probeSent = false;
  /** In `snapshot`: index of the snapshot being sent. */
  pendingSnapshot = 0;
  /** Heard from since the last CheckQuorum round. */
  recentActive = false;
  readonly inflights: Inflights;

  constructor(next: number, inflights: Inflights) {
    this.next = next;
    this.inflights = inflights;
  }

  get paused(): boolean {
    if (this.state === 'probe') return this.probeSent;
    if (this.state === 'replicate') return this.inflights.full;
    return true;
  }

  becomeProbe(): void {
    if (this.state === 'snapshot') {
      this.next = Math.max(this.match + 1, this.pendingSnapshot + 1);
    } else {
      this.next = this.match + 1;
    }
    this.state = 'probe';
    this.probeSent = false;
    this.pendingSnapshot = 0;
    this.inflights.reset();
  }

  becomeReplicate(): void {
    this.state = 'replicate';
    this.next = this.match + 1;
    this.probeSent = false;
    this.inflights.reset();
  }

  becomeSnapshot(index: number): void {
    this.state = 'snapshot';
    this.pendingSnapshot = index;
    this.probeSent = false;
    this.inflights.reset();
  }

  /** Records an AppendEntries just sent, ending at `lastIndex`. */
  sent(lastIndex: number, entryCount: number, bytes: number): void {
    if (this.state === 'replicate') {
      if (entryCount > 0) {
        this.next = lastIndex + 1;
        this.inflights.add(lastIndex, bytes);
      }
    } else {
      this.probeSent = true;
    }
  }

  /** A success acknowledgement up to `index`. Returns false when it tells nothing new. */
  acknowledge(index: number): boolean {
    this.probeSent = false;
    if (index <= this.match) return false;
    this.match = index;
    this.next = Math.max(this.next, index + 1);
    return true;
  }

  /**
   * A rejection of `rejected` (the prevIndex the follower did not match). `probeLimit` is the
   * highest index that may still match according to the follower's conflict hint. Returns false
   * for a stale rejection that must be ignored (a duplicate, or a reply to an older message).
   */
  reject(rejected: number, probeLimit: number): boolean {
    if (this.state === 'replicate') {
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, probeLimit + 1), this.match + 1, 1);
    this.probeSent = false;
    return true;
  }
}

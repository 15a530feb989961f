import type { SessionKey } from '@tsraft/core';

/** A client's session as `client_session` holds it. */
export interface StoredSession {
  readonly lastActive: number;
  readonly floor: number;
  readonly highest: number;
}

/** What a batch starts from: the session clock and the stored sessions of the batch's clients. */
export interface KnownStart {
  readonly now: number;
  readonly sessions: ReadonlyMap<string, StoredSession>;
}

/** What one batch committed, for {@link CommittedSessions.committed}. */
export interface CommittedBatch {
  /** The applied position's index and session clock after the batch. */
  readonly index: number;
  readonly now: number;
  /** The batch's clients' sessions as stored after it (loaded or written). */
  readonly sessions: Iterable<readonly [string, StoredSession]>;
  /** Set when the batch deleted the sessions idle since before this time (the sweep). */
  readonly sweptBefore?: number;
}

/**
 * What a state machine instance last committed, kept in memory so that a batch can skip its first
 * query (the read of the applied position and of its clients' sessions): the applied index and
 * session clock, and the sessions of recently active clients (at most `capacity`, least recently
 * used dropped first).
 *
 * Contract: it answers only for a batch that starts right after the index it knows, and only when
 * every command with a session can be classified without Postgres: its client's session is known
 * and its sequence number is above the highest recorded (new) or at or below the floor (expired),
 * so no recorded result is needed. The batch's last statement still checks, under the applied
 * position's row lock, that the position is the one assumed, so a writer this instance does not
 * know of (another instance on the same schema) makes the batch fail and roll back instead of
 * being trusted. Whatever is not certain is forgotten: a failed batch, a restore, and every
 * session it remembers once a batch does not start where it left the position.
 */
export class CommittedSessions {
  readonly #capacity: number;
  readonly #sessions = new Map<string, StoredSession>();
  #index: number | undefined;
  #now = 0;
  /** Bumped by {@link forget}, so that a batch that began before it records nothing. */
  #generation = 0;

  constructor(capacity: number) {
    this.#capacity = capacity;
  }

  /** A token for {@link committed}: the batch records its outcome only if nothing was forgotten meanwhile. */
  begin(): number {
    return this.#generation;
  }

  /**
   * The start of a batch whose first entry is `firstIndex` and whose commands carry `sessions`,
   * or `undefined` when it must be read from Postgres.
   */
  lookup(firstIndex: number, sessions: readonly SessionKey[]): KnownStart | undefined {
    if (this.#index === undefined) return undefined;
    if (firstIndex !== this.#index + 1) {
      // The position is not where this instance left it: another writer (or a restore) moved it,
      // and may have changed any client's session. The read that follows re-arms the index with
      // its own clients only; every other remembered session is stale.
      this.#index = undefined;
      this.#sessions.clear();
      return undefined;
    }
    const found = new Map<string, StoredSession>();
    for (const { clientId, seq } of sessions) {
      const stored = this.#sessions.get(clientId);
      if (stored === undefined) return undefined;
      if (seq <= stored.highest && seq > stored.floor) return undefined;
      found.set(clientId, stored);
    }
    return { now: this.#now, sessions: found };
  }

  /** Records a committed batch begun with `token`; ignored if {@link forget} ran since. */
  committed(token: number, batch: CommittedBatch): void {
    if (token !== this.#generation) return;
    this.#index = batch.index;
    this.#now = batch.now;
    for (const [clientId, stored] of batch.sessions) {
      this.#sessions.delete(clientId);
      this.#sessions.set(clientId, stored);
    }
    if (batch.sweptBefore !== undefined) {
      const cutoff = batch.sweptBefore;
      for (const [clientId, stored] of this.#sessions) {
        if (stored.lastActive < cutoff) this.#sessions.delete(clientId);
      }
    }
    for (const clientId of this.#sessions.keys()) {
      if (this.#sessions.size <= this.#capacity) break;
      this.#sessions.delete(clientId);
    }
  }

  /** Forgets everything: the next batch reads Postgres. */
  forget(): void {
    this.#generation++;
    this.#index = undefined;
    this.#sessions.clear();
  }
}

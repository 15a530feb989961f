import type { ClientSession, CommandResult } from './state-machine.ts';

/**
 * A command's session, as a state machine checks it: its stamp and, when known, the digest of
 * the command (`commandDigest`). With digests, a stamp used again for a different command is
 * told apart from a retry.
 */
export interface SessionKey extends ClientSession {
  readonly digest?: string;
}

/** Options of {@link ClientSessions}. */
export interface ClientSessionsOptions {
  /**
   * A client's results within this many sequence numbers of its highest are kept. A command at or
   * below `highest - retainPerClient` is answered `expired`: it may have executed, and its result
   * is gone. A client may have at most this many commands in flight. Default 1,000.
   */
  readonly retainPerClient?: number;
  /**
   * A session with no recorded command for longer than this (in entry timestamps) is expired:
   * its commands are answered `expired` until it is forgotten. Default one hour.
   */
  readonly expireAfterMs?: number;
  /**
   * An expired session is remembered, without its results, until it has been idle this long;
   * afterwards its client id is unknown and starts a new session. Must be at least
   * `expireAfterMs`. Default one day.
   */
  readonly forgetAfterMs?: number;
}

/**
 * What to do with a command that carries a session:
 * - `new`: execute it, then {@link ClientSessions.record} its result;
 * - `duplicate`: it already executed; answer `result` without executing again;
 * - `expired`: it may have executed but its result is no longer known (its sequence number is
 *   older than the results kept, or its session expired). Answer an error, never execute it.
 * - `conflict`: a different command (another digest) was recorded under its stamp: the client
 *   reused a `{ clientId, seq }`. Answer {@link sessionConflictResult}, never execute it: a
 *   silent duplicate answer would hand it the other command's result while its own write never
 *   happens.
 */
export type SessionCheck<Result> =
  | { readonly kind: 'new' }
  | { readonly kind: 'duplicate'; readonly result: Result }
  | { readonly kind: 'expired' }
  | { readonly kind: 'conflict' };

/** The error a state machine answers a command whose stamp another command used (`conflict`). */
export function sessionConflictResult(session: ClientSession): CommandResult<never> {
  return {
    status: 'error',
    error: {
      name: 'SessionConflictError',
      code: 'CONFLICT',
      message: `client ${session.clientId} used sequence number ${session.seq} before for a different command; nothing was executed: give each command a stamp of its own (a new seq)`,
    },
  };
}

/** The JSON-compatible form of {@link ClientSessions}, for snapshots. */
export interface ClientSessionsJson<Result> {
  /** Latest entry timestamp recorded. */
  readonly now: number;
  /** Live sessions, least recently active first. */
  readonly sessions: readonly ClientSessionJson<Result>[];
  /** Expired sessions not yet forgotten, least recently active first. */
  readonly expired: readonly { readonly clientId: string; readonly lastActivity: number }[];
}

/** One live session in {@link ClientSessionsJson}. */
interface ClientSessionJson<Result> {
  readonly clientId: string;
  readonly lastActivity: number;
  /** Commands at or below it are expired: `highest seq - retainPerClient`, or 0. */
  readonly floor: number;
  /** Kept results as `[seq, result]` or `[seq, result, digest]`, by increasing `seq`. */
  readonly results: readonly (readonly [number, Result] | readonly [number, Result, string])[];
}

interface LiveSession<Result> {
  lastActivity: number;
  floor: number;
  /** Sequence numbers of `results`, increasing; the oldest is dropped first. */
  seqs: number[];
  results: Map<number, Result>;
  /** Digests of the commands of `results`, when they were recorded with one. */
  digests: Map<number, string>;
}

type Lookup<Result> =
  | { readonly state: 'unknown' }
  | { readonly state: 'expired' }
  | { readonly state: 'live'; readonly session: LiveSession<Result> };

const DEFAULT_RETAIN_PER_CLIENT = 1_000;
const DEFAULT_EXPIRE_AFTER_MS = 60 * 60 * 1_000;
const DEFAULT_FORGET_AFTER_MS = 24 * 60 * 60 * 1_000;

/**
 * Client sessions for exactly-once commands (Raft thesis 6.3). A state machine checks each command
 * that carries a session before executing it, and records the result of each command it executes.
 * A session starts with its client's first command.
 *
 * Deterministic: time is the leader-stamped timestamp of the entries, never a local clock, so
 * every replica that applies the same entries gives the same answers. {@link expire} only frees
 * memory: what {@link check} answers does not depend on when, or whether, it was called, so it
 * may run at any point (per entry, per batch, before a snapshot).
 *
 * Results must be JSON-compatible for {@link toJSON}. They are kept by reference: do not mutate
 * a recorded result.
 */
export class ClientSessions<Result> {
  readonly #retainPerClient: number;
  readonly #expireAfterMs: number;
  readonly #forgetAfterMs: number;
  /** Latest timestamp recorded; never decreases, even if leaders' clocks do. */
  #now = 0;
  /** Live sessions in order of last activity (re-inserted on each record). */
  readonly #live = new Map<string, LiveSession<Result>>();
  /** Expired sessions' last activity, in the same order. */
  readonly #expired = new Map<string, number>();

  constructor(options: ClientSessionsOptions = {}) {
    this.#retainPerClient = options.retainPerClient ?? DEFAULT_RETAIN_PER_CLIENT;
    this.#expireAfterMs = options.expireAfterMs ?? DEFAULT_EXPIRE_AFTER_MS;
    this.#forgetAfterMs = options.forgetAfterMs ?? DEFAULT_FORGET_AFTER_MS;
    if (!Number.isSafeInteger(this.#retainPerClient) || this.#retainPerClient < 1) {
      throw new RangeError('retainPerClient must be a positive integer');
    }
    if (!(this.#expireAfterMs >= 0) || !(this.#forgetAfterMs >= this.#expireAfterMs)) {
      throw new RangeError('expireAfterMs must be >= 0 and forgetAfterMs >= expireAfterMs');
    }
  }

  /**
   * Classifies the command `session` of an entry stamped `timestamp`. Changes nothing. A command
   * whose digest differs from the one recorded under its stamp is a `conflict`.
   */
  check(session: SessionKey, timestamp: number): SessionCheck<Result> {
    const found = this.#lookup(session.clientId, Math.max(this.#now, timestamp));
    switch (found.state) {
      case 'unknown':
        return { kind: 'new' };
      case 'expired':
        return { kind: 'expired' };
      case 'live': {
        if (session.seq <= found.session.floor) return { kind: 'expired' };
        const { results, digests } = found.session;
        if (!results.has(session.seq)) return { kind: 'new' };
        const recorded = digests.get(session.seq);
        if (session.digest !== undefined && recorded !== undefined && recorded !== session.digest) {
          return { kind: 'conflict' };
        }
        return { kind: 'duplicate', result: results.get(session.seq) as Result };
      }
      default:
        return found satisfies never;
    }
  }

  /**
   * Records the result of the command `session` (with its digest, when given), executed from an
   * entry stamped `timestamp`, and marks its session active. Throws if {@link check} would not have answered `new`: recording
   * twice, or a command that must not execute, is a bug of the caller.
   */
  record(session: SessionKey, result: Result, timestamp: number): void {
    const now = Math.max(this.#now, timestamp);
    const found = this.#lookup(session.clientId, now);
    if (found.state === 'expired') {
      throw new Error(`client ${session.clientId}: cannot record a command of an expired session`);
    }
    if (
      found.state === 'live' &&
      (session.seq <= found.session.floor || found.session.results.has(session.seq))
    ) {
      throw new Error(
        `client ${session.clientId}: command ${session.seq} is not new and cannot be recorded`,
      );
    }
    const live: LiveSession<Result> =
      found.state === 'live'
        ? found.session
        : { lastActivity: now, floor: 0, seqs: [], results: new Map(), digests: new Map() };
    this.#expired.delete(session.clientId);
    this.#now = now;
    live.lastActivity = now;
    this.#live.delete(session.clientId);
    this.#live.set(session.clientId, live);
    insertSorted(live.seqs, session.seq);
    live.results.set(session.seq, result);
    if (session.digest !== undefined) live.digests.set(session.seq, session.digest);
    // Results within retainPerClient of the highest sequence number are kept.
    live.floor = Math.max(live.floor, (live.seqs.at(-1) as number) - this.#retainPerClient);
    while (live.seqs.length > 0 && (live.seqs[0] as number) <= live.floor) {
      const seq = live.seqs.shift() as number;
      live.results.delete(seq);
      live.digests.delete(seq);
    }
  }

  /**
   * Frees the memory of sessions that have expired, or that may be forgotten, as of `timestamp`
   * (an entry timestamp; never later than the latest recorded one counts). Unobservable through
   * {@link check}. Amortized constant time per session.
   */
  expire(timestamp: number): void {
    const now = Math.min(timestamp, this.#now);
    for (const [clientId, session] of this.#live) {
      if (now - session.lastActivity <= this.#expireAfterMs) break;
      this.#live.delete(clientId);
      this.#expired.set(clientId, session.lastActivity);
    }
    for (const [clientId, lastActivity] of this.#expired) {
      if (now - lastActivity <= this.#forgetAfterMs) break;
      this.#expired.delete(clientId);
    }
  }

  /** The sessions as plain JSON-compatible data, for a snapshot. Shares the recorded results. */
  toJSON(): ClientSessionsJson<Result> {
    return {
      now: this.#now,
      sessions: [...this.#live].map(([clientId, session]) => ({
        clientId,
        lastActivity: session.lastActivity,
        floor: session.floor,
        results: session.seqs.map((seq) => {
          const result = session.results.get(seq) as Result;
          const digest = session.digests.get(seq);
          return digest === undefined ? ([seq, result] as const) : ([seq, result, digest] as const);
        }),
      })),
      expired: [...this.#expired].map(([clientId, lastActivity]) => ({ clientId, lastActivity })),
    };
  }

  /** Sessions restored from {@link toJSON}'s output. Throws a `TypeError` on malformed data. */
  static fromJSON<Result>(
    json: ClientSessionsJson<Result>,
    options?: ClientSessionsOptions,
  ): ClientSessions<Result> {
    const sessions = new ClientSessions<Result>(options);
    if (typeof json !== 'object' || json === null || !isTimestamp(json.now)) {
      throw new TypeError('client sessions: malformed snapshot data');
    }
    if (!Array.isArray(json.sessions) || !Array.isArray(json.expired)) {
      throw new TypeError('client sessions: malformed snapshot data');
    }
    sessions.#now = json.now;
    for (const session of json.sessions) {
      if (
        typeof session?.clientId !== 'string' ||
        !isTimestamp(session.lastActivity) ||
        typeof session.floor !== 'number' ||
        !Array.isArray(session.results)
      ) {
        throw new TypeError('client sessions: malformed session in snapshot data');
      }
      const results: ClientSessionJson<Result>['results'] = session.results;
      const digests = new Map<number, string>();
      for (const [seq, , digest] of results) {
        if (typeof digest === 'string') digests.set(seq, digest);
      }
      sessions.#live.set(session.clientId, {
        lastActivity: session.lastActivity,
        floor: session.floor,
        seqs: results.map(([seq]) => seq),
        results: new Map(results.map(([seq, result]) => [seq, result])),
        digests,
      });
    }
    for (const { clientId, lastActivity } of json.expired) {
      if (typeof clientId !== 'string' || !isTimestamp(lastActivity)) {
        throw new TypeError('client sessions: malformed expired session in snapshot data');
      }
      sessions.#expired.set(clientId, lastActivity);
    }
    return sessions;
  }

  /** Where `clientId` stands at time `now`, whether or not {@link expire} has caught up. */
  #lookup(clientId: string, now: number): Lookup<Result> {
    const live = this.#live.get(clientId);
    const lastActivity = live?.lastActivity ?? this.#expired.get(clientId);
    if (lastActivity === undefined || now - lastActivity > this.#forgetAfterMs) {
      return { state: 'unknown' };
    }
    if (live === undefined || now - lastActivity > this.#expireAfterMs) return { state: 'expired' };
    return { state: 'live', session: live };
  }
}

function isTimestamp(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value);
}

/** Inserts `value` into the increasing array `values`; O(1) when it is the largest. */
function insertSorted(values: number[], value: number): void {
  let position = values.length;
  while (position > 0 && (values[position - 1] as number) > value) position--;
  values.splice(position, 0, value);
}

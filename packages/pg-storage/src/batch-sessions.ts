import type { ClientSession, CommandResult, SessionCheck, SessionKey } from '@tsraft/core';
import { type RawBuilder, sql } from 'kysely';
import type { AnyKysely } from './any-kysely.ts';
import type { StoredSession } from './committed-sessions.ts';
import { toSafeInteger } from './int8.ts';
import type { RaftTables } from './raft-tables.ts';

/** Options of the client sessions of a Postgres state machine (see the README's retention rules). */
export interface SessionRetention {
  /** Results kept per client: those within this many sequence numbers of its highest. */
  readonly retainPerClient: number;
  /** A session idle longer than this (entry timestamps) is expired. */
  readonly expireAfterMs: number;
  /** An expired session is forgotten (its rows deleted) once idle this long. */
  readonly forgetAfterMs: number;
}

/**
 * The result of a command, filled in once the command has run: a command that runs with others
 * of its run (a batch handler) is recorded before its result is known.
 */
export interface ResultSlot {
  result: CommandResult<unknown> | undefined;
  /** Digest of the command (`commandDigest`); `null` for results recorded before digests. */
  digest?: string | null;
}

interface SessionRow {
  lastActive: number;
  floor: number;
  highest: number;
  /** The stored session was forgotten and a new one starts: its old results must go. */
  reset: boolean;
  /**
   * The floor stored in Postgres, at or below which it holds no result of this client (they are
   * deleted when the floor rises); `undefined` when it holds none of this session's results (a
   * new or restarted session). Stored results in (`storedFloor`, `floor`] must go.
   */
  readonly storedFloor: number | undefined;
  dirty: boolean;
}

/**
 * The client sessions (exactly-once, thesis 6.3) as one batch sees and changes them: loaded with
 * one query for the batch's clients, checked and recorded in memory, written back with a few
 * set-based statements in the batch's transaction. Time is the entries' leader-stamped
 * timestamps, so every node answers the same.
 *
 * Rules, for a command `(clientId, seq)` at time `now` (the latest entry timestamp applied):
 * - no session, or one idle more than `forgetAfterMs`: a new session starts; execute;
 * - idle more than `expireAfterMs`, or `seq <= floor`: expired (never executed);
 * - a result recorded for `seq`: a duplicate, answered with it;
 * - otherwise new: execute and record. Recording sets `floor` to `highest seq - retainPerClient`
 *   and deletes the results at or below it.
 */
export class BatchSessions {
  readonly #tables: RaftTables;
  readonly #retention: SessionRetention;
  readonly #rows: Map<string, SessionRow>;
  readonly #results = new Map<string, ResultSlot>();
  readonly #recorded = new Map<string, { clientId: string; seq: number; slot: ResultSlot }>();

  private constructor(
    tables: RaftTables,
    retention: SessionRetention,
    rows: Map<string, SessionRow>,
  ) {
    this.#tables = tables;
    this.#retention = retention;
    this.#rows = rows;
  }

  /**
   * What `sessions` need to be checked, as select-list items (`sessions`, `results`) to add to
   * the batch's first query, so that loading them costs no round trip of its own: the rows of
   * their clients, and the recorded results of those that may be retries (a sequence number
   * above its client's floor and at or below its highest). Empty for a batch without sessions.
   */
  static loadColumns(tables: RaftTables, sessions: readonly ClientSession[]): RawBuilder<unknown> {
    if (sessions.length === 0) return sql``;
    const clientIds = JSON.stringify([...new Set(sessions.map((session) => session.clientId))]);
    const keys = JSON.stringify(sessions.map((s) => ({ c: s.clientId, s: s.seq })));
    // int8 columns as text: JSON numbers beyond 2^53 would be rounded by the driver's parser.
    return sql`,
      (select coalesce(json_agg(json_build_array(s.client_id, s.last_active::text, s.floor::text,
          s.highest_seq::text)), '[]')
        from ${tables.clientSession} s
        where s.client_id in (select jsonb_array_elements_text(cast(${clientIds} as jsonb)))
      ) as sessions,
      (select coalesce(json_agg(json_build_array(r.client_id, r.seq::text, r.result,
          r.command_digest)), '[]')
        from jsonb_to_recordset(cast(${keys} as jsonb)) as k(c text, s int8)
        join ${tables.clientSession} s on s.client_id = k.c and k.s <= s.highest_seq and k.s > s.floor
        join ${tables.clientResult} r on r.client_id = k.c and r.seq = k.s
      ) as results`;
  }

  /** The sessions of a batch from the `sessions` and `results` of {@link loadColumns}. */
  static fromLoaded(
    tables: RaftTables,
    retention: SessionRetention,
    loaded: { readonly sessions?: unknown; readonly results?: unknown },
  ): BatchSessions {
    const rows = new Map<string, SessionRow>();
    const batch = new BatchSessions(tables, retention, rows);
    for (const [clientId, lastActive, floor, highest] of parseJson(
      loaded.sessions,
    ) as unknown[][]) {
      const stored = toSafeInteger(floor, 'client_session.floor');
      rows.set(String(clientId), {
        lastActive: toSafeInteger(lastActive, 'client_session.last_active'),
        floor: stored,
        highest: toSafeInteger(highest, 'client_session.highest_seq'),
        reset: false,
        storedFloor: stored,
        dirty: false,
      });
    }
    for (const [clientId, seq, result, digest] of parseJson(loaded.results) as unknown[][]) {
      batch.#results.set(key(String(clientId), toSafeInteger(seq, 'client_result.seq')), {
        result: parseJson(result) as CommandResult<unknown>,
        digest: typeof digest === 'string' ? digest : null,
      });
    }
    return batch;
  }

  /** The sessions of a batch from what this instance committed last (no query). */
  static fromStored(
    tables: RaftTables,
    retention: SessionRetention,
    stored: ReadonlyMap<string, StoredSession>,
  ): BatchSessions {
    const rows = new Map<string, SessionRow>();
    for (const [clientId, { lastActive, floor, highest }] of stored) {
      rows.set(clientId, {
        lastActive,
        floor,
        highest,
        reset: false,
        storedFloor: floor,
        dirty: false,
      });
    }
    return new BatchSessions(tables, retention, rows);
  }

  /** The batch's clients' sessions as stored once {@link save} has committed. */
  stored(): [string, StoredSession][] {
    return [...this.#rows].map(([clientId, row]) => [
      clientId,
      { lastActive: row.lastActive, floor: row.floor, highest: row.highest },
    ]);
  }

  /**
   * Classifies the command `session` at time `now`. Changes nothing. A duplicate's result may
   * still be pending (a command earlier in the batch that has not run yet). A command whose
   * digest differs from the one recorded under its stamp is a `conflict`.
   */
  check(session: SessionKey, now: number): SessionCheck<ResultSlot> {
    const row = this.#rows.get(session.clientId);
    if (row === undefined) return { kind: 'new' };
    const idle = now - row.lastActive;
    if (idle > this.#retention.forgetAfterMs) return { kind: 'new' };
    if (idle > this.#retention.expireAfterMs || session.seq <= row.floor)
      return { kind: 'expired' };
    const result = this.#results.get(key(session.clientId, session.seq));
    if (result === undefined) return { kind: 'new' };
    const recorded = result.digest;
    if (
      typeof recorded === 'string' &&
      session.digest !== undefined &&
      recorded !== session.digest
    ) {
      return { kind: 'conflict' };
    }
    return { kind: 'duplicate', result };
  }

  /**
   * Records the new command `session`, executed at time `now`, with its result `slot` (which
   * must be filled in before {@link save}).
   */
  record(session: ClientSession, slot: ResultSlot, now: number): void {
    const { clientId, seq } = session;
    let row = this.#rows.get(clientId);
    if (row === undefined || now - row.lastActive > this.#retention.forgetAfterMs) {
      const reset = row !== undefined;
      if (reset) {
        for (const k of [...this.#results.keys()]) {
          if (k.startsWith(`${clientId}\u0000`)) this.#results.delete(k);
        }
      }
      row = { lastActive: now, floor: 0, highest: seq, reset, storedFloor: undefined, dirty: true };
      this.#rows.set(clientId, row);
    }
    row.lastActive = now;
    row.highest = Math.max(row.highest, seq);
    row.dirty = true;
    row.floor = Math.max(row.floor, row.highest - this.#retention.retainPerClient);
    const k = key(clientId, seq);
    this.#results.set(k, slot);
    this.#recorded.set(k, { clientId, seq, slot });
  }

  /**
   * Writes the batch's changes in `trx` together with the move of the applied position to
   * `position`, as ONE call of the schema's `tsraft_finish_batch` function: it moves the
   * position only from `expectedIndex` (the index the batch assumed), and only then upserts the
   * sessions, inserts the results and deletes those below the raised floors (disjoint rows, so
   * their order does not matter), so that sessions read from a stale view write nothing. Only
   * rare work runs apart: first the deletion of a restarted session's old results (whose keys the
   * new ones may reuse), last the deletion of the sessions forgotten as of `position.now` when
   * `sweep` is set (an index range scan on `last_active`). Resolves with whether the position
   * moved; when it did not, the caller must roll back.
   */
  async save(
    trx: AnyKysely,
    finishBatch: RawBuilder<unknown>,
    expectedIndex: number,
    position: { readonly index: number; readonly term: number; readonly now: number },
    sweep: boolean,
  ): Promise<boolean> {
    const t = this.#tables;
    const dirty = [...this.#rows].filter(([, row]) => row.dirty);
    const reset = dirty.filter(([, row]) => row.reset).map(([clientId]) => clientId);
    if (reset.length > 0) {
      await sql`
        delete from ${t.clientResult}
        where client_id in (select jsonb_array_elements_text(cast(${JSON.stringify(reset)} as jsonb)))
      `.execute(trx);
    }
    const sessions =
      dirty.length === 0
        ? null
        : JSON.stringify(
            dirty.map(([c, row]) => ({ c, a: row.lastActive, f: row.floor, h: row.highest })),
          );
    const kept = [...this.#recorded.values()].filter(
      (r) => r.seq > (this.#rows.get(r.clientId)?.floor ?? 0),
    );
    // Each result's JSON is spliced into one JSON array without encoding it twice.
    const results =
      kept.length === 0
        ? null
        : `[${kept.map((r) => `{"c":${JSON.stringify(r.clientId)},"s":${r.seq},"r":${resultJson(r.slot)},"d":${JSON.stringify(r.slot.digest ?? null)}}`).join(',')}]`;
    const raised = dirty.flatMap(([c, row]) =>
      row.storedFloor !== undefined && row.floor > row.storedFloor
        ? [{ c, l: row.storedFloor, f: row.floor }]
        : [],
    );
    const { rows } = await sql<{ moved: unknown }>`
      select ${finishBatch}(
        cast(${expectedIndex} as int8), cast(${position.index} as int8),
        cast(${position.term} as int8), cast(${position.now} as int8),
        cast(${sessions} as jsonb), cast(${results} as jsonb),
        cast(${raised.length === 0 ? null : JSON.stringify(raised)} as jsonb)
      ) as moved
    `.execute(trx);
    if (rows[0]?.moved !== true) return false;
    if (sweep) {
      const cutoff = position.now - this.#retention.forgetAfterMs;
      await sql`
        with gone as (
          delete from ${t.clientSession} where last_active < ${cutoff} returning client_id
        )
        delete from ${t.clientResult} where client_id in (select client_id from gone)
      `.execute(trx);
    }
    return true;
  }
}

/** A recorded result as JSON; its command must have run. */
function resultJson(slot: ResultSlot): string {
  if (slot.result === undefined) throw new Error('a recorded command has no result yet');
  return JSON.stringify(slot.result);
}

/** A `json` value as the driver returns it: parsed already (`pg`), or as text. */
function parseJson(value: unknown): unknown {
  return typeof value === 'string' ? JSON.parse(value) : (value ?? []);
}

function key(clientId: string, seq: number): string {
  return `${clientId}\u0000${seq}`;
}

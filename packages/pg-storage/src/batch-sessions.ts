import type { ClientSession, CommandResult, SessionCheck } from '@tsraft/core';
import { sql } from 'kysely';
import type { AnyKysely } from './any-kysely.ts';
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

interface SessionRow {
  lastActive: number;
  floor: number;
  highest: number;
  /** The stored session was forgotten and a new one starts: its old results must go. */
  reset: boolean;
  /** `floor` rose: stored results at or below it must go. */
  floorRaised: boolean;
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
  readonly #results = new Map<string, CommandResult<unknown>>();
  readonly #recorded = new Map<string, { clientId: string; seq: number; json: string }>();

  private constructor(
    tables: RaftTables,
    retention: SessionRetention,
    rows: Map<string, SessionRow>,
  ) {
    this.#tables = tables;
    this.#retention = retention;
    this.#rows = rows;
  }

  /** Loads what `sessions` need to be checked: their rows, and results of possible retries. */
  static async load(
    trx: AnyKysely,
    tables: RaftTables,
    retention: SessionRetention,
    sessions: readonly ClientSession[],
  ): Promise<BatchSessions> {
    const rows = new Map<string, SessionRow>();
    const loaded = new BatchSessions(tables, retention, rows);
    if (sessions.length === 0) return loaded;
    const clientIds = [...new Set(sessions.map((session) => session.clientId))];
    const found = await sql<Record<string, unknown>>`
      select client_id, last_active, floor, highest_seq from ${tables.clientSession}
      where client_id in (select jsonb_array_elements_text(cast(${JSON.stringify(clientIds)} as jsonb)))
    `.execute(trx);
    for (const row of found.rows) {
      rows.set(String(row.client_id), {
        lastActive: toSafeInteger(row.last_active, 'client_session.last_active'),
        floor: toSafeInteger(row.floor, 'client_session.floor'),
        highest: toSafeInteger(row.highest_seq, 'client_session.highest_seq'),
        reset: false,
        floorRaised: false,
        dirty: false,
      });
    }
    // Only a command at or below its client's highest sequence number can be a retry.
    const retries = sessions.filter((session) => {
      const row = rows.get(session.clientId);
      return row !== undefined && session.seq <= row.highest && session.seq > row.floor;
    });
    if (retries.length > 0) {
      const keys = JSON.stringify(retries.map((s) => ({ c: s.clientId, s: s.seq })));
      const results = await sql<Record<string, unknown>>`
        select r.client_id, r.seq, r.result from ${tables.clientResult} r
        join jsonb_to_recordset(cast(${keys} as jsonb)) as k(c text, s int8)
          on r.client_id = k.c and r.seq = k.s
      `.execute(trx);
      for (const row of results.rows) {
        const result = typeof row.result === 'string' ? JSON.parse(row.result) : row.result;
        loaded.#results.set(
          key(String(row.client_id), toSafeInteger(row.seq, 'client_result.seq')),
          result as CommandResult<unknown>,
        );
      }
    }
    return loaded;
  }

  /** Classifies the command `session` at time `now`. Changes nothing. */
  check(session: ClientSession, now: number): SessionCheck<CommandResult<unknown>> {
    const row = this.#rows.get(session.clientId);
    if (row === undefined) return { kind: 'new' };
    const idle = now - row.lastActive;
    if (idle > this.#retention.forgetAfterMs) return { kind: 'new' };
    if (idle > this.#retention.expireAfterMs || session.seq <= row.floor)
      return { kind: 'expired' };
    const result = this.#results.get(key(session.clientId, session.seq));
    return result === undefined ? { kind: 'new' } : { kind: 'duplicate', result };
  }

  /** Records the result of the new command `session`, executed at time `now`. */
  record(session: ClientSession, result: CommandResult<unknown>, now: number): void {
    const { clientId, seq } = session;
    let row = this.#rows.get(clientId);
    if (row === undefined || now - row.lastActive > this.#retention.forgetAfterMs) {
      const reset = row !== undefined;
      if (reset) {
        for (const k of [...this.#results.keys()]) {
          if (k.startsWith(`${clientId}\u0000`)) this.#results.delete(k);
        }
      }
      row = { lastActive: now, floor: 0, highest: seq, reset, floorRaised: false, dirty: true };
      this.#rows.set(clientId, row);
    }
    row.lastActive = now;
    row.highest = Math.max(row.highest, seq);
    row.dirty = true;
    const floor = row.highest - this.#retention.retainPerClient;
    if (floor > row.floor) {
      row.floor = floor;
      row.floorRaised = true;
    }
    const k = key(clientId, seq);
    this.#results.set(k, result);
    this.#recorded.set(k, { clientId, seq, json: JSON.stringify(result) });
  }

  /**
   * Writes the batch's changes in `trx`, and deletes the sessions forgotten as of `now` when
   * `sweep` is set (an index range scan on `last_active`).
   */
  async save(trx: AnyKysely, now: number, sweep: boolean): Promise<void> {
    const t = this.#tables;
    const dirty = [...this.#rows].filter(([, row]) => row.dirty);
    const reset = dirty.filter(([, row]) => row.reset).map(([clientId]) => clientId);
    if (reset.length > 0) {
      await sql`
        delete from ${t.clientResult}
        where client_id in (select jsonb_array_elements_text(cast(${JSON.stringify(reset)} as jsonb)))
      `.execute(trx);
    }
    if (dirty.length > 0) {
      const rows = JSON.stringify(
        dirty.map(([c, row]) => ({ c, a: row.lastActive, f: row.floor, h: row.highest })),
      );
      await sql`
        insert into ${t.clientSession} (client_id, last_active, floor, highest_seq)
        select c, a, f, h from jsonb_to_recordset(cast(${rows} as jsonb)) as x(c text, a int8, f int8, h int8)
        on conflict (client_id) do update set last_active = excluded.last_active,
          floor = excluded.floor, highest_seq = excluded.highest_seq
      `.execute(trx);
    }
    const kept = [...this.#recorded.values()].filter(
      (r) => r.seq > (this.#rows.get(r.clientId)?.floor ?? 0),
    );
    if (kept.length > 0) {
      // The results are JSON text already: spliced into one JSON array without re-encoding.
      const rows = `[${kept.map((r) => `{"c":${JSON.stringify(r.clientId)},"s":${r.seq},"r":${r.json}}`).join(',')}]`;
      await sql`
        insert into ${t.clientResult} (client_id, seq, result)
        select c, s, r from jsonb_to_recordset(cast(${rows} as jsonb)) as x(c text, s int8, r jsonb)
      `.execute(trx);
    }
    const raised = dirty.filter(([, row]) => row.floorRaised && !row.reset);
    if (raised.length > 0) {
      const floors = JSON.stringify(raised.map(([c, row]) => ({ c, f: row.floor })));
      await sql`
        delete from ${t.clientResult} r
        using jsonb_to_recordset(cast(${floors} as jsonb)) as x(c text, f int8)
        where r.client_id = x.c and r.seq <= x.f
      `.execute(trx);
    }
    if (sweep) {
      const cutoff = now - this.#retention.forgetAfterMs;
      await sql`
        with gone as (
          delete from ${t.clientSession} where last_active < ${cutoff} returning client_id
        )
        delete from ${t.clientResult} where client_id in (select client_id from gone)
      `.execute(trx);
    }
  }
}

function key(clientId: string, seq: number): string {
  return `${clientId}\u0000${seq}`;
}

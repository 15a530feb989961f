import { CorruptSnapshotError, type LogPosition } from '@tsraft/core';

/**
 * The snapshot format of the Postgres state machine: UTF-8 text, one record per line.
 *
 * ```text
 * #tsraft-pg-state/1 {"position":{"index":9,"term":2},"now":1700000000000,"tables":["$client_session","$client_result","public.accounts"]}
 * #table 0
 * {"client_id":"c1","last_active":1700000000000,...}      <- rows: to_json(row) as Postgres prints it
 * #table 2
 * {"id":"a","balance":100,"avatar":"\\x89504e47"}
 * #end {"rows":3}
 * ```
 *
 * Rows are JSON objects produced and read back by Postgres itself (`to_json`,
 * `json_populate_recordset`): `int8` and `numeric` as JSON numbers Postgres parses without going
 * through a JavaScript double, `bytea` as hex text. Two values do not round-trip (the package
 * README, "What does not round-trip"): a JSON `null` as a whole json/jsonb value comes back as
 * SQL NULL, and an array's lower bound other than 1 comes back as 1.
 * `$client_session` and `$client_result` are the state machine's own session tables.
 */
export const STATE_SNAPSHOT_FORMAT = 'tsraft-pg-state/1';

/** The first line's JSON. */
export interface StateSnapshotHeader {
  readonly position: LogPosition;
  /** The session clock: the latest entry timestamp applied. */
  readonly now: number;
  /** The sections' tables, in order; `#table <n>` names the n-th. */
  readonly tables: readonly string[];
}

/** The session tables' names in the header. */
export const SESSION_SECTIONS = ['$client_session', '$client_result'] as const;

/**
 * Raised for a snapshot that is not in this format or is damaged; nothing was changed. The
 * core's error, so that a node refuses such a snapshot instead of stopping.
 */
export { CorruptSnapshotError } from '@tsraft/core';

/** The header line (without its newline). */
export function headerLine(header: StateSnapshotHeader): string {
  return `#${STATE_SNAPSHOT_FORMAT} ${JSON.stringify(header)}`;
}

/**
 * Parses and checks the first line.
 *
 * @throws CorruptSnapshotError when it is not this format's header.
 */
export function parseHeader(line: string | undefined): StateSnapshotHeader {
  const prefix = `#${STATE_SNAPSHOT_FORMAT} `;
  if (line === undefined || !line.startsWith(prefix)) {
    throw new CorruptSnapshotError(
      `not a Postgres state machine snapshot: it does not start with "${prefix.trim()}" ` +
        `(it starts with ${JSON.stringify(line?.slice(0, 40) ?? '')})`,
    );
  }
  let header: unknown;
  try {
    header = JSON.parse(line.slice(prefix.length));
  } catch (error) {
    throw new CorruptSnapshotError('corrupt snapshot: its header is not valid JSON', {
      cause: error,
    });
  }
  const h = header as Partial<StateSnapshotHeader> | null;
  if (
    h === null ||
    typeof h !== 'object' ||
    !Number.isSafeInteger(h.position?.index) ||
    !Number.isSafeInteger(h.position?.term) ||
    !Number.isSafeInteger(h.now) ||
    !Array.isArray(h.tables) ||
    !h.tables.every((table) => typeof table === 'string')
  ) {
    throw new CorruptSnapshotError(
      'corrupt snapshot: its header lacks a position, clock or tables',
    );
  }
  return h as StateSnapshotHeader;
}

/**
 * Splits a stream of UTF-8 chunks into lines (without their `\n`). Holds at most one chunk and
 * one partial line in memory.
 *
 * @throws CorruptSnapshotError on invalid UTF-8 or data after the last newline.
 */
export async function* lines(chunks: AsyncIterable<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let rest = '';
  const decode = (chunk?: Uint8Array): string => {
    try {
      return chunk === undefined ? decoder.decode() : decoder.decode(chunk, { stream: true });
    } catch (error) {
      throw new CorruptSnapshotError('corrupt snapshot: not valid UTF-8', { cause: error });
    }
  };
  for await (const chunk of chunks) {
    const text = rest + decode(chunk);
    let start = 0;
    for (let end = text.indexOf('\n'); end !== -1; end = text.indexOf('\n', start)) {
      yield text.slice(start, end);
      start = end + 1;
    }
    rest = text.slice(start);
  }
  rest += decode();
  if (rest.length > 0) {
    throw new CorruptSnapshotError('corrupt snapshot: it ends in the middle of a line');
  }
}

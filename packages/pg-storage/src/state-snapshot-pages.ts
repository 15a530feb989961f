import { isUtf8 } from 'node:buffer';
import {
  CorruptSnapshotError,
  parseHeader,
  type StateSnapshotHeader,
} from './state-snapshot-format.ts';

/** What {@link statePages} yields: the header first, then pages of one section's rows. */
export type StateSnapshotItem =
  | { readonly kind: 'header'; readonly header: StateSnapshotHeader }
  | {
      readonly kind: 'page';
      /** The section (index into the header's tables). */
      readonly section: number;
      /** Rows in the page. */
      readonly rows: number;
      /**
       * The page's rows as one JSON array, in the binary input form of `jsonb` (a version byte,
       * 1, then the array's UTF-8 text): a query parameter Postgres parses as it is, without the
       * rows ever becoming JavaScript strings. Valid UTF-8; each row is one line of the snapshot.
       */
      readonly jsonb: Uint8Array;
    };

/** Options of {@link statePages}. */
export interface StatePagesOptions {
  /** Rows per page at most. */
  readonly pageRows: number;
  /** Bytes of rows per page at most (a page holds at least one row). */
  readonly pageBytes: number;
  readonly signal?: AbortSignal;
}

const NEWLINE = 0x0a;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const HASH = 0x23;
const COMMA = 0x2c;
/** The version byte of `jsonb`'s binary input. */
const JSONB_VERSION = 1;

/**
 * Reads a Postgres state machine snapshot (`tsraft-pg-state/1`) and checks its structure as it
 * goes: the header, the sections in increasing order, one JSON object per row line, valid UTF-8,
 * the end line's row count, nothing after it. Yields the header, then the rows in pages; returns
 * the rows of each section. Works on the bytes: row lines are copied into their page as they are
 * (never decoded into strings). Memory: one source chunk, one partial line and one page.
 *
 * @throws CorruptSnapshotError at the first check that fails (whether each row is valid JSON
 * that fits its table is for Postgres to say when it is inserted).
 */
export async function* statePages(
  chunks: AsyncIterable<Uint8Array>,
  options: StatePagesOptions,
): AsyncGenerator<StateSnapshotItem, readonly number[]> {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  const text = (line: Uint8Array): string => {
    try {
      return decoder.decode(line);
    } catch (error) {
      throw new CorruptSnapshotError('corrupt snapshot: not valid UTF-8', { cause: error });
    }
  };
  let header: StateSnapshotHeader | undefined;
  let counts: number[] = [];
  let section = -1;
  let total = 0;
  let ended = false;
  const page = new PageBuilder(options.pageBytes);
  const takePage = (): StateSnapshotItem => {
    const rows = page.rows;
    const jsonb = page.take();
    if (!isUtf8(jsonb.subarray(1))) {
      throw new CorruptSnapshotError(
        `corrupt snapshot: a row of section ${section} is not valid UTF-8`,
      );
    }
    return { kind: 'page', section, rows, jsonb };
  };
  /** Handles one line; returns the page it completed, if any. */
  const line = (bytes: Uint8Array): StateSnapshotItem | undefined => {
    if (header === undefined) {
      header = parseHeader(text(bytes));
      counts = header.tables.map(() => 0);
      return { kind: 'header', header };
    }
    if (ended) throw new CorruptSnapshotError('corrupt snapshot: data after its end');
    if (bytes[0] === OPEN_BRACE) {
      if (section < 0 || bytes[bytes.byteLength - 1] !== CLOSE_BRACE) {
        throw new CorruptSnapshotError(`corrupt snapshot: malformed row line ${describe(bytes)}`);
      }
      const full =
        page.rows >= options.pageRows ||
        (page.rows > 0 && page.bytes + bytes.byteLength > options.pageBytes);
      const done = full ? takePage() : undefined;
      page.add(bytes);
      counts[section] = (counts[section] ?? 0) + 1;
      total++;
      return done;
    }
    const done = page.rows > 0 ? takePage() : undefined;
    const control = bytes[0] === HASH ? text(bytes) : '';
    if (control.startsWith('#table ')) {
      const n = Number(control.slice('#table '.length));
      if (!Number.isSafeInteger(n) || n <= section || n >= header.tables.length) {
        throw new CorruptSnapshotError(`corrupt snapshot: unexpected section "${control}"`);
      }
      section = n;
    } else if (control.startsWith('#end ')) {
      let end: { rows?: unknown };
      try {
        end = JSON.parse(control.slice('#end '.length)) as { rows?: unknown };
      } catch (error) {
        throw new CorruptSnapshotError('corrupt snapshot: malformed end line', { cause: error });
      }
      if (end.rows !== total) {
        throw new CorruptSnapshotError(
          `corrupt snapshot: it holds ${total} rows, its end line says ${String(end.rows)}`,
        );
      }
      ended = true;
    } else {
      throw new CorruptSnapshotError(`corrupt snapshot: unexpected line ${describe(bytes)}`);
    }
    return done;
  };
  let rest: Uint8Array | undefined;
  for await (const chunk of chunks) {
    options.signal?.throwIfAborted();
    let start = 0;
    for (let end = chunk.indexOf(NEWLINE); end !== -1; end = chunk.indexOf(NEWLINE, start)) {
      const piece = chunk.subarray(start, end);
      start = end + 1;
      const whole = rest === undefined ? piece : concat(rest, piece);
      rest = undefined;
      const item = line(whole);
      if (item !== undefined) yield item;
    }
    // Copied: the source may reuse its chunk once it gets control back.
    if (start < chunk.byteLength) {
      rest = concat(rest ?? new Uint8Array(0), chunk.subarray(start));
    }
  }
  if (rest !== undefined) {
    throw new CorruptSnapshotError('corrupt snapshot: it ends in the middle of a line');
  }
  if (header === undefined) throw new CorruptSnapshotError('corrupt snapshot: it is empty');
  if (!ended) throw new CorruptSnapshotError('corrupt snapshot: it is truncated (no end line)');
  return counts;
}

/** A page's `jsonb` bytes being gathered: version byte, `[`, rows separated by `,`, `]`. */
class PageBuilder {
  /** Bytes of a page's buffer: the page's size in bytes, its version byte, `[` and `]`. */
  readonly #capacity: number;
  #buffer: Uint8Array;
  #length = 0;
  rows = 0;

  constructor(capacity: number) {
    this.#capacity = capacity + 3;
    this.#buffer = new Uint8Array(this.#capacity);
  }

  /** Bytes of rows gathered (with their separators). */
  get bytes(): number {
    return this.#length;
  }

  add(row: Uint8Array): void {
    // version byte and `[` before the first row, `,` before each next, `]` at the end
    const needed = (this.rows === 0 ? 2 : this.#length + 1) + row.byteLength + 1;
    if (needed > this.#buffer.byteLength) {
      const larger = new Uint8Array(Math.max(needed, this.#buffer.byteLength * 2));
      larger.set(this.#buffer.subarray(0, this.#length));
      this.#buffer = larger;
    }
    if (this.rows === 0) {
      this.#buffer[0] = JSONB_VERSION;
      this.#buffer[1] = 0x5b; // [
      this.#length = 2;
    } else {
      this.#buffer[this.#length++] = COMMA;
    }
    this.#buffer.set(row, this.#length);
    this.#length += row.byteLength;
    this.rows++;
  }

  /**
   * The page's bytes; the builder starts a new page in a new buffer of the usual capacity (a
   * buffer grown for one large row is not carried over to the pages after it).
   */
  take(): Uint8Array {
    this.#buffer[this.#length++] = 0x5d; // ]
    const page = this.#buffer.subarray(0, this.#length);
    this.#buffer = new Uint8Array(this.#capacity);
    this.#length = 0;
    this.rows = 0;
    return page;
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const joined = new Uint8Array(a.byteLength + b.byteLength);
  joined.set(a);
  joined.set(b, a.byteLength);
  return joined;
}

/** The start of a line, for an error message. */
function describe(line: Uint8Array): string {
  return JSON.stringify(new TextDecoder().decode(line.subarray(0, 60)));
}

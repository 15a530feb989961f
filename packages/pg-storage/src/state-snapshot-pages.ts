import { Buffer, isUtf8 } from 'node:buffer';
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
       * The page's rows as the UTF-8 text of one JSON array (each row one line of the snapshot,
       * as it was; valid UTF-8): the binary input form of `json`, a query parameter Postgres
       * parses as it is, without the rows ever becoming JavaScript strings.
       *
       * Valid until the consumer asks for the second page after it, which may then be gathered
       * in the same memory: a consumer may hold this page while it asks for the next one (one
       * page in a statement while the next is gathered), and copies a page it keeps longer.
       */
      readonly json: Uint8Array;
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
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;

/**
 * Reads a Postgres state machine snapshot (`tsraft-pg-state/1`) and checks its structure as it
 * goes: the header, the sections in increasing order, one JSON object per row line, valid UTF-8,
 * the end line's row count, nothing after it. Yields the header, then the rows in pages; returns
 * the rows of each section. Works on the bytes: row lines are copied into their page as they are
 * (never decoded into strings), a line spread over several chunks is joined once. Memory: one
 * source chunk, one partial line and three pages.
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
    const json = page.take();
    if (!isUtf8(json)) {
      throw new CorruptSnapshotError(
        `corrupt snapshot: a row of section ${section} is not valid UTF-8`,
      );
    }
    return { kind: 'page', section, rows, json };
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
  /** The start of a line that began in earlier chunks, in copied pieces, joined at its end. */
  let partial: Uint8Array[] = [];
  for await (const chunk of chunks) {
    options.signal?.throwIfAborted();
    // Searched as a Buffer (a view, no copy): its indexOf looks for a byte with memchr, several
    // times faster than a plain Uint8Array's.
    const search = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    let start = 0;
    for (let end = search.indexOf(NEWLINE); end !== -1; end = search.indexOf(NEWLINE, start)) {
      const piece = chunk.subarray(start, end);
      start = end + 1;
      const whole = partial.length === 0 ? piece : join([...partial, piece]);
      partial = [];
      const item = line(whole);
      if (item !== undefined) yield item;
    }
    // Copied: the source may reuse its chunk once it gets control back.
    if (start < chunk.byteLength) partial.push(chunk.slice(start));
  }
  if (partial.length > 0) {
    throw new CorruptSnapshotError('corrupt snapshot: it ends in the middle of a line');
  }
  if (header === undefined) throw new CorruptSnapshotError('corrupt snapshot: it is empty');
  if (!ended) throw new CorruptSnapshotError('corrupt snapshot: it is truncated (no end line)');
  return counts;
}

/**
 * A page's `json` bytes being gathered: `[`, rows separated by `,`, `]`. Pages take turns in three
 * buffers of the usual capacity (see {@link StateSnapshotItem}: the consumer may hold a page and
 * the next one, and the first row of the page after those goes into a buffer when the one before
 * it is taken); a buffer grown for one large row serves that page only.
 */
class PageBuilder {
  /** Bytes of a page's buffer: the page's size in bytes, `[` and `]`. */
  readonly #capacity: number;
  #buffer: Uint8Array;
  /** Buffers of the usual capacity of the (at most two) pages taken last, the oldest first. */
  readonly #taken: Uint8Array[] = [];
  #length = 0;
  rows = 0;

  constructor(capacity: number) {
    this.#capacity = capacity + 2;
    this.#buffer = new Uint8Array(this.#capacity);
  }

  /** Bytes of rows gathered (with their separators). */
  get bytes(): number {
    return this.#length;
  }

  add(row: Uint8Array): void {
    // `[` before the first row, `,` before each next, `]` at the end
    const needed = (this.rows === 0 ? 1 : this.#length + 1) + row.byteLength + 1;
    if (needed > this.#buffer.byteLength) {
      const larger = new Uint8Array(Math.max(needed, this.#buffer.byteLength * 2));
      larger.set(this.#buffer.subarray(0, this.#length));
      this.#buffer = larger;
    }
    if (this.rows === 0) {
      this.#buffer[0] = OPEN_BRACKET;
      this.#length = 1;
    } else {
      this.#buffer[this.#length++] = COMMA;
    }
    this.#buffer.set(row, this.#length);
    this.#length += row.byteLength;
    this.rows++;
  }

  /**
   * The page's bytes; the builder starts the next page in the buffer of a page at least two
   * before this one, or in a new one of the usual capacity (a buffer grown for one large row is
   * not reused).
   */
  take(): Uint8Array {
    this.#buffer[this.#length++] = CLOSE_BRACKET;
    const page = this.#buffer.subarray(0, this.#length);
    const reusable = this.#buffer.byteLength === this.#capacity ? this.#buffer : undefined;
    this.#buffer =
      (this.#taken.length === 2 ? this.#taken.shift() : undefined) ??
      new Uint8Array(this.#capacity);
    if (reusable !== undefined) this.#taken.push(reusable);
    this.#length = 0;
    this.rows = 0;
    return page;
  }
}

function join(parts: readonly Uint8Array[]): Uint8Array {
  const joined = new Uint8Array(parts.reduce((sum, part) => sum + part.byteLength, 0));
  let offset = 0;
  for (const part of parts) {
    joined.set(part, offset);
    offset += part.byteLength;
  }
  return joined;
}

/** The start of a line, for an error message. */
function describe(line: Uint8Array): string {
  return JSON.stringify(new TextDecoder().decode(line.subarray(0, 60)));
}

/**
 * Snapshot text encoded straight into UTF-8 chunks of a fixed capacity: each piece of text is
 * written where the current chunk ends (`TextEncoder.encodeInto`), never joined into a larger
 * string first. Every chunk handed out is a buffer of its own, which the consumer may keep.
 */
export class SnapshotTextChunks {
  readonly #capacity: number;
  readonly #encoder = new TextEncoder();
  #buffer: Buffer;
  #filled = 0;
  #full: Uint8Array[] = [];

  /** @param capacity bytes per chunk (at least 4: any character fits in an empty chunk). */
  constructor(capacity: number) {
    if (!Number.isSafeInteger(capacity) || capacity < 4) {
      throw new RangeError(`a chunk holds at least 4 bytes, got ${capacity}`);
    }
    this.#capacity = capacity;
    this.#buffer = Buffer.allocUnsafe(capacity);
  }

  /** Appends `text` and a newline. A chunk may end inside a line, never inside a character. */
  line(text: string): void {
    for (let read = 0; read < text.length; ) {
      const done = this.#encoder.encodeInto(
        read === 0 ? text : text.slice(read),
        this.#buffer.subarray(this.#filled),
      );
      this.#filled += done.written;
      read += done.read;
      if (read < text.length) this.#next();
    }
    if (this.#filled === this.#capacity) this.#next();
    this.#buffer[this.#filled++] = 0x0a;
    if (this.#filled === this.#capacity) this.#next();
  }

  /** The chunks filled since the last call (the consumer owns them). */
  take(): Uint8Array[] {
    const full = this.#full;
    this.#full = [];
    return full;
  }

  /** {@link take}, then the last, partly filled chunk, if it holds anything. */
  end(): Uint8Array[] {
    if (this.#filled > 0) this.#next();
    return this.take();
  }

  #next(): void {
    this.#full.push(this.#buffer.subarray(0, this.#filled));
    this.#buffer = Buffer.allocUnsafe(this.#capacity);
    this.#filled = 0;
  }
}

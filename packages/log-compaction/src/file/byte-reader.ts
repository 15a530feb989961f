/**
 * Reads exact byte counts from a stream of chunks of any size. Holds at most the chunks needed
 * for the current read plus one; returns views of the source's chunks when a read fits in one
 * (the source must not reuse its buffers, which file and socket streams do not).
 */
export class ByteReader {
  readonly #iterator: AsyncIterator<Uint8Array>;
  #chunks: Uint8Array[] = [];
  #buffered = 0;
  #done = false;

  constructor(source: AsyncIterable<Uint8Array>) {
    this.#iterator = source[Symbol.asyncIterator]();
  }

  /** Exactly `n` bytes, or fewer only when the stream ends first. */
  async read(n: number): Promise<Uint8Array> {
    await this.#fill(n);
    const take = Math.min(n, this.#buffered);
    const first = this.#chunks[0];
    if (first !== undefined && first.byteLength >= take) {
      const out = first.subarray(0, take);
      this.#consume(take);
      return out;
    }
    const out = new Uint8Array(take);
    let filled = 0;
    while (filled < take) {
      const chunk = this.#chunks[0] as Uint8Array;
      const part = Math.min(chunk.byteLength, take - filled);
      out.set(chunk.subarray(0, part), filled);
      filled += part;
      this.#consume(part);
    }
    return out;
  }

  /** Whether the stream has no byte left. */
  async atEnd(): Promise<boolean> {
    await this.#fill(1);
    return this.#buffered === 0;
  }

  /** Stops the source early (closes a file stream). */
  async close(): Promise<void> {
    this.#chunks = [];
    this.#buffered = 0;
    if (!this.#done) {
      this.#done = true;
      await this.#iterator.return?.();
    }
  }

  async #fill(n: number): Promise<void> {
    while (this.#buffered < n && !this.#done) {
      const next = await this.#iterator.next();
      if (next.done === true) {
        this.#done = true;
      } else if (next.value.byteLength > 0) {
        this.#chunks.push(next.value);
        this.#buffered += next.value.byteLength;
      }
    }
  }

  #consume(n: number): void {
    const first = this.#chunks[0] as Uint8Array;
    if (n === first.byteLength) this.#chunks.shift();
    else this.#chunks[0] = first.subarray(n);
    this.#buffered -= n;
  }
}

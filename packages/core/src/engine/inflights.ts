/**
 * The window of AppendEntries messages sent to one follower and not yet acknowledged, for
 * pipelining: the leader keeps sending while the window has room, and frees the front of the
 * window as acknowledgements arrive. Bounded by message count and by bytes.
 */
export class Inflights {
  readonly #maxMessages: number;
  readonly #maxBytes: number;
  /** Last index of each message in flight, oldest first. */
  #indexes: number[] = [];
  #sizes: number[] = [];
  #bytes = 0;

  constructor(maxMessages: number, maxBytes: number) {
    this.#maxMessages = maxMessages;
    this.#maxBytes = maxBytes;
  }

  add(lastIndex: number, bytes: number): void {
    this.#indexes.push(lastIndex);
    this.#sizes.push(bytes);
    this.#bytes += bytes;
  }

  /** Frees every message whose last index is at or below `index` (acknowledged). */
  freeTo(index: number): void {
    let n = 0;
    while (n < this.#indexes.length && (this.#indexes[n] ?? 0) <= index) {
      this.#bytes -= this.#sizes[n] ?? 0;
      n++;
    }
    if (n > 0) {
      this.#indexes.splice(0, n);
      this.#sizes.splice(0, n);
    }
  }

  /** Frees the oldest message, so that a lost one cannot stall the window forever. */
  freeFirst(): void {
    const first = this.#indexes[0];
    if (first !== undefined) this.freeTo(first);
  }

  get full(): boolean {
    return this.#indexes.length >= this.#maxMessages || this.#bytes >= this.#maxBytes;
  }

  get count(): number {
    return this.#indexes.length;
  }

  reset(): void {
    this.#indexes = [];
    this.#sizes = [];
    this.#bytes = 0;
  }
}

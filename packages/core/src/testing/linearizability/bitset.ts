/**
 * A fixed-size set of small non-negative integers, one bit each, packed in 32-bit words. The checker
 * uses it for "which operations are linearized so far". Internal: not part of the public surface.
 */
export class Bitset {
  readonly #words: Uint32Array;

  /** A set able to hold `0 .. size - 1`, initially empty. */
  constructor(size: number) {
    this.#words = new Uint32Array(Math.ceil(size / 32));
  }

  /** Adds `index`. */
  set(index: number): void {
    const word = index >>> 5;
    this.#words[word] = (this.#words[word] ?? 0) | (1 << (index & 31));
  }

  /** Removes `index`. */
  clear(index: number): void {
    const word = index >>> 5;
    this.#words[word] = (this.#words[word] ?? 0) & ~(1 << (index & 31));
  }

  /** Whether `index` is in the set. */
  has(index: number): boolean {
    return (((this.#words[index >>> 5] ?? 0) >>> (index & 31)) & 1) === 1;
  }

  /**
   * A string that identifies the contents, two UTF-16 code units per word, so its length depends
   * only on the size: keys of sets of one size can be concatenated with other text unambiguously.
   */
  key(): string {
    let key = '';
    for (const word of this.#words) {
      key += String.fromCharCode(word & 0xffff, word >>> 16);
    }
    return key;
  }
}

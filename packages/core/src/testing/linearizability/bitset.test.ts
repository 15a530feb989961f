import { describe, expect, it } from 'vitest';
import { Bitset } from './bitset.ts';

describe('Bitset', () => {
  it('adds and removes indices across word boundaries', () => {
    const bits = new Bitset(70);
    for (const index of [0, 31, 32, 69]) bits.set(index);
    expect([0, 1, 31, 32, 33, 69].map((index) => bits.has(index))).toEqual([
      true,
      false,
      true,
      true,
      false,
      true,
    ]);
    bits.clear(31);
    expect(bits.has(31)).toBe(false);
    expect(bits.has(32)).toBe(true);
  });

  it('keys equal sets equally and different sets differently, at a fixed length', () => {
    const a = new Bitset(40);
    const b = new Bitset(40);
    const emptyKey = a.key();
    a.set(3);
    a.set(35);
    b.set(35);
    b.set(3);
    expect(a.key()).toBe(b.key());
    expect(a.key()).not.toBe(emptyKey);
    expect(a.key()).toHaveLength(emptyKey.length);
    b.clear(3);
    expect(b.key()).not.toBe(a.key());
    // Bit 31 makes the word's top half 0x8000; bit 15 the bottom half: they must differ.
    const high = new Bitset(32);
    const low = new Bitset(32);
    high.set(31);
    low.set(15);
    expect(high.key()).not.toBe(low.key());
  });
});

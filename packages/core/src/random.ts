/** A source of uniformly distributed numbers in [0, 1). The engine takes one; it never seeds itself. */
export interface RandomSource {
  next(): number;
}

/**
 * A small seeded generator (mulberry32): the same seed gives the same sequence on every platform,
 * which is what makes a simulation replay exactly. Not for cryptography.
 */
export function seededRandom(seed: number): RandomSource {
  let state = seed >>> 0;
  return {
    next(): number {
      state = (state + 0x6d2b79f5) >>> 0;
      let t = state;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    },
  };
}

/** A random integer in [min, max). */
export function randomInt(random: RandomSource, min: number, max: number): number {
  return min + Math.floor(random.next() * (max - min));
}

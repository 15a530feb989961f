import { type ClientSession, seededRandom } from '@tsraft/core';
import type { CommandContext } from './command-definition.ts';

/**
 * The context of the command at `index`/`term`, stamped `timestamp`: the same on every node.
 * Its random source is seeded from the position, so two entries never share a sequence and a
 * replayed entry gets the same one.
 */
export function commandContext(entry: {
  readonly index: number;
  readonly term: number;
  readonly timestamp: number;
  readonly session?: ClientSession | undefined;
}): CommandContext {
  const { index, term, timestamp } = entry;
  return {
    index,
    term,
    timestamp,
    now: () => new Date(timestamp),
    random: seededRandom(positionSeed(index, term)),
    session: entry.session,
  };
}

/** A 32-bit seed mixing every bit of `index` (up to 2^53) and `term`. */
function positionSeed(index: number, term: number): number {
  let h = 0x811c9dc5;
  const words = [index, index / 0x1_0000_0000, term, term / 0x1_0000_0000];
  for (const word of words.map((w) => Math.floor(w) >>> 0)) {
    h = Math.imul(h ^ word, 0x01000193);
    h ^= h >>> 15;
    h = Math.imul(h, 0x2c1b3c6d);
    h ^= h >>> 12;
  }
  return h >>> 0;
}

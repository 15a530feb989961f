import { StorageError } from '@tsraft/core';

/**
 * The one place where `int8` (and other integer) values read from Postgres become numbers.
 *
 * Drivers disagree on how they hand `int8` back: `pg` gives a string unless a type parser says
 * otherwise, PGlite a number, or a `bigint` once the value passes 2^53. Raft indexes and terms are
 * JavaScript numbers, so anything that is not an integer representable exactly as one (at most
 * `Number.MAX_SAFE_INTEGER`, 2^53 - 1) is refused loudly instead of being rounded: a rounded index
 * would silently corrupt the log.
 *
 * @throws StorageError when `value` is not a safe integer in any of those forms; `what` names the
 * column in the message.
 */
export function toSafeInteger(value: unknown, what: string): number {
  switch (typeof value) {
    case 'number':
      if (Number.isSafeInteger(value)) return value;
      break;
    case 'bigint':
      if (value <= BigInt(Number.MAX_SAFE_INTEGER) && value >= BigInt(Number.MIN_SAFE_INTEGER)) {
        return Number(value);
      }
      break;
    case 'string':
      if (/^-?\d{1,16}$/.test(value)) {
        const parsed = Number(value);
        if (Number.isSafeInteger(parsed)) return parsed;
      }
      break;
    default:
      break;
  }
  throw new StorageError(
    `${what} read from Postgres is ${describe(value)}, not an integer of at most ` +
      `${Number.MAX_SAFE_INTEGER} (2^53 - 1); tsraft cannot represent it exactly`,
  );
}

/** Like {@link toSafeInteger}, but SQL `null` (e.g. `max()` over no rows) stays `null`. */
export function toSafeIntegerOrNull(value: unknown, what: string): number | null {
  return value === null || value === undefined ? null : toSafeInteger(value, what);
}

/**
 * Checks a number before it is written to an `int8` column: Raft positions are non-negative safe
 * integers. A caller passing anything else has a bug.
 *
 * @throws RangeError naming `what`.
 */
export function assertPosition(value: number, what: string): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`${what} must be a non-negative safe integer, got ${value}`);
  }
}

function describe(value: unknown): string {
  if (typeof value === 'string')
    return `"${value.length > 40 ? `${value.slice(0, 40)}...` : value}"`;
  if (typeof value === 'bigint') return `${value}n`;
  return String(value);
}

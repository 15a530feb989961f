import { StorageError } from '@tsraft/core';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { assertPosition, toSafeInteger, toSafeIntegerOrNull } from './int8.ts';

describe('toSafeInteger', () => {
  it('accepts the forms drivers return int8 in: string (pg), number and bigint (PGlite)', () => {
    expect(toSafeInteger('42', 'x')).toBe(42);
    expect(toSafeInteger('-7', 'x')).toBe(-7);
    expect(toSafeInteger('9007199254740991', 'x')).toBe(Number.MAX_SAFE_INTEGER);
    expect(toSafeInteger(2 ** 40, 'x')).toBe(2 ** 40);
    expect(toSafeInteger(9007199254740991n, 'x')).toBe(Number.MAX_SAFE_INTEGER);
    expect(toSafeIntegerOrNull(null, 'x')).toBeNull();
  });

  it("accepts exactly what pg's own int8 parser returns, and refuses its values beyond 2^53 - 1", () => {
    const parseInt8 = pg.types.getTypeParser(pg.types.builtins.INT8);
    expect(toSafeInteger(parseInt8('4294967296'), 'x')).toBe(2 ** 32);
    expect(toSafeInteger(parseInt8('9007199254740991'), 'x')).toBe(Number.MAX_SAFE_INTEGER);
    expect(() => toSafeInteger(parseInt8('9007199254740992'), 'x')).toThrow(StorageError);
  });

  it('rejects loudly what a number cannot hold exactly, instead of rounding it', () => {
    for (const value of [
      '9007199254740992',
      '9223372036854775807',
      9007199254740992n,
      2 ** 53,
      1.5,
      '1.5',
      '1e3',
      '',
      null,
      undefined,
      {},
    ]) {
      expect(() => toSafeInteger(value, 'log_entry.index'), String(value)).toThrow(StorageError);
    }
    expect(() => toSafeInteger('9007199254740993', 'log_entry.index')).toThrow(
      /log_entry.index read from Postgres is "9007199254740993"/,
    );
  });

  it('checks positions before they are written', () => {
    expect(() => assertPosition(-1, 'entry index')).toThrow(RangeError);
    expect(() => assertPosition(2 ** 53, 'entry index')).toThrow(RangeError);
    expect(() => assertPosition(0.5, 'entry index')).toThrow(RangeError);
    expect(() => assertPosition(Number.MAX_SAFE_INTEGER, 'entry index')).not.toThrow();
  });
});

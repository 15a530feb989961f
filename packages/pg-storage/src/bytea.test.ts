import { StorageError } from '@tsraft/core';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { fromBytea } from './bytea.ts';

describe('fromBytea', () => {
  it("turns pg's Buffer into a plain Uint8Array over the same bytes", () => {
    const parseBytea = pg.types.getTypeParser(pg.types.builtins.BYTEA);
    const bytes = fromBytea(parseBytea('\\x00ff10'), 'x');
    expect(bytes.constructor).toBe(Uint8Array);
    expect([...bytes]).toEqual([0, 255, 16]);
    expect(() => fromBytea('\\x00', 'log_entry.data')).toThrow(StorageError);
  });
});

import { StorageError } from '@tsraft/core';

/**
 * A `bytea` value read from Postgres as a plain `Uint8Array`. `pg` returns a `Buffer` (a
 * `Uint8Array` subclass) and PGlite a `Uint8Array`; both become a view of the same memory, no copy.
 *
 * @throws StorageError when the driver returned something else (e.g. a hex string because a
 * type parser was overridden).
 */
export function fromBytea(value: unknown, what: string): Uint8Array {
  if (value instanceof Uint8Array) {
    return value.constructor === Uint8Array
      ? value
      : new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  }
  throw new StorageError(
    `${what} read from Postgres is a ${typeof value}, not bytes; is a custom type parser ` +
      'turning bytea into something else?',
  );
}

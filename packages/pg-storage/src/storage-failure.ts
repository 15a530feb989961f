import { StorageError } from '@tsraft/core';

/**
 * Runs one storage operation and gives its failure the shape the core's contracts ask for:
 * - the signal's reason when `signal` was aborted (the caller asked for it; not a storage fault);
 * - a `RangeError` as is (the caller passed an invalid write or range);
 * - a `StorageError` as is;
 * - anything else (a driver or database error) as a `StorageError` that names `operation` and
 *   keeps the original error as its `cause`.
 */
export async function runStorageOperation<T>(
  operation: string,
  signal: AbortSignal | undefined,
  body: () => Promise<T>,
): Promise<T> {
  signal?.throwIfAborted();
  try {
    return await body();
  } catch (error) {
    throw toStorageFailure(operation, signal, error);
  }
}

/** The error {@link runStorageOperation} rejects with for `error`. */
function toStorageFailure(
  operation: string,
  signal: AbortSignal | undefined,
  error: unknown,
): unknown {
  if (signal?.aborted && error === signal.reason) return error;
  if (error instanceof StorageError || error instanceof RangeError) return error;
  const detail = error instanceof Error ? error.message : String(error);
  return new StorageError(`Postgres storage: ${operation} failed: ${detail}`, { cause: error });
}

/**
 * Byte streams as the core's interfaces pass them (`AsyncIterable<Uint8Array>`: snapshot exports,
 * stored snapshots), for state machines, stores and tests: one home instead of a copy per file.
 */

/** Streams `parts` as they are, one chunk each. */
export async function* streamOf(parts: readonly Uint8Array[]): AsyncGenerator<Uint8Array> {
  yield* parts;
}

/** Streams `bytes` in chunks of `size` bytes (the last may be shorter); views, not copies. */
export async function* chunked(bytes: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  if (!(Number.isSafeInteger(size) && size > 0)) {
    throw new RangeError(`the chunk size must be a positive integer, got ${size}`);
  }
  for (let offset = 0; offset < bytes.byteLength; offset += size) {
    yield bytes.subarray(offset, offset + size);
  }
}

/**
 * Reads `chunks` to the end and resolves with a copy of each chunk (a producer may reuse its
 * buffers once the next chunk is asked for).
 */
export async function collectChunks(chunks: AsyncIterable<Uint8Array>): Promise<Uint8Array[]> {
  const parts: Uint8Array[] = [];
  for await (const chunk of chunks) parts.push(chunk.slice());
  return parts;
}

/** The bytes of `parts` one after the other, in a new array. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  const whole = new Uint8Array(parts.reduce((total, part) => total + part.byteLength, 0));
  let offset = 0;
  for (const part of parts) {
    whole.set(part, offset);
    offset += part.byteLength;
  }
  return whole;
}

/** Reads `chunks` to the end and resolves with all their bytes. */
export async function readBytes(chunks: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  return concatBytes(await collectChunks(chunks));
}

import { Buffer } from 'node:buffer';
import { z } from 'zod';

/**
 * The peer transport's wire encoding: JSON, wrapped as `{ "json": value }` (the envelope tRPC's
 * transformers use), where every `Uint8Array` travels as one base64 string. Nothing on the wire
 * marks a string as binary: the zod schemas of the peer procedures know which fields are bytes
 * ({@link wireBytes}) and decode them while they validate, so the receiver walks the request once.
 */
export const peerTransformer = {
  /** Encodes a value for the wire: `{ json }`, with each `Uint8Array` as a base64 string. */
  serialize: (value: unknown): { json: unknown } => ({ json: toWire(value) }),
  /** Unwraps `{ json }`; the schemas decode the bytes. Anything else is `undefined`. */
  deserialize: (value: unknown): unknown =>
    typeof value === 'object' && value !== null ? (value as { json?: unknown }).json : undefined,
};

/**
 * A copy of `value` that `JSON.stringify` can carry: every `Uint8Array` (a `Buffer` too) becomes
 * its base64 string; arrays and plain objects are copied; anything else is left as it is.
 */
export function toWire(value: unknown): unknown {
  if (typeof value !== 'object' || value === null) return value;
  if (value instanceof Uint8Array) {
    return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64');
  }
  if (Array.isArray(value)) return value.map(toWire);
  const copy: Record<string, unknown> = {};
  for (const key in value) {
    if (Object.hasOwn(value, key)) copy[key] = toWire((value as Record<string, unknown>)[key]);
  }
  return copy;
}

const NOT_BASE64 = 'binary data must travel as a base64 string';

/**
 * Binary data on the wire: a base64 string with padding, decoded into a plain `Uint8Array` that
 * owns its whole `ArrayBuffer` (never a view into Node's shared `Buffer` pool). A string that does
 * not decode into exactly the bytes its length promises (a character outside the alphabet, white
 * space, padding in the middle, a length that is not a multiple of 4) is refused. Node's decoder
 * also reads the URL-safe alphabet (`-`, `_`) as the same digits; the encoder never writes it.
 */
export const wireBytes: z.ZodType<Uint8Array, string> = z
  .string({ error: NOT_BASE64 })
  .transform((text, ctx) => {
    const bytes = decodeBase64(text);
    if (bytes !== undefined) return bytes;
    ctx.issues.push({ code: 'custom', message: NOT_BASE64, input: text });
    return z.NEVER;
  });

/** Decodes padded base64 in one pass, or `undefined` when `text` is not valid base64. */
function decodeBase64(text: string): Uint8Array | undefined {
  if (text.length % 4 !== 0) return undefined;
  const padding = text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0;
  const size = (text.length / 4) * 3 - padding;
  // A buffer of its own (not a slice of the pool), filled whole or refused.
  const decoded = Buffer.allocUnsafeSlow(size);
  if (decoded.write(text, 'base64') !== size) return undefined;
  return new Uint8Array(decoded.buffer, 0, size);
}

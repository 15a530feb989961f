import { Buffer } from 'node:buffer';
import { describe, expect, it } from 'vitest';
import { peerResponse, raftInput } from './peer-schemas.ts';
import { peerTransformer, toWire, wireBytes } from './peer-wire.ts';

/** What a receiver makes of a value: through JSON and back, then validated and decoded. */
function roundTrip(value: unknown): unknown {
  return peerTransformer.deserialize(JSON.parse(JSON.stringify(peerTransformer.serialize(value))));
}

describe('the peer wire encoding', () => {
  it('carries bytes as base64 and decodes them where the schema says bytes', () => {
    const data = Uint8Array.from([0, 1, 2, 250, 255]);
    const message = {
      type: 'append',
      from: 'n1',
      to: 'n2',
      term: 1,
      prevIndex: 0,
      prevTerm: 0,
      entries: [
        { index: 1, term: 1, type: 'command', data },
        { index: 2, term: 1, type: 'noop', data: new Uint8Array(0) },
      ],
      commit: 0,
    };
    const wire = peerTransformer.serialize({ messages: [message] });
    expect(JSON.stringify(wire)).toContain(`"data":"${Buffer.from(data).toString('base64')}"`);
    const decoded = raftInput.parse(roundTrip({ messages: [message] }));
    expect(decoded).toEqual({ messages: [message] });
  });

  it('decodes into plain Uint8Arrays that own their memory, never a view of the Buffer pool', () => {
    const decoded = wireBytes.parse(Buffer.from('small').toString('base64'));
    expect(decoded.constructor).toBe(Uint8Array);
    expect(decoded.byteOffset).toBe(0);
    expect(decoded.buffer.byteLength).toBe(decoded.byteLength);
    expect(Buffer.from(decoded).toString()).toBe('small');
  });

  it('encodes a Buffer slice by its own bytes only', () => {
    const pool = Buffer.from('0123456789');
    expect(toWire({ data: pool.subarray(2, 5) })).toEqual({
      data: Buffer.from('234').toString('base64'),
    });
  });

  it.each([
    ['a number', 3],
    ['text with spaces', 'not binary'],
    ['a length that is not a multiple of 4', 'AAAAA'],
    ['padding in the middle', 'AA==AAAA'],
    ['a character outside the alphabet', 'AAA!AAAA'],
    ['white space', 'AAAA AAA'],
    ['padding that is too long', 'A==='],
  ])('refuses %s as binary data', (_name, value) => {
    const result = wireBytes.safeParse(value);
    expect(result.success).toBe(false);
    expect(result.error?.issues[0]?.message).toMatch(/base64/);
  });

  it('checks answers with the same rules', () => {
    const result = new Uint8Array([7, 8, 9]);
    expect(peerResponse.parse(roundTrip({ type: 'proposed', result, index: 12, term: 3 }))).toEqual(
      { type: 'proposed', result, index: 12, term: 3 },
    );
    expect(
      peerResponse.safeParse({ type: 'proposed', result: 'not binary', index: 1, term: 1 }).success,
    ).toBe(false);
    const bytes = roundTrip({ type: 'proposed', result, index: 0, term: 1 });
    expect(peerResponse.safeParse(bytes).success).toBe(false);
  });

  it('unwraps only the { json } envelope', () => {
    expect(peerTransformer.deserialize({ json: { type: 'ack' } })).toEqual({ type: 'ack' });
    expect(peerTransformer.deserialize(null)).toBeUndefined();
    expect(peerTransformer.deserialize('text')).toBeUndefined();
  });
});

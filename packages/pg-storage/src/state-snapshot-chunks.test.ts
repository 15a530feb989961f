import { describe, expect, it } from 'vitest';
import { SnapshotTextChunks } from './state-snapshot-chunks.ts';

const decode = (chunks: readonly Uint8Array[]): string =>
  new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks));

describe('SnapshotTextChunks', () => {
  it('writes lines into chunks of at most the capacity, each whole but the last', () => {
    const out = new SnapshotTextChunks(8);
    out.line('abc');
    expect(out.take()).toEqual([]);
    out.line('defghijklmnopq');
    const full = out.take();
    expect(full.map((chunk) => chunk.byteLength)).toEqual([8, 8]);
    expect(out.take()).toEqual([]);
    const rest = out.end();
    expect(rest.map((chunk) => chunk.byteLength)).toEqual([3]);
    expect(decode([...full, ...rest])).toBe('abc\ndefghijklmnopq\n');
    expect(out.end()).toEqual([]);
  });

  it('never cuts a character: a chunk ends early instead', () => {
    const out = new SnapshotTextChunks(5);
    // 'é' is 2 bytes, '😀' 4: after 'ab' and 'é' one byte is left, too few for the emoji.
    out.line('abé😀z');
    const chunks = [...out.take(), ...out.end()];
    expect(chunks.map((chunk) => chunk.byteLength)).toEqual([4, 5, 1]);
    for (const chunk of chunks) expect(() => decode([chunk])).not.toThrow();
    expect(decode(chunks)).toBe('abé😀z\n');
  });

  it('hands out chunks the consumer may keep: later lines do not overwrite them', () => {
    const out = new SnapshotTextChunks(4);
    out.line('aaa');
    const first = out.take();
    out.line('bbbbbbb');
    out.line('');
    const later = [...out.take(), ...out.end()];
    expect(decode(first)).toBe('aaa\n');
    expect(decode([...first, ...later])).toBe('aaa\nbbbbbbb\n\n');
  });

  it('refuses a capacity that cannot hold any character', () => {
    expect(() => new SnapshotTextChunks(3)).toThrow(RangeError);
    expect(() => new SnapshotTextChunks(1.5)).toThrow(RangeError);
  });
});

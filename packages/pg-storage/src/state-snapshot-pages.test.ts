import { streamOf } from '@tsraft/core/testing';
import { describe, expect, it } from 'vitest';
import { statePages } from './state-snapshot-pages.ts';

describe('statePages: the pages of a restore', () => {
  it('does not carry a buffer grown for one large row over to the pages after it', async () => {
    const header = `#tsraft-pg-state/1 ${JSON.stringify({
      position: { index: 1, term: 1 },
      now: 0,
      tables: ['$client_session', '$client_result', 't'],
    })}\n`;
    const large = `{"v":"${'x'.repeat(8 * 1024 * 1024)}"}\n`;
    const small = Array.from({ length: 20 }, (_, i) => `{"v":${i}}\n`).join('');
    const text = `${header}#table 2\n${large}${small}#end {"rows":21}\n`;
    const pages: { rows: number; bytes: number; buffer: number }[] = [];
    const items = statePages(streamOf([new TextEncoder().encode(text)]), {
      pageRows: 5,
      pageBytes: 1024 * 1024,
    });
    for await (const item of items) {
      if (item.kind === 'page') {
        pages.push({
          rows: item.rows,
          bytes: item.json.byteLength,
          buffer: item.json.buffer.byteLength,
        });
      }
    }
    // The large row is a page of its own; the 20 small ones follow in pages of 5.
    expect(pages.map((page) => page.rows)).toEqual([1, 5, 5, 5, 5]);
    expect(pages[0]?.bytes).toBeGreaterThan(8 * 1024 * 1024);
    for (const page of pages.slice(1)) expect(page.buffer).toBeLessThan(2 * 1024 * 1024);
  });
});

describe('statePages: lines and pages', () => {
  const header = `#tsraft-pg-state/1 ${JSON.stringify({
    position: { index: 1, term: 1 },
    now: 0,
    tables: ['$client_session', '$client_result', 't'],
  })}\n`;
  const rows = Array.from({ length: 30 }, (_, i) => `{"v":${i},"s":"${'é'.repeat(i)}"}`);
  const text = `${header}#table 2\n${rows.join('\n')}\n#end {"rows":30}\n`;
  const bytes = new TextEncoder().encode(text);
  const decoder = new TextDecoder();

  /** The snapshot in chunks of `size` bytes, each reused by the source once consumed. */
  async function* reusedChunks(size: number): AsyncGenerator<Uint8Array> {
    const chunk = new Uint8Array(size);
    for (let offset = 0; offset < bytes.byteLength; offset += size) {
      const part = bytes.subarray(offset, offset + size);
      chunk.set(part);
      yield chunk.subarray(0, part.byteLength);
      chunk.fill(0x3f);
    }
  }

  it('gives the same pages whatever the chunks, lines spread over many of them included', async () => {
    const pagesOf = async (chunks: AsyncIterable<Uint8Array>) => {
      const pages: string[] = [];
      for await (const item of statePages(chunks, { pageRows: 4, pageBytes: 1024 })) {
        // Copied at once: a page's memory serves again two pages later.
        if (item.kind === 'page')
          pages.push(`${item.section}:${item.rows}:${decoder.decode(item.json)}`);
      }
      return pages;
    };
    const whole = await pagesOf(streamOf([bytes]));
    expect(whole).toHaveLength(8);
    expect(whole[0]).toBe(`2:4:[${rows.slice(0, 4).join(',')}]`);
    expect(whole.flatMap((page) => JSON.parse(page.slice(page.indexOf('['))))).toEqual(
      rows.map((row) => JSON.parse(row)),
    );
    for (const size of [1, 2, 3, 7, 64]) {
      expect(await pagesOf(reusedChunks(size)), `chunks of ${size} bytes`).toEqual(whole);
    }
  });

  it('keeps a page as it was while the consumer asks for the next one', async () => {
    const iterator = statePages(reusedChunks(5), { pageRows: 3, pageBytes: 1024 });
    let held: { json: Uint8Array; text: string } | undefined;
    let pages = 0;
    for (let next = await iterator.next(); next.done !== true; next = await iterator.next()) {
      const item = next.value;
      if (item.kind !== 'page') continue;
      // The page before this one is still as it was (a statement may still be sending it).
      if (held !== undefined) expect(decoder.decode(held.json)).toBe(held.text);
      held = { json: item.json, text: decoder.decode(item.json) };
      pages++;
    }
    expect(pages).toBe(10);
  });
});

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
          bytes: item.jsonb.byteLength,
          buffer: item.jsonb.buffer.byteLength,
        });
      }
    }
    // The large row is a page of its own; the 20 small ones follow in pages of 5.
    expect(pages.map((page) => page.rows)).toEqual([1, 5, 5, 5, 5]);
    expect(pages[0]?.bytes).toBeGreaterThan(8 * 1024 * 1024);
    for (const page of pages.slice(1)) expect(page.buffer).toBeLessThan(2 * 1024 * 1024);
  });
});

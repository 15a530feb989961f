/**
 * Benchmark of the test kit's `MemoryLogStore`, which the simulator and the in-process benchmarks
 * persist every Ready through:
 *
 *   pnpm --filter @tsraft/core bench:memory-log-store [--appends 20000]
 *
 * Prints single-entry appends/s (`persist` of one entry and no hard state, as a leader appends a
 * proposal) after logs of 0 to 1,000,000 entries. The store appends in place instead of copying
 * the log, so appends/s falls only a little as the log grows (the garbage collector walks a larger
 * heap), not in proportion to its length.
 */
import { benchCommandLine, integerOption } from '@tsraft/bench-cli';
import type { LogEntry } from '../src/log-entry.ts';
import { MemoryLogStore } from '../src/testing/memory-log-store.ts';

const appends = await benchCommandLine(
  {
    program: 'core bench:memory-log-store',
    options: { appends: { type: 'string', default: '20000' } },
  },
  ({ values }) => integerOption('--appends', values.appends, { min: 1 }),
);

const data = new Uint8Array(64);
const entry = (index: number): LogEntry => ({ index, term: 1, type: 'command', data });

const rows: string[][] = [];
for (const before of [0, 10_000, 100_000, 1_000_000]) {
  const store = new MemoryLogStore();
  const prefill: LogEntry[] = [];
  for (let index = 1; index <= before; index++) prefill.push(entry(index));
  await store.persist({ entries: prefill, hardState: { term: 1, votedFor: null, commitIndex: 0 } });
  const start = performance.now();
  for (let index = before + 1; index <= before + appends; index++) {
    await store.persist({ entries: [entry(index)] });
  }
  const seconds = (performance.now() - start) / 1000;
  const last = await store.entries(before + appends, before + appends + 1);
  if (last[0]?.index !== before + appends) throw new Error('the last append is missing');
  rows.push([
    before.toLocaleString('en-US'),
    appends.toLocaleString('en-US'),
    Math.round(appends / seconds).toLocaleString('en-US'),
    ((seconds / appends) * 1e6).toFixed(2),
  ]);
}

const header = ['log length before', 'appends', 'appends/s', 'µs per append'];
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]?.length ?? 0)));
const line = (cells: readonly string[]): string =>
  `| ${cells.map((c, i) => c.padStart(widths[i] ?? 0)).join(' | ')} |`;
console.info(`Node ${process.version}, MemoryLogStore single-entry appends`);
console.info(line(header));
console.info(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
for (const row of rows) console.info(line(row));

/**
 * Runs `op` from `inFlight` concurrent loops, each starting its next call when the last one
 * settled, for `seconds`. Returns each call's latency (ms, sorted) and the seconds it took.
 */
export async function closedLoop(
  inFlight: number,
  seconds: number,
  op: (i: number) => Promise<unknown>,
): Promise<{ latencies: number[]; elapsedSeconds: number }> {
  const latencies: number[] = [];
  const start = performance.now();
  const end = start + seconds * 1000;
  let counter = 0;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (performance.now() < end) {
        const t = performance.now();
        await op(counter++);
        latencies.push(performance.now() - t);
      }
    }),
  );
  latencies.sort((a, b) => a - b);
  return { latencies, elapsedSeconds: (performance.now() - start) / 1000 };
}

/** The `p`th percentile (0-100) of `sorted`, NaN when it is empty. */
export function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}
